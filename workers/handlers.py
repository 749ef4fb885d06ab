"""Job handlers: `HANDLERS[kind](job, ctx) -> dict of job fields`, called by workers.runner.

quantize: plan and convert the checkpoint into `<storage>/work/<job>/out` (finished tensors are
kept in `<storage>/work/<job>/tensors` so a retried job resumes), then move the files to
`<storage>/variants/<checkpoint>/<recipe>-<variant>/` and register the Variant and its files in
one transaction. Nothing is registered until the files are complete and verified; a cancelled
or finally failed job leaves no work files behind.

benchmark: perplexity and KL divergence of the variant's GGUF against the checkpoint's
reference variant (quant.eval), stored in Variant.quality.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from registry import jobs
from registry.models import ArtifactFile, BenchmarkJob, QuantizationJob, Variant
from workers.hosts import device
from workers.runner import Cancelled, JobContext


def storage_root() -> Path:
    return Path(settings.DSQ_STORAGE_ROOT)


def work_dir(job: QuantizationJob) -> Path:
    return storage_root() / "work" / str(job.pk)


def requirements(kind: str, job) -> dict:
    """What a job needs from a host, estimated before claiming it (workers.hosts.shortfall)."""
    if kind != "quantize":
        return {}
    from quant import convert
    from quant.adapters import SLAB_WEIGHTS

    plan = convert.plan_conversion(job.checkpoint.local_path, _recipe(job), imatrix=job.imatrix or None,
                                   name=f"{job.checkpoint.name}-{job.recipe.name}")
    largest = max((t.out.n_elements for t in plan.tensors), default=0)
    # The tensor cache and the output are both on disk until the files move into place;
    # the GPU holds one slab in float32 plus the codec's working copies.
    return {"disk_bytes": 2 * plan.total_bytes + (64 << 20),
            "gpu_bytes": 16 * min(largest, SLAB_WEIGHTS) if device().startswith("cuda") else 0}


def _recipe(job: QuantizationJob):
    from quant import convert, recipes

    try:
        return recipes.parse_recipe(job.recipe.definition)
    except (recipes.RecipeError, KeyError, TypeError):
        return convert.resolve_recipe(job.recipe.name)


def _should_cancel(ctx: JobContext):
    def check() -> bool:
        ctx.check()  # raises Cancelled once the heartbeat saw a cancel request or a lost lease
        return False

    return check


def _on_progress(ctx: JobContext):
    def report(p) -> None:
        fraction = p.bytes_done / max(1, p.bytes_total)
        line = f"tensor {p.index}/{p.total} {p.name} {p.type}" if p.tensor_done else ""
        ctx.progress(fraction, step=f"quantize {p.index}/{p.total}", eta_seconds=p.eta_s, log_line=line)

    return report


def quantize(job: QuantizationJob, ctx: JobContext) -> dict:
    from quant import convert

    ckpt = job.checkpoint
    work = work_dir(job)
    try:
        ctx.progress(0.0, step="plan")
        plan = convert.plan_conversion(
            ckpt.local_path, _recipe(job), imatrix=job.imatrix or None, name=f"{ckpt.name}-{job.recipe.name}",
            source_repo=ckpt.hf_repo or None, source_revision=ckpt.revision or None,
            shard_size=getattr(settings, "DSQ_SHARD_BYTES", None))
        ctx.log(plan.describe().splitlines()[0])
        shutil.rmtree(work / "out", ignore_errors=True)
        result = convert.execute(plan, work / "out", device=device(), progress=_on_progress(ctx),
                                 should_cancel=_should_cancel(ctx), tensor_cache_dir=work / "tensors")
        ctx.progress(1.0, step="verify")
        for f in result.files:
            if _sha256(f.path) != f.sha256:
                raise RuntimeError(f"{f.path.name}: sha256 changed after writing")
        ctx.check()
        variant = register(job, result)
    except Cancelled:
        # Cancelled by a user: nothing to keep. Lease lost (reaped): keep the tensors for the next claimer.
        if jobs.is_cancel_requested(job):
            shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        # A retry resumes from the finished tensors; the last attempt leaves nothing behind.
        if job.attempts >= job.max_attempts:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "out", ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return {"variant": variant}


def register(job: QuantizationJob, result) -> Variant:
    """Move the finished files into the variant's directory and register them, all or nothing."""
    ckpt, recipe = job.checkpoint, job.recipe
    with transaction.atomic():
        variant, _ = Variant.objects.select_for_update().get_or_create(
            checkpoint=ckpt, recipe=recipe, imatrix_sha256=job.imatrix_sha256)
        relative = Path("variants") / ckpt.name / f"{recipe.name}-{variant.pk}"
        final = storage_root() / relative
        staging = final.with_name(final.name + f".job{job.pk}")
        old = final.with_name(final.name + f".old{job.pk}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in result.files:
            os.replace(f.path, staging / f.path.name)
        try:
            if final.exists():
                os.replace(final, old)
            os.replace(staging, final)
            variant.files.all().delete()
            ArtifactFile.objects.bulk_create(
                [ArtifactFile(variant=variant, name=f.path.name, size=f.size, sha256=f.sha256) for f in result.files])
            variant.status = Variant.Status.READY
            variant.storage_path = str(relative)
            variant.total_bytes = sum(f.size for f in result.files)
            variant.bits_per_weight = result.bits_per_weight
            variant.plan = {"recipe": result.recipe_name, "recipe_sha256": result.recipe_sha256, "arch": result.arch,
                            "n_params": result.n_params, "types": result.types(), "seconds": result.seconds}
            variant.weight_error = weight_error_summary(result)
            variant.save()
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            if old.exists():
                os.replace(old, final)
            raise
        transaction.on_commit(lambda: shutil.rmtree(old, ignore_errors=True))
    return variant


def weight_error_summary(result, worst: int = 10) -> dict:
    tensors = [t for t in result.tensors if t.type not in ("F32", "F16", "BF16")]
    if not tensors:
        return {}
    weights = sum(1 for _ in tensors)
    return {
        "mean_rel_error": sum(t.rel_error for t in tensors) / weights,
        "worst": [{"name": t.name, "type": t.type, "rel_error": t.rel_error}
                  for t in sorted(tensors, key=lambda t: t.rel_error, reverse=True)[:worst]],
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def benchmark(job: BenchmarkJob, ctx: JobContext) -> dict:
    """PPL/KLD against the checkpoint's reference variant (job.options: text_path, reference_variant, n_ctx)."""
    from quant.eval.kld import evaluate_variant
    from quant.eval.model import EvalSettings
    from quant.eval.reference import cached_reference

    variant = job.variant
    opts = job.options or {}
    reference = Variant.objects.get(pk=opts["reference_variant"]) if "reference_variant" in opts else None
    if reference is None or "text_path" not in opts:
        raise ValueError("benchmark options need reference_variant (a variant id) and text_path")
    text = Path(opts["text_path"]).read_text()
    eval_settings = EvalSettings(n_ctx=int(opts.get("n_ctx", 512)), max_windows=opts.get("max_windows"),
                                 n_gpu_layers=int(opts.get("n_gpu_layers", 0)))

    def first_file(v: Variant) -> Path:
        return storage_root() / v.storage_path / v.files.order_by("name").first().name

    def progress(step: str, fraction: float, message: str = "") -> None:
        ctx.progress(fraction, step=step, log_line=message)

    def cancelled() -> bool:
        ctx.check()
        return False

    ref = cached_reference(first_file(reference), text, storage_root() / "references", eval_settings,
                           progress=progress, cancelled=cancelled)
    quality = evaluate_variant(first_file(variant), text, ref, eval_settings, progress, cancelled).as_dict()
    with transaction.atomic():
        v = Variant.objects.select_for_update().get(pk=variant.pk)
        v.quality = {**v.quality, job.suite: quality}
        v.save(update_fields=["quality"])
    return {"result": quality}


HANDLERS = {"quantize": quantize, "benchmark": benchmark}
