from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from registry.api.errors import not_found
from registry.api.views import audit, catalogue, files, fit, imatrices, jobs, releases, variants

router = DefaultRouter()
router.register("checkpoints", catalogue.CheckpointViewSet)
router.register("recipes", catalogue.RecipeViewSet)
router.register("quantizations", jobs.QuantizationRequestViewSet, basename="quantization")
router.register("jobs/quantize", jobs.QuantizationJobViewSet, basename="quantizationjob")
router.register("jobs/benchmark", jobs.BenchmarkJobViewSet, basename="benchmarkjob")
router.register("jobs/imatrix", imatrices.ImatrixJobViewSet, basename="imatrixjob")
router.register("imatrices", imatrices.ImatrixViewSet, basename="imatrix")
router.register("calibration-datasets", imatrices.CalibrationDatasetViewSet, basename="calibrationdataset")
router.register("variants", variants.VariantViewSet)
router.register("releases", releases.ReleaseViewSet)
router.register("tags", releases.TagViewSet)
router.register("audit", audit.AuditLogViewSet)

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("pull/<str:ref>", releases.pull, name="pull"),
    path("files/<int:variant_id>/<path:name>", files.download, name="file-download"),
    path("fit", fit.fit, name="fit"),
    path("", include(router.urls)),
    re_path(r"^.*$", not_found),  # unknown routes under /api/ answer JSON, not Django's HTML 404
]
