"""The quantize job: plan and convert a checkpoint with a recipe, verify the files, register the Variant.

The conversion writes into `work/<job>/out`, keeping finished tensors in `work/<job>/tensors`
so that a retried job resumes; the files then move to the variant's directory and the Variant
and its files are registered in one transaction. Nothing is registered until the files are
complete and verified; a cancelled or finally failed job leaves no work files behind.

quant/ is imported inside the functions: torch loads in the pool process that runs a job, not
in the worker's main process before it forks.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from quant.progress import Cancelled
from registry import jobs
from registry.benchmarks import known_suites, request_benchmarks
from registry.evidence import Plan
from registry.models import ArtifactFile, Checkpoint, QuantizationJob, Recipe, Variant
from workers import storage
from workers.context import JobContext, wait_for_database
from workers.hosts import device


def requirements(job: QuantizationJob) -> dict:
    """What the job needs from a host, estimated before claiming it (workers.hosts.shortfall)."""
    from quant import convert
    from quant.adapters import SLAB_WEIGHTS

    plan = convert.plan_conversion(job.checkpoint.local_path, job.recipe.parsed(), imatrix=imatrix_path(job) or None,
                                   name=f"{job.checkpoint.name}-{job.recipe.name}")
    largest = max((t.out.n_elements for t in plan.tensors), default=0)
    # The tensor cache and the output are both on disk until the files move into place;
    # the GPU holds one slab in float32 plus the codec's working copies.
    return {"disk_bytes": 2 * plan.total_bytes + (64 << 20),
            "gpu_bytes": 16 * min(largest, SLAB_WEIGHTS) if device().startswith("cuda") else 0}


def run(job: QuantizationJob, ctx: JobContext) -> dict:
    """Build the job's variant, then queue the benchmarks it asked for."""
    work = storage.work_dir(str(job.pk))
    try:
        variant = build_variant(job.checkpoint, job.recipe, ctx, work, tag=f"job{job.pk}", imatrix=imatrix_path(job),
                                imatrix_sha256=job.imatrix_sha256, imatrix_artifact=job.imatrix_artifact)
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
            storage.remove_partial_tensors(work / "tensors")
        raise
    shutil.rmtree(work, ignore_errors=True)
    if job.benchmark_suites:
        # Checked when the job was requested; a row from before that check keeps its variant and
        # only loses the unknown suites.
        known = [s for s in job.benchmark_suites if s in known_suites()]
        for suite in set(job.benchmark_suites) - set(known):
            ctx.log(f"benchmark suite {str(suite)[:100]!r} skipped: not a known suite")
        request_benchmarks(variant, known, job.requested_by)
    return {"variant": variant}


def imatrix_path(job: QuantizationJob) -> str:
    """The importance matrix file a job reads: a registered imatrix's stored file, else the path it was given."""
    if job.imatrix_artifact is not None:
        return str(storage.storage_root() / job.imatrix_artifact.storage_path)
    return job.imatrix


def build_variant(checkpoint: Checkpoint, recipe: Recipe, ctx: JobContext, work: Path, *, tag: str,
                  imatrix: str = "", imatrix_sha256: str = "", imatrix_artifact=None) -> Variant:
    """Plan, convert (resumably, through work/tensors), verify and register one variant."""
    from quant import convert

    ctx.progress(0.0, step=f"plan {recipe.name}")
    plan = convert.plan_conversion(
        checkpoint.local_path, recipe.parsed(), imatrix=imatrix or None, name=f"{checkpoint.name}-{recipe.name}",
        source_repo=checkpoint.hf_repo or None, source_revision=checkpoint.revision or None,
        shard_size=settings.DSQ_SHARD_BYTES)
    ctx.log(plan.describe().splitlines()[0])
    shutil.rmtree(work / "out", ignore_errors=True)
    try:
        result = convert.execute(plan, work / "out", device=device(), reporter=ctx, tensor_cache_dir=work / "tensors")
    except OSError as exc:
        if exc.errno in storage.STORAGE_FULL_ERRNOS:
            raise storage.storage_full(exc, work) from exc
        raise
    # Each file's sha256 was computed by the writer on the way out and its header re-read
    # against the plan (quant.convert.verify_file): the bytes are not read a second time.
    ctx.check()
    wait_for_database()  # converting took long: the connection may not have survived (PostgreSQL restarted)
    return register(checkpoint, recipe, imatrix_sha256, tag, result, imatrix_artifact)


def register(checkpoint: Checkpoint, recipe: Recipe, imatrix_sha256: str, tag: str, result,
             imatrix_artifact=None) -> Variant:
    """Move the finished files into the variant's directory and register them, all or nothing."""
    with transaction.atomic():
        variant, _ = Variant.objects.select_for_update().get_or_create(
            checkpoint=checkpoint, recipe=recipe, imatrix_sha256=imatrix_sha256)
        relative = storage.variant_relative_dir(variant)
        final = storage.storage_root() / relative
        staging = final.with_name(final.name + f".{tag}")
        old = final.with_name(final.name + f".old-{tag}")
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
            variant.plan = Plan.from_conversion(result).to_json()
            variant.weight_error = weight_error_summary(result)
            if imatrix_artifact is not None:
                variant.imatrix = imatrix_artifact
            variant.save()
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            if old.exists():
                os.replace(old, final)
            raise
        transaction.on_commit(lambda: shutil.rmtree(old, ignore_errors=True))
    return variant


def weight_error_summary(result, worst: int = 10) -> dict:
    """Tier 0: the mean relative error of the quantized tensors and the worst ones."""
    tensors = [t for t in result.tensors if t.type not in ("F32", "F16", "BF16")]
    if not tensors:
        return {}
    return {
        "mean_rel_error": sum(t.rel_error for t in tensors) / len(tensors),
        "worst": [{"name": t.name, "type": t.type, "rel_error": t.rel_error}
                  for t in sorted(tensors, key=lambda t: t.rel_error, reverse=True)[:worst]],
    }
