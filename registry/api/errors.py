"""Every API error is a JSON body {"error": message, "detail": ...} with the right 4xx code."""
from __future__ import annotations

from django.core.exceptions import (RequestDataTooBig, SuspiciousOperation, TooManyFilesSent,
                                    ValidationError as DjangoValidationError)
from django.db import DataError
from django.http import Http404
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


def _message(detail) -> str:
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            text = _message(value)
            parts.append(text if key in ("detail", "non_field_errors") else f"{key}: {text}")
        return "; ".join(parts)
    if isinstance(detail, (list, tuple)):
        return "; ".join(_message(d) for d in detail)
    return str(detail)


def json_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    if isinstance(exc, RequestDataTooBig):
        return error("request body is over the size limit (DSQ_MAX_REQUEST_BYTES)",
                     status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFilesSent):
        return error("this API takes no file uploads")
    if isinstance(exc, SuspiciousOperation):  # Django would answer an HTML 400 page
        return error(f"bad request: {exc}")
    if isinstance(exc, (DataError, OverflowError)):
        # An id or value the column cannot hold (`/api/releases/99999999999999999999/`, 1e999): the
        # client's input, refused by PostgreSQL or float→int conversion; not a server fault.
        return error(f"a value in the request is out of range: {str(exc).splitlines()[0][:200]}")
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    response.data = {"error": _message(detail), "status": response.status_code}
    if isinstance(detail, dict) and set(detail) - {"detail"}:
        response.data["fields"] = detail
    return response


def error(message: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"error": message, "status": code}, status=code)


@csrf_exempt  # any method: a POST to an unknown route is a JSON 404, not CSRF's HTML 403
def not_found(request, *args, **kwargs):
    """Catch-all for /api/: an unknown route is a JSON 404 like every other API error."""
    from django.http import JsonResponse

    return JsonResponse({"error": f"no API route {request.path}", "status": 404}, status=404)


#: What Django's own error views (handler400/403/404/500 in dsq/urls.py) say under /api/: errors raised
#: outside DRF, such as a Host header not in ALLOWED_HOSTS or a fault no view caught.
DJANGO_ERRORS = {400: "bad request", 403: "forbidden", 404: "not found",
                 500: "internal error: the server failed to answer; its log has the details"}


def django_error_view(code: int, default):
    """A handler for dsq/urls.py: a JSON error under /api/, Django's own page (`default`) elsewhere."""

    def view(request, *args, **kwargs):
        if request.path_info.startswith("/api/"):
            from django.http import JsonResponse

            return JsonResponse({"error": DJANGO_ERRORS[code], "status": code}, status=code)
        return default(request, *args, **kwargs)

    return view
