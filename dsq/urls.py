"""URL routes: admin, API (with OpenAPI docs), dashboard, health and metrics for operators."""
from django.contrib import admin
from django.urls import include, path

from registry import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("registry.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("registry.urls")),
]
