"""URL routes: admin, API (with OpenAPI docs), dashboard, health and metrics for operators."""
from django.contrib import admin
from django.urls import include, path
from django.views import defaults

from registry.api.errors import django_error_view

from registry import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("registry.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("registry.urls")),
]

# Under /api/ even Django's own error pages are JSON (registry/api/errors.py).
handler400 = django_error_view(400, defaults.bad_request)
handler403 = django_error_view(403, defaults.permission_denied)
handler404 = django_error_view(404, defaults.page_not_found)
handler500 = django_error_view(500, defaults.server_error)
