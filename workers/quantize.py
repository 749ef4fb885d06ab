"""The quantize job: plan and convert a checkpoint with a recipe, verify the files, register the Variant.

The conversion writes into `work/<job>/out`, keeping finished tensors in `work/<job>/tensors`
so that a retried job resumes; the files then move to the variant's directory and the Variant
and its files are registered in one transaction. Nothing is registered until the files are
complete and verified; a cancelled or finally failed job leaves no work files behind.

A variant planned as several GGUF split files is made by one shard job per file (registry.shards):
the job splits and waits, any worker claims a shard (run_shard) and writes its file alone into
`work/<job>/shard-<i>/` (its own tensor cache, so a shard whose worker died resumes on another),
the finished file goes to `work/<job>/files/`; once all are written the job runs again and
registers them (assemble). The files are byte for byte those of a one-job run.

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
from registry import jobs, shards
from registry.benchmarks import known_suites, request_benchmarks
from registry.evidence import Plan
from registry.models import ArtifactFile, Checkpoint, JobState, QuantizationJob, Recipe, ShardJob, Variant
from workers import storage
from workers.context import JobContext, PermanentError, wait_for_database
from workers.hosts import device


def requirements(job: QuantizationJob) -> dict:
    """What the job needs from a host, estimated before claiming it (workers.hosts.shortfall)."""
    from quant.adapters import SLAB_WEIGHTS

    plan = plan_for(job.checkpoint, job.recipe, imatrix_path(job))
    largest = max((t.out.n_elements for t in plan.tensors), default=0)
    # The tensor cache and the output are both on disk until the files move into place (a split
    # job's host only ever holds one shard's); the GPU holds one slab in float32 plus the codec's
    # working copies.
    output = max(file_bytes(plan)) if len(plan.shards) > 1 else plan.total_bytes
    return {"disk_bytes": 2 * output + (64 << 20),
            "gpu_bytes": 16 * min(largest, SLAB_WEIGHTS) if device().startswith("cuda") else 0}


def shard_requirements(shard: ShardJob) -> dict:
    """A shard's needs: its own file's bytes twice (tensor cache and output) on this host."""
    needs = requirements(shard.parent)
    return dict(needs, disk_bytes=2 * shard.planned_bytes + (64 << 20))


def run(job: QuantizationJob, ctx: JobContext) -> dict:
    """Build the job's variant, then queue the benchmarks it asked for."""
    work = storage.work_dir(str(job.pk))
    try:
        variant = build_variant(job.checkpoint, job.recipe, ctx, work, tag=f"job{job.pk}", imatrix=imatrix_path(job),
                                imatrix_sha256=job.imatrix_sha256, imatrix_artifact=job.imatrix_artifact, job=job)
    except jobs.Waiting:
        raise
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


def plan_for(checkpoint: Checkpoint, recipe: Recipe, imatrix: str = ""):
    """The conversion plan of a variant, the same wherever a job or one of its shards runs."""
    from quant import convert

    return convert.plan_conversion(
        checkpoint.local_path, recipe.parsed(), imatrix=imatrix or None, name=f"{checkpoint.name}-{recipe.name}",
        source_repo=checkpoint.hf_repo or None, source_revision=checkpoint.revision or None,
        shard_size=settings.DSQ_SHARD_BYTES)


def file_bytes(plan) -> list[int]:
    """The planned tensor bytes of each split file."""
    return [sum(t.nbytes for t in shard) for shard in plan.shards]


def build_variant(checkpoint: Checkpoint, recipe: Recipe, ctx: JobContext, work: Path, *, tag: str,
                  imatrix: str = "", imatrix_sha256: str = "", imatrix_artifact=None,
                  job: "QuantizationJob | None" = None) -> Variant:
    """Plan, convert (resumably, through work/tensors), verify and register one variant.

    For a `job` whose plan has several files: split it into shard jobs (raises jobs.Waiting),
    or, once they all succeeded, register their files."""
    from quant import convert

    ctx.progress(0.0, step=f"plan {recipe.name}")
    plan = plan_for(checkpoint, recipe, imatrix)
    ctx.log(plan.describe().splitlines()[0])
    if job is not None and len(plan.shards) > 1:
        result = assemble(job, plan, work)
        if result is None:
            ctx.log(f"split into {len(plan.shards)} shard jobs, one per file")
            ctx.flush()
            shards.split(job, list(zip(plan.file_names(), file_bytes(plan))), plan.output_key())
            raise jobs.Waiting(f"job {job.pk} waits for its {len(plan.shards)} shard jobs")
    else:
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


def assemble(job: QuantizationJob, plan, work: Path):
    """The whole run's result from the job's shards, once every one succeeded for this plan; else None.

    Each file was hashed by the shard that wrote it; here only its size is checked."""
    from quant import convert

    rows = list(job.shards.order_by("index"))
    if len(rows) != len(plan.shards) or any(s.state != JobState.SUCCEEDED for s in rows):
        return None
    if any(s.plan_key != plan.output_key() for s in rows):
        raise PermanentError("the checkpoint, recipe or imatrix changed while the shard jobs ran: retry the job")
    parts = []
    for s in rows:
        part = convert.ConversionResult.from_dict(s.result)
        for f in part.files:
            f.path = work / "files" / f.path.name
            if not f.path.is_file() or f.path.stat().st_size != f.size:
                raise RuntimeError(f"shard {s.index + 1}/{s.count}: {f.path} is missing or not {f.size} bytes")
        parts.append(part)
    return convert.ConversionResult.combine(parts)


def run_shard(shard: ShardJob, ctx: JobContext) -> dict:
    """Write one file of a split job (resuming from the shard's tensor cache) into work/<job>/files/."""
    from quant import convert

    parent = shard.parent
    work = storage.work_dir(str(parent.pk))
    mine = work / f"shard-{shard.index}"
    try:
        ctx.progress(0.0, step=f"plan {parent.recipe.name} (file {shard.index + 1}/{shard.count})")
        plan = plan_for(parent.checkpoint, parent.recipe, imatrix_path(parent))
        if plan.output_key() != shard.plan_key:
            raise PermanentError("the checkpoint, recipe or imatrix changed since the job was split")
        shutil.rmtree(mine / "out", ignore_errors=True)
        kept = len(list((mine / "tensors").glob("*.bin")))
        if kept:
            ctx.log(f"{kept} tensor(s) finished by an earlier attempt are reused if still valid")
        result = convert.execute(plan, mine / "out", device=device(), reporter=ctx, tensor_cache_dir=mine / "tensors",
                                 only_file=shard.index)
        ctx.check()
        (work / "files").mkdir(parents=True, exist_ok=True)
        for f in result.files:
            os.replace(f.path, work / "files" / f.path.name)
    except Cancelled:
        if jobs.is_cancel_requested(shard):
            shutil.rmtree(mine, ignore_errors=True)
        raise
    except OSError as exc:
        _clean_shard(shard, mine)
        if exc.errno in storage.STORAGE_FULL_ERRNOS:
            raise storage.storage_full(exc, mine) from exc
        raise
    except BaseException:
        _clean_shard(shard, mine)
        raise
    shutil.rmtree(mine, ignore_errors=True)
    wait_for_database()
    return {"result": result.to_dict()}


def _clean_shard(shard: ShardJob, mine: Path) -> None:
    """A retry resumes from the shard's finished tensors; its last attempt leaves nothing behind."""
    if shard.attempts >= shard.max_attempts:
        shutil.rmtree(mine, ignore_errors=True)
    else:
        shutil.rmtree(mine / "out", ignore_errors=True)
        storage.remove_partial_tensors(mine / "tensors")


def settle_shards(shard_id: int) -> None:
    """After a shard's run: move its job on (registry.shards.settle); a job that ended without
    registering (failed, cancelled) and has no shard left running loses its work files."""
    parent_id = ShardJob.objects.filter(pk=shard_id).values_list("parent_id", flat=True).first()
    if parent_id is not None:
        settle_parent(parent_id)


def settle_parent(parent_id: int) -> None:
    state = shards.settle(parent_id)
    if state in (JobState.FAILED, JobState.CANCELLED) and shards.all_final(parent_id):
        shutil.rmtree(storage.work_dir(str(parent_id)), ignore_errors=True)


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
