"""API views: a few declarations each; domain logic lives on models and in registry.jobs."""
from rest_framework import viewsets

from registry.api import serializers
from registry.models import BenchmarkJob, Checkpoint, QuantizationJob, Recipe, Variant


class CheckpointViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Checkpoint.objects.all()
    serializer_class = serializers.CheckpointSerializer
    lookup_field = "name"
    filterset_fields = ["family", "architecture"]


class RecipeViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Recipe.objects.all()
    serializer_class = serializers.RecipeSerializer
    filterset_fields = ["name", "builtin"]


class QuantizationJobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = QuantizationJob.objects.select_related("checkpoint", "recipe")
    serializer_class = serializers.QuantizationJobSerializer
    filterset_fields = ["state", "checkpoint__name"]


class BenchmarkJobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = BenchmarkJob.objects.all()
    serializer_class = serializers.BenchmarkJobSerializer
    filterset_fields = ["state", "suite"]


class VariantViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Variant.objects.select_related("checkpoint", "recipe").prefetch_related("files")
    serializer_class = serializers.VariantSerializer
    filterset_fields = ["checkpoint__name", "recipe__name", "status"]
