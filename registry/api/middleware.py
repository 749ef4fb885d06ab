"""Refuse requests no view should see: oversized bodies, NUL bytes in the path or query.

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or `request.POST` is read;
DRF's parsers read the stream directly, so without this a JSON body of any size would be parsed.
A query parameter given twice under /api/ is ambiguous (DRF would quietly take the last): a 400.
A NUL byte (`%00`) in a URL reaches PostgreSQL as a lookup value and fails there as a 500
("text fields cannot contain NUL"); no name in the registry can contain one, so it is a 400 here.
"""
from __future__ import annotations

from urllib.parse import unquote

from django.conf import settings
from django.http import JsonResponse


def refuse(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "status": status}, status=status)


class RequestGuard:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return refuse("Content-Length is not a number", 400)
        if limit is not None and length > limit:
            return refuse(f"request body of {length} bytes is over the limit of {limit} bytes "
                          "(DSQ_MAX_REQUEST_BYTES)", 413)
        if request.path_info.startswith("/api/"):
            repeated = sorted(k for k, values in request.GET.lists() if len(values) > 1)
            if repeated:  # which value would count? The API does not guess.
                return refuse(f"query parameter {repeated[0]!r} is given more than once", 400)
        if "\x00" in request.path_info or "\x00" in unquote(request.META.get("QUERY_STRING", "")):
            return refuse("the URL contains a NUL byte", 400)
        return self.get_response(request)
