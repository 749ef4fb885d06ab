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

import errno
import os
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from quant.hashing import file_sha256
from registry import jobs
from registry.models import ArtifactFile, BenchmarkJob, Checkpoint, QuantizationJob, Recipe, Variant
from workers.hosts import device
from workers.runner import Cancelled, JobContext, wait_for_database

STORAGE_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StorageFull(OSError):
    """The disk (or a quota or file size limit) stopped a job's writes; the message says where."""


def storage_root() -> Path:
    return Path(settings.DSQ_STORAGE_ROOT)


def storage_full(exc: OSError, where: Path) -> StorageFull:
    """A StorageFull naming the directory being written and what is left there.

    A failed write() reports ENOSPC without a file name; the job's error must still tell an
    operator which filesystem to clean up."""
    try:
        free = f"{shutil.disk_usage(where if where.exists() else storage_root()).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    target = exc.filename or where
    return StorageFull(exc.errno, f"{os.strerror(exc.errno)} while writing {target} ({free})")


def work_dir(job: QuantizationJob) -> Path:
    return storage_root() / "work" / str(job.pk)


def requirements(kind: str, job) -> dict:
    """What a job needs from a host, estimated before claiming it (workers.hosts.shortfall)."""
    if kind != "quantize":
        return {}
    from quant import convert
    from quant.adapters import SLAB_WEIGHTS

    plan = convert.plan_conversion(job.checkpoint.local_path, job.recipe.parsed(), imatrix=job.imatrix or None,
                                   name=f"{job.checkpoint.name}-{job.recipe.name}")
    largest = max((t.out.n_elements for t in plan.tensors), default=0)
    # The tensor cache and the output are both on disk until the files move into place;
    # the GPU holds one slab in float32 plus the codec's working copies.
    return {"disk_bytes": 2 * plan.total_bytes + (64 << 20),
            "gpu_bytes": 16 * min(largest, SLAB_WEIGHTS) if device().startswith("cuda") else 0}


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


def build_variant(checkpoint: Checkpoint, recipe: Recipe, ctx: JobContext, work: Path, *, tag: str,
                  imatrix: str = "", imatrix_sha256: str = "") -> Variant:
    """Plan, convert (resumably, through work/tensors), verify and register one variant."""
    from quant import convert

    ctx.progress(0.0, step=f"plan {recipe.name}")
    plan = convert.plan_conversion(
        checkpoint.local_path, recipe.parsed(), imatrix=imatrix or None, name=f"{checkpoint.name}-{recipe.name}",
        source_repo=checkpoint.hf_repo or None, source_revision=checkpoint.revision or None,
        shard_size=getattr(settings, "DSQ_SHARD_BYTES", None))
    ctx.log(plan.describe().splitlines()[0])
    shutil.rmtree(work / "out", ignore_errors=True)
    try:
        result = convert.execute(plan, work / "out", device=device(), progress=_on_progress(ctx),
                                 should_cancel=_should_cancel(ctx), tensor_cache_dir=work / "tensors")
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            raise storage_full(exc, work) from exc
        raise
    ctx.progress(1.0, step="verify")
    for f in result.files:
        if file_sha256(f.path) != f.sha256:
            raise RuntimeError(f"{f.path.name}: sha256 changed after writing")
    ctx.check()
    wait_for_database()  # converting took long: the connection may not have survived (PostgreSQL restarted)
    return register(checkpoint, recipe, imatrix_sha256, tag, result)


def quantize(job: QuantizationJob, ctx: JobContext) -> dict:
    from registry.benchmarks import request_benchmarks

    work = work_dir(job)
    try:
        variant = build_variant(job.checkpoint, job.recipe, ctx, work, tag=f"job{job.pk}", imatrix=job.imatrix,
                                imatrix_sha256=job.imatrix_sha256)
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
            remove_partial_tensors(work / "tensors")
        raise
    shutil.rmtree(work, ignore_errors=True)
    if job.benchmark_suites:
        request_benchmarks(variant, job.benchmark_suites, job.requested_by)
    return {"variant": variant}


def remove_partial_tensors(cache: Path) -> None:
    """Drop half-written cache entries (`*.tmp`, e.g. cut short by a full disk); finished ones stay for the retry."""
    for partial in cache.glob("*.tmp"):
        partial.unlink(missing_ok=True)


def register(checkpoint: Checkpoint, recipe: Recipe, imatrix_sha256: str, tag: str, result) -> Variant:
    """Move the finished files into the variant's directory and register them, all or nothing."""
    ckpt = checkpoint
    with transaction.atomic():
        variant, _ = Variant.objects.select_for_update().get_or_create(
            checkpoint=ckpt, recipe=recipe, imatrix_sha256=imatrix_sha256)
        relative = Path("variants") / ckpt.name / f"{recipe.name}-{variant.pk}"
        final = storage_root() / relative
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


def reference_variant(checkpoint: Checkpoint, ctx: JobContext) -> Variant:
    """The checkpoint's reference variant (F16, or Q8_0 for the 671B models), built here if missing."""
    from registry.benchmarks import reference_recipe_name

    name = reference_recipe_name(checkpoint)
    recipe = Recipe.objects.filter(name=name).order_by("-version").first()
    if recipe is None:
        raise ValueError(f"reference recipe {name} is not registered (run `manage.py bootstrap`)")
    ready = Variant.objects.filter(checkpoint=checkpoint, recipe=recipe, imatrix_sha256="",
                                   status=Variant.Status.READY).first()
    if ready is not None:
        return ready
    work = storage_root() / "work" / f"reference-{checkpoint.pk}-{recipe.pk}"
    try:
        return build_variant(checkpoint, recipe, ctx, work, tag=f"ref{os.getpid()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def first_file(variant: Variant) -> Path:
    """The GGUF llama.cpp opens (the first split shard when there are several)."""
    return storage_root() / variant.storage_path / variant.files.order_by("name").first().name


def benchmark(job: BenchmarkJob, ctx: JobContext) -> dict:
    """Tier 1 ("quality"): PPL and KLD against the checkpoint's reference variant, stored in Variant.quality.

    job.options may set n_ctx, max_windows, n_gpu_layers and text_path (default: the evaluation part of
    CPython's pydoc topics, the held-apart tail being reserved for importance matrices).
    """
    from quant.eval.kld import evaluate_variant
    from quant.eval.model import EvalSettings
    from quant.eval.reference import cached_reference
    from quant.eval.text import split_text, topics_text
    from registry.benchmarks import QUALITY, quality_summary, record_quality
    from registry.quality import variant_label as quality_label

    if job.suite != QUALITY:
        return task_suite(job, ctx)
    variant = job.variant
    opts = job.options or {}
    text = Path(opts["text_path"]).read_text() if "text_path" in opts else split_text(topics_text(), 0.1)[0]
    eval_settings = EvalSettings(n_ctx=int(opts.get("n_ctx", settings.DSQ_EVAL_N_CTX)),
                                 max_windows=opts.get("max_windows", settings.DSQ_EVAL_MAX_WINDOWS),
                                 n_gpu_layers=int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS)))

    def progress(step: str, fraction: float, message: str = "") -> None:
        ctx.progress(fraction, step=step, log_line=message)

    def cancelled() -> bool:
        ctx.check()
        return False

    reference = reference_variant(variant.checkpoint, ctx)
    ref = cached_reference(first_file(reference), text, storage_root() / "references", eval_settings,
                           progress=progress, cancelled=cancelled)
    result = evaluate_variant(first_file(variant), text, ref, eval_settings, progress, cancelled).as_dict()
    label = quality_label(reference)
    record_quality(variant, job.suite, result, quality_summary(result, label))
    if not (reference.quality or {}).get("baseline"):
        # The reference against itself: its PPL, no divergence. The drop table measures from it.
        record_quality(reference, job.suite, {"ppl": result["reference_ppl"]},
                       {"ppl": result["reference_ppl"], "kld_mean": 0.0, "top1_percent": 100.0, "baseline": True,
                        "reference": label})
    return {"result": result}


def task_suite(job: BenchmarkJob, ctx: JobContext) -> dict:
    """Tier 2: a named task suite (quant/eval/suites) through lm-evaluation-harness against the variant.

    The model is served by llama-cpp-python's OpenAI-compatible server on loopback, or by an external
    llama-server (job.options["server_url"], e.g. a multi-GPU host). Scores go to Variant.quality["scores"].
    options: limit (questions per task), offline (no dataset downloads; default on), n_ctx, n_gpu_layers.
    """
    import contextlib

    from quant.eval.harness import run_suite
    from quant.eval.server import ServerSettings, external_server, local_server
    from quant.eval.suites import load_suite
    from registry.benchmarks import record_quality

    opts = job.options or {}
    suite = load_suite(job.suite)
    work = storage_root() / "work" / f"benchmark-{job.pk}"
    work.mkdir(parents=True, exist_ok=True)

    def progress(step: str, fraction: float, message: str = "") -> None:
        ctx.progress(fraction, step=step, log_line=message)

    def cancelled() -> bool:
        ctx.check()
        return False

    if opts.get("server_url"):
        server = contextlib.nullcontext(external_server(opts["server_url"], opts.get("model", "default")))
    else:
        server = local_server(first_file(job.variant),
                              ServerSettings(n_ctx=int(opts.get("n_ctx", 4096)),
                                             n_gpu_layers=int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS))),
                              log_path=work / "server.log", cancelled=cancelled)
    try:
        with server as endpoint:
            result = run_suite(suite, endpoint, work / "runs", limit=opts.get("limit"),
                               offline=bool(opts.get("offline", True)), progress=progress, cancelled=cancelled)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scores = {**(job.variant.quality or {}).get("scores", {}),
              **{s.benchmark: {"mean": s.mean, "std": s.std} for s in result.scores}}
    record_quality(job.variant, job.suite, result.as_dict(), {"scores": scores})
    return {"result": result.as_dict()}


HANDLERS = {"quantize": quantize, "benchmark": benchmark}
