"""Checkpoints and recipes: the inputs of every quantization."""
from __future__ import annotations

from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from registry import quality
from registry.api import schema, serializers
from registry.api.filters import RecipeFilter
from registry.checkpoints import resolve_config
from registry.models import CHECKPOINT_NAME, Checkpoint, Recipe


@schema.checkpoints
class CheckpointViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Checkpoint.objects.all()
    serializer_class = serializers.CheckpointSerializer
    lookup_field = "name"
    lookup_value_regex = CHECKPOINT_NAME  # names with dots (r1-distill-qwen-1.5b) are addressable
    filterset_fields = ["family", "architecture"]

    def get_serializer_class(self):
        return serializers.CheckpointCreateSerializer if self.action == "create" else serializers.CheckpointSerializer

    def create(self, request, *args, **kwargs):
        """Register a checkpoint from an inline config, a local path or a Hub repo; the config is validated."""
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        config, revision = resolve_config(config=fields.pop("config", None), local_path=fields.get("local_path", ""),
                                          hf_repo=fields.get("hf_repo", ""), revision=fields.get("revision", ""))
        fields["revision"] = revision
        checkpoint = Checkpoint.register(config=config, user=request.user, **fields)
        return Response(serializers.CheckpointSerializer(checkpoint, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"])
    def comparison(self, request, name=None):
        """Performance drop of every measured variant against the checkpoint's baseline."""
        report = quality.comparison(self.get_object())
        if report is None:
            return Response({"checkpoint": name, "baseline": None, "benchmarks": [], "rows": []})
        return Response(report.to_dict())


class RecipeViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Recipe.objects.all()
    serializer_class = serializers.RecipeSerializer
    filterset_class = RecipeFilter
