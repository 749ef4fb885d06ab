"""Lists page with ?limit= and ?offset=, both bounded; a value out of range is a 400 naming it.

DRF's LimitOffsetPagination hands any integer to the database: an offset or limit above
2**63-1 fails there (SQLite: "datatype mismatch", a 500), and a garbled value silently becomes
the default. Here each must be an integer in its declared range, and the schema says so.
"""
from __future__ import annotations

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

MAX_OFFSET = 2**63 - 1  # PostgreSQL's and SQLite's OFFSET is a signed 64-bit integer


def _bounded(request, name: str, low: int, high: int, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValidationError({name: f"expected an integer from {low} to {high}, got {text[:40]!r}"})
    return value


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """limit: 1 to DSQ_MAX_PAGE_SIZE (settings; default PAGE_SIZE); offset: 0 to MAX_OFFSET (default 0)."""

    @property
    def max_limit(self) -> int:  # read per request, so settings changed at run time (tests) apply
        return settings.DSQ_MAX_PAGE_SIZE

    def get_limit(self, request) -> int:
        return _bounded(request, self.limit_query_param, 1, self.max_limit, min(self.default_limit, self.max_limit))

    def get_offset(self, request) -> int:
        return _bounded(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"].update(minimum=1, maximum=self.max_limit)
        offset["schema"].update(minimum=0, maximum=MAX_OFFSET)
        return [limit, offset]
