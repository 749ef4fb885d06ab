"""The registry's data model. Domain rules live on the models; views stay thin."""
from __future__ import annotations

import datetime as dt

import re

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

APPROVERS_GROUP = "approvers"
# Checkpoint names, as created (API, bootstrap's catalogue) and as looked up in URLs (`r1-distill-qwen-1.5b`).
CHECKPOINT_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
validate_checkpoint_name = RegexValidator(
    rf"^{CHECKPOINT_NAME}\Z",
    "a checkpoint name is letters, digits, '.', '_' and '-', starting with a letter or digit")
# Names a channel may not take because a reader would take them for an immutable version: v1, V1, v01,
# v1.2, v2-final, 3, ` v1` — anything that, trimmed, starts with a digit or a v (any case) and a digit.
VERSION_LIKE = re.compile(r"v?\d.*", re.IGNORECASE | re.DOTALL)


def looks_like_version(name: str) -> bool:
    return VERSION_LIKE.fullmatch(name.strip()) is not None


def is_approver(user) -> bool:
    """Approvers are members of the "approvers" group or hold registry.approve_release (superusers do)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.has_perm("registry.approve_release") or user.groups.filter(name=APPROVERS_GROUP).exists()


class Checkpoint(models.Model):
    """A source model at a pinned revision: the thing every variant is made from."""

    class Dtype(models.TextChoices):
        FP8 = "FP8"
        BF16 = "BF16"
        F16 = "F16"
        F32 = "F32"

    name = models.CharField(max_length=100, unique=True, validators=[validate_checkpoint_name],
                            help_text="Short name used in pulls, e.g. deepseek-r1")
    family = models.CharField(max_length=100, help_text="DeepSeek-V3, DeepSeek-R1, DeepSeek-R1-Distill-Qwen-7B, …")
    hf_repo = models.CharField(max_length=200, blank=True)
    revision = models.CharField(max_length=100, blank=True, help_text="Pinned Hub commit or local revision label")
    architecture = models.CharField(max_length=50, help_text="GGUF architecture: deepseek2, llama, qwen2")
    parameter_count = models.BigIntegerField(default=0)
    source_dtype = models.CharField(max_length=8, choices=Dtype.choices, default=Dtype.BF16)
    config = models.JSONField(default=dict, help_text="The checkpoint's config.json")
    local_path = models.CharField(max_length=1000, blank=True, help_text="Where its safetensors/GGUF files are")
    release_policy = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of its family's release policy, key by key (registry/release_policy.py); "
                  "set through registry.release_policy.set_for")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def describe_config(config: dict) -> dict:
        """Architecture and parameter count of a config.json; ValidationError names what is wrong.

        The parameter count is that of the GGUF file (DeepSeek's multi-token-prediction layer only
        where the converter writes it: V3.2), so sizes, bits per weight and fit all use the same denominator.
        """
        from quant import architectures, config_check

        try:
            arch = config_check.check(config)  # before tensor_specs: it trusts every count it reads
            specs = architectures.tensor_specs(config)
        except KeyError as exc:
            raise ValidationError(f"config.json is missing {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            raise ValidationError(str(exc)) from None
        count = 0
        for _, shape in specs:
            n = 1
            for d in shape:
                n *= d
            count += n
        return {"architecture": arch, "parameter_count": count}

    @classmethod
    def register(cls, *, name: str, family: str, config: dict, user=None, **fields) -> "Checkpoint":
        """Validate a name and a config and store a new checkpoint (audited)."""
        cls._meta.get_field("name").run_validators(name)
        facts = cls.describe_config(config)
        if cls.objects.filter(name=name).exists():
            raise ValidationError(f"a checkpoint named {name!r} already exists")
        checkpoint = cls.objects.create(name=name, family=family, config=config, **facts, **fields)
        AuditLog.record(user, "checkpoint.register", checkpoint, **facts)
        return checkpoint


class Recipe(models.Model):
    """An immutable, hashed quantization recipe (quant.recipes data)."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    sha256 = models.CharField(max_length=64, unique=True)
    definition = models.JSONField(help_text="The recipe as data: default type, rules, fallbacks")
    builtin = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="recipe_name_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk and Recipe.objects.filter(pk=self.pk).exclude(sha256=self.sha256).exists():
            raise ValidationError("recipes are immutable: save a new version instead")
        super().save(*args, **kwargs)

    @classmethod
    def register(cls, definition: dict, *, user=None, builtin: bool = False) -> "tuple[Recipe, bool]":
        """Store a recipe definition as a new immutable version, or return the version it already is.

        The definition is validated by quant.recipes. Two definitions that differ only in their
        version number are the same recipe; anything else gets the next version number of its
        name, and the hash is taken of the definition as stored, version included.
        """
        from quant import recipes as quant_recipes

        try:
            parsed = quant_recipes.load_recipe(dict(definition))
        except quant_recipes.RecipeError as exc:
            raise ValidationError(str(exc)) from None
        same_rules = {k: v for k, v in parsed.to_dict().items() if k != "version"}
        for existing in cls.objects.filter(name=parsed.name):
            try:
                stored = quant_recipes.load_recipe(existing.definition).to_dict()
            except quant_recipes.RecipeError:
                continue
            if {k: v for k, v in stored.items() if k != "version"} == same_rules:
                return existing, False
        latest = cls.objects.filter(name=parsed.name).order_by("-version").first()
        version = latest.version + 1 if latest else parsed.version
        stored_definition = dict(definition, version=version)
        resolved = quant_recipes.load_recipe(stored_definition)
        recipe = cls.objects.create(name=resolved.name, version=version, sha256=resolved.sha256,
                                    definition=stored_definition, builtin=builtin, created_by=user)
        AuditLog.record(user, "recipe.create", recipe, name=recipe.name, version=version, sha256=recipe.sha256)
        return recipe, True

    def parsed(self):
        """This recipe as a quant.recipes.Recipe (what the planner and the quantizer use).

        A stored definition that does not parse is an error, never replaced by a built-in of the
        same name: a variant is made by exactly the recipe its hash names."""
        from quant import recipes as quant_recipes

        try:
            return quant_recipes.load_recipe(self.definition)
        except quant_recipes.RecipeError as exc:
            raise quant_recipes.RecipeError(
                f"stored recipe {self.name} v{self.version} (sha256 {self.sha256[:12]}) does not parse: {exc}") from None


class JobState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # split into shard jobs (ShardJob); queued again once they all succeeded
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
LIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.WAITING)


def default_max_attempts() -> int:
    """DSQ_MAX_ATTEMPTS when the job is created (a callable, so the setting is read then, not at import)."""
    return settings.DSQ_MAX_ATTEMPTS


class Job(models.Model):
    """Shared state of a unit of work. The row is the truth; a Celery message only triggers it."""

    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    queue = models.CharField(max_length=50, default="gpu")
    request_key = models.CharField(max_length=64, db_index=True, help_text="sha256 of the inputs, for idempotency")
    progress = models.FloatField(default=0.0)
    step = models.CharField(max_length=200, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=default_max_attempts)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Backoff: not claimed before this time")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    enqueued_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the last trigger message was sent (or falls due); the reaper re-sends it if still unclaimed")
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def lease_expired(self, now: "dt.datetime | None" = None) -> bool:
        now = now or timezone.now()
        return self.state == JobState.RUNNING and self.lease_expires_at is not None and self.lease_expires_at < now


class QuantizationJob(Job):
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="quantization_jobs")
    recipe = models.ForeignKey(Recipe, on_delete=models.PROTECT, related_name="quantization_jobs")
    imatrix = models.CharField(max_length=1000, blank=True, help_text="Path of the importance matrix, if any")
    imatrix_sha256 = models.CharField(max_length=64, blank=True)
    imatrix_artifact = models.ForeignKey("ImatrixArtifact", null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="quantization_jobs",
                                         help_text="The registered imatrix asked for (its file is `imatrix`)")
    benchmark_suites = models.JSONField(default=list, blank=True)
    variant = models.ForeignKey("Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")

    class Meta(Job.Meta):
        constraints = [
            # One live job per input set: a second identical request finds the first.
            models.UniqueConstraint(fields=["request_key"],
                                    condition=models.Q(state__in=["queued", "running", "waiting"]),
                                    name="one_live_quantization_per_request"),
        ]

    def __str__(self) -> str:
        return f"quantize {self.checkpoint} {self.recipe} #{self.pk}"


class ShardJob(Job):
    """One file of a split quantization, made by any worker that claims it (registry.shards).

    The parent QuantizationJob plans the variant, creates one shard per GGUF split file and waits
    (JobState.WAITING); each shard writes its file alone (quant.convert.execute(only_file=…)),
    resuming from its own finished tensors when a worker dies; once every shard succeeded the
    parent is queued again and registers the files. A database-kept chord: the rows are the truth."""

    parent = models.ForeignKey(QuantizationJob, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField(help_text="The split file's index, from 0")
    count = models.PositiveIntegerField(help_text="How many files the variant is split into")
    file_name = models.CharField(max_length=300)
    planned_bytes = models.BigIntegerField(help_text="The file's tensor bytes as planned (progress weight)")
    plan_key = models.CharField(max_length=64, help_text="quant.convert.ConversionPlan.output_key of the split")
    result = models.JSONField(default=dict, blank=True,
                              help_text="quant.convert.ConversionResult.to_dict() of the file, once written")

    class Meta(Job.Meta):
        ordering = ["parent", "index"]
        constraints = [models.UniqueConstraint(fields=["parent", "index"], name="one_shard_per_file")]

    def __str__(self) -> str:
        return f"shard {self.index + 1}/{self.count} of quantize #{self.parent_id}"


class BenchmarkJob(Job):
    variant = models.ForeignKey("Variant", on_delete=models.CASCADE, related_name="benchmark_jobs")
    suite = models.CharField(max_length=100, default="quality")
    options = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["request_key"], condition=models.Q(state__in=["queued", "running"]),
                                    name="one_live_benchmark_per_request"),
        ]

    def __str__(self) -> str:
        return f"benchmark {self.variant} {self.suite} #{self.pk}"


class CalibrationDataset(models.Model):
    """A text importance matrices are computed from, stored once under DSQ_STORAGE_ROOT by its hash.

    The stored file is the dataset: its sha256 names it in every imatrix made from it, so a text that
    changed (another Python's pydoc topics) is another dataset. Registered through registry.calibration.
    """

    name = models.CharField(max_length=100, unique=True, validators=[validate_checkpoint_name])
    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField(help_text="Bytes of UTF-8 text")
    language = models.CharField(max_length=50, blank=True, help_text="e.g. en, zh, code")
    domain = models.CharField(max_length=200, blank=True, help_text="e.g. documentation, chat, math")
    notes = models.TextField(blank=True)
    source = models.CharField(max_length=1000, help_text="Where the text came from (provenance)")
    storage_path = models.CharField(max_length=1000, help_text="The stored text, relative to DSQ_STORAGE_ROOT")
    builtin = models.BooleanField(default=False, help_text="Shipped with dsq (works offline)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self.pk and CalibrationDataset.objects.filter(pk=self.pk).exclude(
                sha256=self.sha256, storage_path=self.storage_path).exists():
            raise ValidationError("a calibration dataset's text never changes: register a new dataset")
        super().save(*args, **kwargs)


class ImatrixArtifact(models.Model):
    """An importance matrix (llama.cpp's GGUF imatrix format) and what it was made from and saw.

    Created by the imatrix job that computed it, once the file is complete (the job row holds the
    state while it runs); the inputs below are unique, so the same request finds it again."""

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="imatrices")
    checkpoint_revision = models.CharField(max_length=100, blank=True, help_text="Checkpoint.revision when made")
    dataset = models.ForeignKey(CalibrationDataset, on_delete=models.PROTECT, related_name="imatrices")
    chunks = models.PositiveIntegerField(help_text="llama-imatrix --chunks: chunks of n_ctx tokens at most")
    n_ctx = models.PositiveIntegerField(help_text="llama-imatrix -c: tokens per chunk")
    reference = models.ForeignKey("Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  help_text="The GGUF the activations were collected on (F16, or Q8_0 for 671B)")
    storage_path = models.CharField(max_length=1000, help_text="The file, relative to DSQ_STORAGE_ROOT")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    chunk_count = models.PositiveIntegerField(default=0, help_text="Chunks actually processed (the file says)")
    coverage = models.JSONField(default=dict, blank=True,
                                help_text="quant.imatrix.Coverage.as_dict(): tokens per tensor and per expert")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["checkpoint", "checkpoint_revision", "dataset", "chunks",
                                                       "n_ctx"], name="one_imatrix_per_inputs")]

    def __str__(self) -> str:
        return f"imatrix {self.checkpoint}@{self.dataset} #{self.pk}"

    @property
    def experts_never_routed(self) -> int:
        return int(self.coverage.get("experts_never_routed") or 0)


class ImatrixJob(Job):
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="imatrix_jobs")
    dataset = models.ForeignKey(CalibrationDataset, on_delete=models.PROTECT, related_name="imatrix_jobs")
    chunks = models.PositiveIntegerField()
    n_ctx = models.PositiveIntegerField()
    artifact = models.ForeignKey(ImatrixArtifact, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="jobs")

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["request_key"], condition=models.Q(state__in=["queued", "running"]),
                                    name="one_live_imatrix_per_request"),
        ]

    def __str__(self) -> str:
        return f"imatrix {self.checkpoint} {self.dataset} #{self.pk}"


class GpuLease(models.Model):
    """One GPU of one host, held by the job running on it; at most one lease per (host, index).

    A one-GPU worker leases its GPU and a host worker all of its host's GPUs before claiming a job, so
    neither takes work while the other holds any of those GPUs (registry.leases). The lease outlives
    a dead worker by at most its expiry, which the job's heartbeat extends.
    """

    host = models.CharField(max_length=200)
    index = models.PositiveIntegerField()
    worker = models.CharField(max_length=200)
    job_kind = models.CharField(max_length=16)
    job_id = models.PositiveBigIntegerField()
    scope = models.CharField(max_length=8, help_text="gpu (a one-GPU job) or host (a job over the whole host)")
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["host", "index"]
        constraints = [models.UniqueConstraint(fields=["host", "index"], name="one_lease_per_gpu")]

    def __str__(self) -> str:
        return f"{self.host} GPU {self.index}: {self.job_kind} job {self.job_id} on {self.worker}"


class Variant(models.Model):
    """Checkpoint × recipe × importance matrix → GGUF files, with their plan and measured quality."""

    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="variants")
    recipe = models.ForeignKey(Recipe, on_delete=models.PROTECT, related_name="variants")
    imatrix_sha256 = models.CharField(max_length=64, blank=True)
    imatrix = models.ForeignKey(ImatrixArtifact, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="variants",
                                help_text="The registered imatrix (and so its dataset) when it was made from one")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    plan = models.JSONField(default=dict, blank=True)
    total_bytes = models.BigIntegerField(default=0)
    bits_per_weight = models.FloatField(default=0.0)
    weight_error = models.JSONField(default=dict, blank=True, help_text="Tier 0: summary and worst tensors")
    quality = models.JSONField(default=dict, blank=True, help_text="Tier 1/2 results by benchmark name")
    storage_path = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["checkpoint", "recipe__name"]
        constraints = [
            models.UniqueConstraint(fields=["checkpoint", "recipe", "imatrix_sha256"], name="one_variant_per_inputs")
        ]

    @property
    def quant_name(self) -> str:
        return self.recipe.name

    FROZEN_WHEN_RELEASED = ("checkpoint_id", "recipe_id", "imatrix_sha256", "imatrix_id", "storage_path",
                            "total_bytes")

    def save(self, *args, **kwargs):
        """Once released, what the variant is and where its files live stay put (quality may still grow)."""
        if self.pk and released(self.pk):
            stored = Variant.objects.filter(pk=self.pk).values(*self.FROZEN_WHEN_RELEASED).first()
            changed = [f for f in self.FROZEN_WHEN_RELEASED if stored and stored[f] != getattr(self, f)]
            if changed:
                raise ValidationError(f"variant {self.pk} is released: {', '.join(changed)} cannot change")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        suffix = "+imatrix" if self.imatrix_sha256 else ""
        return f"{self.checkpoint}:{self.recipe.name}{suffix}"


class ArtifactFile(models.Model):
    """One finished GGUF file (or split shard) of a variant."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["variant", "name"], name="one_file_name_per_variant")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        """The files of a released variant are what was reviewed and published: no adding, no editing."""
        if released(self.variant_id):
            raise ValidationError(f"variant {self.variant_id} has an approved release: its files cannot change")
        super().save(*args, **kwargs)


def check_text_size(field: str, text: str) -> None:
    """Free text a user writes (release notes, decision reasons) is capped at DSQ_MAX_TEXT_CHARS characters."""
    limit = settings.DSQ_MAX_TEXT_CHARS
    if len(text) > limit:
        raise ValidationError(f"{field} is {len(text)} characters long, over the limit of {limit} "
                              f"(DSQ_MAX_TEXT_CHARS)")


def released(variant_id: "int | None") -> bool:
    """Whether a variant has an approved or published release (its files are then frozen)."""
    return variant_id is not None and Release.objects.filter(
        variant_id=variant_id, state__in=[Release.State.APPROVED, Release.State.PUBLISHED]).exists()


class Release(models.Model):
    """A version vN of a variant, reviewed by a human before anything is published."""

    class State(models.TextChoices):
        CANDIDATE = "candidate"
        APPROVED = "approved"
        REJECTED = "rejected"
        PUBLISHED = "published"

    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="releases")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.CANDIDATE)
    notes = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    policy_verdict = models.JSONField(default=dict, blank=True,
                                      help_text="The release policy's verdict at approval (registry.release_policy)")
    policy_override = models.TextField(blank=True, help_text="The approver's justification for approving a "
                                                             "candidate that failed its release policy")
    hub_repo = models.CharField(max_length=200, blank=True)
    hub_commit = models.CharField(max_length=64, blank=True)
    hub_tag = models.CharField(max_length=200, blank=True)
    hub_folder = models.CharField(max_length=200, blank=True,
                                  help_text="The folder of the Hub repo the files went to (registry.hub): "
                                            "kept, so a later layout never breaks pulls of this release")
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["variant", "version"], name="one_release_per_version")]
        permissions = [("approve_release", "Can approve or reject releases and move channels")]

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def __str__(self) -> str:
        return f"{self.variant} {self.label}"

    @classmethod
    def request(cls, variant: Variant, user, notes: str = "") -> "Release":
        """Propose the next version of a variant for review.

        Versions count per checkpoint and quant (not per variant row), so `deepseek-r1:DQ3_K_M@v3`
        means the third release of that quant whichever recipe version or imatrix made it.
        """
        if variant.status != Variant.Status.READY:
            raise ValidationError(f"variant {variant} is {variant.status}, only ready variants can be released")
        check_text_size("notes", notes)
        with transaction.atomic():
            # Lock the checkpoint row so two requests cannot take the same version number,
            # and the user's row so two requests cannot both take the last open slot.
            Checkpoint.objects.select_for_update().get(pk=variant.checkpoint_id)
            type(user).objects.select_for_update().get(pk=user.pk)
            open_now = cls.objects.filter(requested_by=user, state=cls.State.CANDIDATE).count()
            if open_now >= settings.DSQ_MAX_OPEN_CANDIDATES:
                raise ValidationError(
                    f"{user} has {open_now} releases waiting for review, the most one user may have open "
                    f"(DSQ_MAX_OPEN_CANDIDATES={settings.DSQ_MAX_OPEN_CANDIDATES}): wait for decisions first")
            last = cls.objects.filter(variant__checkpoint_id=variant.checkpoint_id,
                                      variant__recipe__name=variant.recipe.name).aggregate(m=models.Max("version"))
            release = cls.objects.create(variant=variant, version=(last["m"] or 0) + 1, notes=notes,
                                         requested_by=user)
            AuditLog.record(user, "release.request", release, variant=variant.pk, version=release.version)
        return release

    def check_decider(self, user) -> None:
        """Who may decide: an approver who did not request it, on a candidate (PermissionDenied or ValidationError)."""
        if not is_approver(user):
            raise PermissionDenied("only approvers can approve or reject releases")
        if self.requested_by_id == getattr(user, "pk", None):
            raise PermissionDenied("the requester of a release cannot approve or reject it")
        if self.state != Release.State.CANDIDATE:
            raise ValidationError(f"release {self} is already {self.state}")

    def _decide(self, user, reason: str, state: str, **evidence) -> None:
        self.check_decider(user)
        check_text_size("reason", reason)
        self.state, self.decided_by, self.decided_at, self.decision_reason = state, user, timezone.now(), reason
        for name, value in evidence.items():
            setattr(self, name, value)
        self.save(update_fields=["state", "decided_by", "decided_at", "decision_reason", *evidence])

    def approve(self, user, reason: str = "", *, verdict: "dict | None" = None, override: str = "") -> None:
        """Approve a candidate: it gets its immutable version tag and becomes `latest`.

        The release policy (registry.release_policy) is checked by registry.publishing.approve, which passes
        its verdict and, for a candidate that failed it, the approver's written justification (audited
        apart as release.policy_override). Sending it to the Hub is publishing's too (models never reach
        the queue)."""
        check_text_size("override", override)
        with transaction.atomic():
            locked = Release.objects.select_for_update().get(pk=self.pk)
            locked._decide(user, reason, Release.State.APPROVED, policy_verdict=verdict or {},
                           policy_override=override)
            checkpoint, quant = self.variant.checkpoint, self.variant.recipe.name
            Tag.objects.create(checkpoint=checkpoint, quant=quant, name=self.label, kind=Tag.Kind.VERSION,
                               release=locked, updated_by=user)
            Tag.channel(checkpoint, quant, "latest").move(locked, user)
            AuditLog.record(user, "release.approve", locked, reason=reason,
                            policy=("not checked" if not verdict else "passed" if verdict.get("passed")
                                    else "overridden"))
            if override:
                AuditLog.record(user, "release.policy_override", locked, justification=override,
                                failures=[c["message"] for c in (verdict or {}).get("checks", []) if not c["passed"]],
                                policy=(verdict or {}).get("policy", ""))
        self.refresh_from_db()

    def reject(self, user, reason: str) -> None:
        if not reason.strip():
            raise ValidationError("say why the release is rejected")
        with transaction.atomic():
            locked = Release.objects.select_for_update().get(pk=self.pk)
            locked._decide(user, reason, Release.State.REJECTED)
            AuditLog.record(user, "release.reject", locked, reason=reason)
        self.refresh_from_db()

    def mark_published(self, hub_repo: str, hub_commit: str, hub_tag: str = "", hub_folder: str = "") -> None:
        """Record the Hub commit (and folder) an approved release was uploaded to (called by the publisher).

        Idempotent for the same commit; a published release never points at another commit.
        """
        with transaction.atomic():
            changed = Release.objects.filter(pk=self.pk, state=Release.State.APPROVED).update(
                state=Release.State.PUBLISHED, hub_repo=hub_repo, hub_commit=hub_commit, hub_tag=hub_tag,
                hub_folder=hub_folder, published_at=timezone.now())
            if changed == 1:
                AuditLog.record(None, "release.published", self, hub_repo=hub_repo, hub_commit=hub_commit,
                                hub_tag=hub_tag)
            elif not Release.objects.filter(pk=self.pk, state=Release.State.PUBLISHED, hub_repo=hub_repo,
                                            hub_commit=hub_commit).exists():
                raise ValidationError(f"release {self} is {self.state}: only approved releases can be published")
        self.refresh_from_db()

    @property
    def pullable(self) -> bool:
        return self.state in (Release.State.APPROVED, Release.State.PUBLISHED)

    # What a version means: fixed at approval (what was reviewed), and where it went once published.
    FROZEN_WHEN_APPROVED = ("variant_id", "version", "requested_by_id", "decided_by_id", "decided_at",
                            "decision_reason", "policy_verdict", "policy_override")
    FROZEN_WHEN_PUBLISHED = ("hub_repo", "hub_commit", "hub_tag", "published_at")

    def save(self, *args, **kwargs):
        """An approved or published release never changes what it is; approved → published is the only move."""
        if self.pk:
            stored = Release.objects.filter(pk=self.pk).values(
                "state", *self.FROZEN_WHEN_APPROVED, *self.FROZEN_WHEN_PUBLISHED).first()
            if stored and stored["state"] in (Release.State.APPROVED, Release.State.PUBLISHED):
                frozen = self.FROZEN_WHEN_APPROVED
                if stored["state"] == Release.State.PUBLISHED:
                    frozen += self.FROZEN_WHEN_PUBLISHED
                changed = [f for f in frozen if stored[f] != getattr(self, f)]
                if stored["state"] != self.state and (stored["state"], self.state) != (
                        Release.State.APPROVED, Release.State.PUBLISHED):
                    changed.append("state")
                if changed:
                    raise ValidationError(f"release {self} is {stored['state']}: {', '.join(changed)} cannot change")
        super().save(*args, **kwargs)


class Tag(models.Model):
    """A name that resolves to a release: immutable version tags (v1, v2) or movable channels (latest, stable)."""

    class Kind(models.TextChoices):
        VERSION = "version"
        CHANNEL = "channel"

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="tags")
    quant = models.CharField(max_length=100, help_text="The variant's recipe name, e.g. DQ3_K_M")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="tags")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["checkpoint", "quant", "name"]
        constraints = [models.UniqueConstraint(fields=["checkpoint", "quant", "name"], name="one_tag_name")]

    def __str__(self) -> str:
        return f"{self.checkpoint}:{self.quant}@{self.name}"

    @classmethod
    def channel(cls, checkpoint: Checkpoint, quant: str, name: str) -> "Tag":
        """An unsaved channel (or the existing one): call .move() to point it somewhere."""
        if looks_like_version(name):
            raise ValidationError(
                f"{name!r} looks like a version tag (v1, V1, v01, 2, …); channels need another name")
        existing = cls.objects.filter(checkpoint=checkpoint, quant=quant, name=name).first()
        if existing is not None and existing.kind != cls.Kind.CHANNEL:
            raise ValidationError(f"{existing} is a version tag")
        return existing or cls(checkpoint=checkpoint, quant=quant, name=name, kind=cls.Kind.CHANNEL)

    def move(self, release: "Release", user) -> "TagMove":
        """Point a channel at another approved release of the same quant; the move is kept in history."""
        if self.kind != Tag.Kind.CHANNEL:
            raise ValidationError(f"{self} is a version tag: version tags never move")
        if not is_approver(user):
            raise PermissionDenied("only approvers can move channels")
        if not release.pullable:
            raise ValidationError(f"release {release} is {release.state}; channels only point at approved releases")
        variant = release.variant
        if variant.checkpoint_id != self.checkpoint_id or variant.recipe.name != self.quant:
            raise ValidationError(f"release {release} is not a {self.checkpoint}:{self.quant} release")
        with transaction.atomic():
            previous = None
            if self.pk:
                previous = Tag.objects.select_for_update().get(pk=self.pk).release
            self.release, self.updated_by, self.updated_at = release, user, timezone.now()
            self.save()
            move = TagMove.objects.create(tag=self, from_release=previous, to_release=release, moved_by=user)
            AuditLog.record(user, "tag.move", self, to_release=release.pk,
                            from_release=previous.pk if previous else None)
        return move

    def save(self, *args, **kwargs):
        if self.pk and self.kind == Tag.Kind.VERSION and Tag.objects.filter(pk=self.pk).exclude(
                release_id=self.release_id).exists():
            raise ValidationError("version tags are immutable")
        super().save(*args, **kwargs)


class TagMove(models.Model):
    """History of a channel: every move, by whom, from which release to which."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="moves")
    from_release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    moved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-moved_at", "-pk"]


class AuditLog(models.Model):
    """Append-only record of who did what."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("the audit log is append-only")

    @classmethod
    def record(cls, actor, action: str, obj: models.Model, **details) -> "AuditLog":
        name = getattr(actor, "username", None) or (str(actor) if actor else "system")
        return cls.objects.create(actor=name, action=action, object_type=obj._meta.label,
                                  object_id=str(obj.pk), details=details)


@receiver(pre_delete, sender=Release)
@receiver(pre_delete, sender=Tag)
@receiver(pre_delete, sender=ArtifactFile)
def refuse_deleting_released_things(sender, instance, **kwargs) -> None:
    """Released versions, version tags and released files are never deleted.

    A pre_delete receiver (not Model.delete) so queryset deletes and cascades are refused too.
    """
    if sender is Release and instance.pullable:
        raise ValidationError(f"release {instance} is {instance.state}: released versions are never deleted")
    if sender is Tag and instance.kind == Tag.Kind.VERSION:
        raise ValidationError(f"{instance} is a version tag: version tags are never deleted")
    if sender is ArtifactFile and released(instance.variant_id):
        raise ValidationError(f"{instance} belongs to a released variant: its files are never deleted")
