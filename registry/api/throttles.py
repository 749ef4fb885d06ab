"""API rate limits: anonymous clients by IP, token holders by user, quantization requests by user.

DRF's own classes copy the rates once, at import; these read them when each request is checked,
so settings changed at run time (tests, `override_settings`) take effect. A rate of None is off.
"""
from __future__ import annotations

from rest_framework import throttling
from rest_framework.settings import api_settings


class LiveRatesMixin:
    def get_rate(self) -> "str | None":
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonRateThrottle(LiveRatesMixin, throttling.AnonRateThrottle):
    """Anonymous reads (pull, files, listings), counted per client IP."""


class UserRateThrottle(LiveRatesMixin, throttling.UserRateThrottle):
    """Everything a token holder does, counted per user."""


class QuantizeRateThrottle(LiveRatesMixin, throttling.UserRateThrottle):
    """POST /api/quantizations/: each one may queue hours of GPU work, so its own stricter budget."""

    scope = "quantize"
