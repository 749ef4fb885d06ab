"""Serializers list their fields explicitly."""
from rest_framework import serializers

from registry.models import ArtifactFile, BenchmarkJob, Checkpoint, QuantizationJob, Recipe, Variant


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "name", "family", "hf_repo", "revision", "architecture", "parameter_count",
                  "source_dtype", "created_at"]


class RecipeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipe
        fields = ["id", "name", "version", "sha256", "definition", "builtin", "created_at"]


JOB_FIELDS = ["id", "state", "queue", "progress", "step", "eta_seconds", "worker", "attempts", "max_attempts",
              "cancel_requested", "error", "log_tail", "created_at", "started_at", "finished_at"]


class QuantizationJobSerializer(serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    recipe = serializers.StringRelatedField()

    class Meta:
        model = QuantizationJob
        fields = JOB_FIELDS + ["checkpoint", "recipe", "imatrix_sha256", "benchmark_suites", "variant"]


class BenchmarkJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = BenchmarkJob
        fields = JOB_FIELDS + ["variant", "suite", "options", "result"]


class ArtifactFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ArtifactFile
        fields = ["name", "size", "sha256"]


class VariantSerializer(serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    recipe = serializers.StringRelatedField()
    files = ArtifactFileSerializer(many=True, read_only=True)

    class Meta:
        model = Variant
        fields = ["id", "checkpoint", "recipe", "imatrix_sha256", "status", "total_bytes", "bits_per_weight",
                  "weight_error", "quality", "files", "created_at"]
