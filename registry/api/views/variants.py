"""Variants: what a quantization produced, filterable by checkpoint, recipe and status."""
from __future__ import annotations

from rest_framework import viewsets

from registry.api import serializers
from registry.api.filters import VariantFilter
from registry.models import Variant


class VariantViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Variant.objects.select_related("checkpoint", "recipe", "imatrix__dataset").prefetch_related("files", "releases")
    serializer_class = serializers.VariantSerializer
    filterset_class = VariantFilter
