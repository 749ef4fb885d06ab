"""Refuse oversized request bodies before anything reads them.

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or `request.POST` is read;
DRF's parsers read the stream directly, so without this a JSON body of any size would be parsed.
"""
from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimit:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "Content-Length is not a number", "status": 400}, status=400)
        if limit is not None and length > limit:
            return JsonResponse({"error": f"request body of {length} bytes is over the limit of {limit} bytes "
                                          "(DSQ_MAX_REQUEST_BYTES)", "status": 413}, status=413)
        return self.get_response(request)
