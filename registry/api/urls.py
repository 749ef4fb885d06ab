from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from registry.api import views

router = DefaultRouter()
router.register("checkpoints", views.CheckpointViewSet)
router.register("recipes", views.RecipeViewSet)
router.register("jobs/quantize", views.QuantizationJobViewSet, basename="quantizationjob")
router.register("jobs/benchmark", views.BenchmarkJobViewSet, basename="benchmarkjob")
router.register("variants", views.VariantViewSet)

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include(router.urls)),
]
