"""Serializers list their fields explicitly."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quant.hashing import file_sha256
from registry import access
from registry.benchmarks import check_suites
from registry.checkpoints import importable
from registry.evidence import BenchmarkResult, Quality
from registry.imatrices import DEFAULT_N_CTX, NO_DATA_POLICIES, NO_DATA_POLICY
from registry.models import (ArtifactFile, AuditLog, BenchmarkJob, CalibrationDataset, Checkpoint, ImatrixArtifact,
                             ImatrixJob, QuantizationJob, Recipe, Release, ShardJob, Tag, TagMove, Variant)


# Hub repo ids: owner/name from letters, digits, `-`, `_`, `.`; never `..` (it would walk the endpoint's URL).
HF_REPO = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"


class WithheldFieldsMixin:
    """Fields only some readers may see (registry.access): null for everyone else.

    The fields stay in every response, so clients and the schema see one shape; `null` means withheld.
    """

    withheld_fields: "tuple[str, ...]" = ()

    def may_read_withheld(self, user, obj) -> bool:
        raise NotImplementedError

    def get_fields(self):
        fields = super().get_fields()
        for name in self.withheld_fields:
            fields[name].allow_null = True  # so the OpenAPI schema says `nullable`
        return fields

    def to_representation(self, obj):
        data = super().to_representation(obj)
        request = self.context.get("request")
        if not self.may_read_withheld(getattr(request, "user", None), obj):
            data.update(dict.fromkeys(self.withheld_fields))
        return data


class CheckpointSerializer(WithheldFieldsMixin, serializers.ModelSerializer):
    withheld_fields = ("local_path",)

    def may_read_withheld(self, user, obj) -> bool:
        return access.can_read_server_paths(user)

    class Meta:
        model = Checkpoint
        fields = ["id", "name", "family", "hf_repo", "revision", "architecture", "parameter_count",
                  "source_dtype", "local_path", "created_at"]


class CheckpointCreateSerializer(serializers.ModelSerializer):
    """Registration input: a config inline, or where to read config.json from (local_path or hf_repo)."""

    config = serializers.JSONField(required=False)
    hf_repo = serializers.RegexField(HF_REPO, max_length=200, required=False, allow_blank=True,
                                     error_messages={"invalid": "expected a Hub repo id: owner/name"})

    class Meta:
        model = Checkpoint
        fields = ["name", "family", "hf_repo", "revision", "source_dtype", "local_path", "config"]

    def validate_local_path(self, value: str) -> str:
        """Only directories under DSQ_IMPORT_ROOTS: the server (and its workers) read what is named here."""
        return str(importable(value)) if value else value


class RecipeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipe
        fields = ["id", "name", "version", "sha256", "definition", "builtin", "created_at"]


class TierOneSerializer(serializers.Serializer):
    """registry.evidence.TierOne: PPL and KLD against the reference, on the same text."""

    ppl = serializers.FloatField()
    ppl_uncertainty = serializers.FloatField(allow_null=True)
    reference_ppl = serializers.FloatField()
    reference_ppl_uncertainty = serializers.FloatField(allow_null=True)
    ppl_ratio = serializers.FloatField()
    kld_mean = serializers.FloatField()
    kld_mean_uncertainty = serializers.FloatField(allow_null=True)
    kld_p99 = serializers.FloatField(allow_null=True)
    kld_max = serializers.FloatField(allow_null=True)
    top1_percent = serializers.FloatField()
    rms_dp_percent = serializers.FloatField(allow_null=True)
    n_positions = serializers.IntegerField()


class ScoreSerializer(serializers.Serializer):
    """registry.evidence.Score: a task score in percent, mean ± std over the runs."""

    mean = serializers.FloatField()
    std = serializers.FloatField(allow_null=True)
    runs = serializers.ListField(child=serializers.FloatField())


class QualitySerializer(serializers.Serializer):
    """registry.evidence.Quality (Variant.quality), version 1."""

    version = serializers.IntegerField()
    reference = serializers.CharField(help_text="The variant drops are measured against; empty until measured")
    reference_variant = serializers.IntegerField(allow_null=True)
    baseline = serializers.BooleanField(help_text="This variant is its checkpoint's reference")
    tier1 = TierOneSerializer(allow_null=True)
    scores = serializers.DictField(child=ScoreSerializer(), help_text="benchmark → score, percent")
    suites = serializers.ListField(child=serializers.CharField(), help_text="The suites measured")


@extend_schema_field(QualitySerializer)
class QualityField(serializers.Field):
    """Variant.quality, read through registry.evidence.Quality (so the API shows exactly that shape)."""

    def to_representation(self, value):
        return Quality.from_json(value).to_json()


class BenchmarkResultSerializer(serializers.Serializer):
    """registry.evidence.BenchmarkResult (BenchmarkJob.result), version 1."""

    version = serializers.IntegerField()
    suite = serializers.CharField()
    reference = serializers.CharField()
    tier1 = TierOneSerializer(allow_null=True)
    scores = serializers.DictField(child=ScoreSerializer())
    detail = serializers.DictField(help_text="quant.eval's full result (VariantQuality or SuiteResult)")


@extend_schema_field(BenchmarkResultSerializer(allow_null=True))
class BenchmarkResultField(serializers.Field):
    """BenchmarkJob.result through registry.evidence.BenchmarkResult; null until the job succeeded."""

    def to_representation(self, value):
        return BenchmarkResult.from_json(value).to_json() if value else None


JOB_FIELDS = ["id", "state", "queue", "progress", "step", "eta_seconds", "worker", "attempts", "max_attempts",
              "cancel_requested", "error", "log_tail", "created_at", "started_at", "finished_at"]


class JobDetailsMixin(WithheldFieldsMixin):
    withheld_fields = ("error", "log_tail")

    def may_read_withheld(self, user, obj) -> bool:
        return access.can_read_job_details(user, obj)


class ShardJobSerializer(serializers.ModelSerializer):
    """One file of a split quantization (registry.shards), inside its job."""

    class Meta:
        model = ShardJob
        fields = ["index", "file_name", "planned_bytes", "state", "progress", "eta_seconds", "worker", "attempts",
                  "started_at", "finished_at"]


class QuantizationJobSerializer(JobDetailsMixin, serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    shards = ShardJobSerializer(many=True, read_only=True,
                                help_text="A split variant's shard jobs, one per GGUF file (empty when not split)")
    recipe = serializers.StringRelatedField()
    imatrix = serializers.PrimaryKeyRelatedField(source="imatrix_artifact", read_only=True, allow_null=True,
                                                 help_text="The registered imatrix asked for, if any")

    class Meta:
        model = QuantizationJob
        fields = JOB_FIELDS + ["checkpoint", "recipe", "imatrix", "imatrix_sha256", "benchmark_suites", "variant",
                               "shards"]


class BenchmarkJobSerializer(JobDetailsMixin, serializers.ModelSerializer):
    result = BenchmarkResultField(read_only=True)

    class Meta:
        model = BenchmarkJob
        fields = JOB_FIELDS + ["variant", "suite", "options", "result"]


class CalibrationDatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = CalibrationDataset
        fields = ["id", "name", "sha256", "size", "language", "domain", "notes", "source", "builtin", "created_at"]


class CalibrationDatasetCreateSerializer(serializers.Serializer):
    """A UTF-8 text file under DSQ_STORAGE_ROOT or DSQ_IMPORT_ROOTS, copied into storage (no uploads)."""

    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z", max_length=100)
    path = serializers.CharField(max_length=1000)
    source = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    language = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    domain = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    notes = serializers.CharField(max_length=10000, required=False, allow_blank=True, default="")


class DatasetSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = CalibrationDataset
        fields = ["id", "name", "sha256"]


class ImatrixSerializer(serializers.ModelSerializer):
    """An importance matrix, its inputs and its coverage (quant.imatrix.Coverage.as_dict())."""

    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    dataset = DatasetSummarySerializer(read_only=True)
    experts_never_routed = serializers.IntegerField(read_only=True)
    no_data_policy = serializers.SerializerMethodField()

    class Meta:
        model = ImatrixArtifact
        fields = ["id", "checkpoint", "checkpoint_revision", "dataset", "chunks", "n_ctx", "reference", "sha256",
                  "size", "chunk_count", "experts_never_routed", "no_data_policy", "coverage", "created_at"]

    def get_no_data_policy(self, obj) -> str:
        return ("experts no calibration token reached are quantized with uniform weights (llama-quantize's "
                "fallback); ask no_data_policy=refuse to turn such an imatrix away")


class ImatrixJobSerializer(JobDetailsMixin, serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ImatrixJob
        fields = JOB_FIELDS + ["checkpoint", "dataset", "chunks", "n_ctx", "artifact"]


class ImatrixRequestSerializer(serializers.Serializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all())
    dataset = serializers.SlugRelatedField(slug_field="name", queryset=CalibrationDataset.objects.all(),
                                           required=False, allow_null=True, default=None,
                                           help_text="A calibration dataset by name; default: the shipped one")
    chunks = serializers.IntegerField(min_value=0, max_value=100_000, required=False, default=0,
                                      help_text="Chunks of n_ctx tokens to read; 0: all of the text")
    n_ctx = serializers.IntegerField(min_value=16, max_value=1 << 17, required=False, default=DEFAULT_N_CTX)


class RecipeField(serializers.Field):
    """A recipe by id, by name (its newest version) or as NAME@vN."""

    def to_internal_value(self, data):
        text = str(data).strip()
        if text.isdigit():
            recipe = Recipe.objects.filter(pk=int(text)).first()
        elif "@v" in text:
            name, _, version = text.rpartition("@v")
            recipe = Recipe.objects.filter(name__iexact=name, version=int(version) if version.isdigit() else -1).first()
        else:
            recipe = Recipe.objects.filter(name__iexact=text).order_by("-version").first()
        if recipe is None:
            raise serializers.ValidationError(f"unknown recipe {text!r}")
        return recipe

    def to_representation(self, value):
        return str(value)


class QuantizationRequestSerializer(serializers.Serializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all())
    recipe = RecipeField()
    imatrix = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000,
                                    help_text="a registered imatrix by id (/api/imatrices/), or an importance "
                                              "matrix path relative to DSQ_STORAGE_ROOT")
    no_data_policy = serializers.ChoiceField(NO_DATA_POLICIES, required=False, default=NO_DATA_POLICY,
                                             help_text="experts a registered imatrix has no data for: uniform "
                                                       "weights as llama.cpp does, or refuse the request")
    imatrix_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, allow_blank=True, default="")
    benchmark_suites = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)

    def validate_benchmark_suites(self, value: "list[str]") -> "list[str]":
        """Names of known suites only ("quality" and quant/eval/suites): the worker never reads a path."""
        try:
            check_suites(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate(self, data):
        if data["imatrix"].isdigit():  # a registered imatrix: its stored file and hash
            if data["imatrix_sha256"]:
                raise serializers.ValidationError({"imatrix_sha256": "a registered imatrix has its own hash"})
            artifact = ImatrixArtifact.objects.select_related("checkpoint", "dataset").filter(
                pk=int(data["imatrix"])).first() if len(data["imatrix"]) < 19 else None
            if artifact is None:
                raise serializers.ValidationError({"imatrix": f"no imatrix with id {data['imatrix']}"})
            data["imatrix_artifact"], data["imatrix"] = artifact, ""
            return data
        if data["imatrix"]:
            root = Path(settings.DSQ_STORAGE_ROOT).resolve()
            try:  # the worker reads this file: it must be somewhere checkpoints may be read from
                path = importable(data["imatrix"], relative_to=root)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"imatrix": exc.messages}) from None
            if path.is_relative_to(root) and path.is_file():
                data["imatrix_sha256"] = file_sha256(path)
            elif not data["imatrix_sha256"]:
                raise serializers.ValidationError(
                    {"imatrix": f"{data['imatrix']} is not under the storage root; give imatrix_sha256 too"})
        elif data["imatrix_sha256"]:
            raise serializers.ValidationError({"imatrix": "imatrix_sha256 needs the imatrix path"})
        return data


class ArtifactFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ArtifactFile
        fields = ["name", "size", "sha256"]


class VariantImatrixSerializer(serializers.ModelSerializer):
    """Which registered imatrix (and dataset) a variant was made with, and what it did with missing experts."""

    dataset = DatasetSummarySerializer(read_only=True)
    experts_never_routed = serializers.IntegerField(read_only=True)
    no_data_policy = serializers.SerializerMethodField()

    class Meta:
        model = ImatrixArtifact
        fields = ["id", "sha256", "dataset", "chunks", "n_ctx", "chunk_count", "experts_never_routed",
                  "no_data_policy"]

    def get_no_data_policy(self, obj) -> str:
        return NO_DATA_POLICY


class VariantSerializer(serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    imatrix = VariantImatrixSerializer(read_only=True, allow_null=True)
    recipe = serializers.StringRelatedField()
    quant = serializers.CharField(source="recipe.name", read_only=True)
    files = ArtifactFileSerializer(many=True, read_only=True)
    quality = QualityField(read_only=True)

    class Meta:
        model = Variant
        fields = ["id", "checkpoint", "recipe", "quant", "imatrix", "imatrix_sha256", "status", "total_bytes",
                  "bits_per_weight",
                  "weight_error", "quality", "files", "created_at"]


class PolicyCheckSerializer(serializers.Serializer):
    """registry.release_policy.Check: one line of a verdict."""

    name = serializers.CharField(help_text="suite:<name>, ppl_ratio, kld_mean, kld_p99, top1_percent or "
                                           "accuracy:<benchmark>")
    passed = serializers.BooleanField()
    measured = serializers.FloatField(allow_null=True)
    limit = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class VerdictSerializer(serializers.Serializer):
    """registry.release_policy.Verdict: the release policy applied to a variant's evidence."""

    version = serializers.IntegerField()
    policy = serializers.CharField(help_text="Which layers made the policy: default, family, checkpoint")
    reference = serializers.CharField(help_text="What tier-1 figures are measured against")
    passed = serializers.BooleanField()
    checks = PolicyCheckSerializer(many=True)


@extend_schema_field(VerdictSerializer(allow_null=True))
class StoredVerdictField(serializers.Field):
    """Release.policy_verdict: the verdict stored at approval; null before (see /evidence/ for now)."""

    def to_representation(self, value):
        return VerdictSerializer(value).data if value else None


class ReleaseSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    checkpoint = serializers.CharField(source="variant.checkpoint.name", read_only=True)
    quant = serializers.CharField(source="variant.recipe.name", read_only=True)
    policy_verdict = StoredVerdictField(read_only=True)

    class Meta:
        model = Release
        fields = ["id", "variant", "checkpoint", "quant", "version", "label", "state", "notes", "requested_by",
                  "decided_by", "decided_at", "decision_reason", "policy_verdict", "policy_override", "hub_repo",
                  "hub_commit", "hub_tag", "published_at", "created_at"]


class ScoreDropSerializer(serializers.Serializer):
    """registry.quality.ScoreDrop: a task score beside the reference's, percent."""

    benchmark = serializers.CharField()
    mean = serializers.FloatField()
    std = serializers.FloatField(allow_null=True)
    reference = serializers.CharField(allow_null=True)
    reference_mean = serializers.FloatField(allow_null=True)
    reference_std = serializers.FloatField(allow_null=True)
    drop_points = serializers.FloatField(allow_null=True, help_text="reference − this: positive is worse")
    drop_std = serializers.FloatField(allow_null=True)
    drop_percent = serializers.FloatField(allow_null=True)


class DropSerializer(serializers.Serializer):
    """registry.quality.Drop: the variant against its reference."""

    variant = serializers.CharField()
    reference = serializers.CharField(help_text="Empty until the quality suite measured it")
    reference_variant = serializers.IntegerField(allow_null=True)
    baseline = serializers.BooleanField(help_text="The variant is the reference itself")
    tier1 = TierOneSerializer(allow_null=True)
    scores = ScoreDropSerializer(many=True)


class TypeShareSerializer(serializers.Serializer):
    type = serializers.CharField()
    tensors = serializers.IntegerField()
    weights = serializers.IntegerField(allow_null=True)
    bytes = serializers.IntegerField(allow_null=True)
    weight_percent = serializers.FloatField(allow_null=True)


class SiblingSerializer(serializers.Serializer):
    variant = serializers.IntegerField()
    label = serializers.CharField()
    quant = serializers.CharField()
    size_bytes = serializers.IntegerField()
    bits_per_weight = serializers.FloatField()
    tier1 = TierOneSerializer(allow_null=True)
    average_score = serializers.FloatField(allow_null=True)
    is_this = serializers.BooleanField()
    is_reference = serializers.BooleanField()
    released = serializers.CharField(allow_null=True)


class FitLineSerializer(serializers.Serializer):
    hardware = serializers.CharField()
    label = serializers.CharField()
    context = serializers.IntegerField()
    fits = serializers.BooleanField()
    per_gpu_bytes = serializers.IntegerField()
    gpu_bytes = serializers.IntegerField()
    headroom_bytes = serializers.IntegerField()


class EvidenceSerializer(serializers.Serializer):
    """registry.review.Evidence: what an approver decides on."""

    release = serializers.IntegerField()
    variant = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    bits_per_weight = serializers.FloatField()
    drop = DropSerializer()
    verdict = VerdictSerializer()
    verdict_when = serializers.ChoiceField(["at approval", "now"])
    override = serializers.CharField(help_text="The approver's justification when the policy was overridden")
    types = TypeShareSerializer(many=True)
    siblings = SiblingSerializer(many=True)
    fit = FitLineSerializer(many=True)
    fit_error = serializers.CharField()


class ReleaseRequestSerializer(serializers.Serializer):
    variant = serializers.PrimaryKeyRelatedField(queryset=Variant.objects.select_related("recipe", "checkpoint"))
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ApprovalSerializer(DecisionSerializer):
    override = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Approve only: a written justification for approving a candidate that fails its release "
                  "policy (stored on the release, audited, shown on the card); ignored when it passes")


class TagMoveSerializer(serializers.ModelSerializer):
    moved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    from_version = serializers.CharField(source="from_release.label", read_only=True, default=None,
                                         allow_null=True)
    to_version = serializers.CharField(source="to_release.label", read_only=True)

    class Meta:
        model = TagMove
        fields = ["from_release", "from_version", "to_release", "to_version", "moved_by", "moved_at"]


class TagSerializer(serializers.ModelSerializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    version = serializers.CharField(source="release.label", read_only=True)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    history = TagMoveSerializer(source="moves", many=True, read_only=True)
    ref = serializers.SerializerMethodField()

    class Meta:
        model = Tag
        fields = ["id", "ref", "checkpoint", "quant", "name", "kind", "release", "version", "updated_by",
                  "updated_at", "history"]

    def get_ref(self, tag: Tag) -> str:
        return f"{tag.checkpoint.name}:{tag.quant}@{tag.name}"


class ChannelSerializer(serializers.Serializer):
    checkpoint = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all())
    quant = serializers.CharField(max_length=100)
    name = serializers.SlugField(max_length=100)
    release = serializers.PrimaryKeyRelatedField(queryset=Release.objects.select_related("variant__recipe"))


class MoveSerializer(serializers.Serializer):
    release = serializers.PrimaryKeyRelatedField(queryset=Release.objects.select_related("variant__recipe"))


class AuditLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = ["id", "at", "actor", "action", "object_type", "object_id", "details"]
