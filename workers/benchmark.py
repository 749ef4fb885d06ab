"""The benchmark job: measure a variant, store the result in Variant.quality (registry.evidence shapes).

Tier 1 (suite "quality"): perplexity and KL divergence of the variant's GGUF against the
checkpoint's reference variant (built here first when missing). Tier 2 (any other suite): a
named task suite (quant/eval/suites) through lm-evaluation-harness against a llama.cpp server.
Both are written through registry.benchmarks (record_tier1, record_scores), the one writer of those shapes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from django.conf import settings

from registry.benchmarks import QUALITY, record_scores, record_tier1, reference_recipe_name
from registry.models import BenchmarkJob, Checkpoint, Recipe, Variant
from workers import storage
from workers.context import JobContext, PermanentError
from workers.quantize import build_variant


def run(job: BenchmarkJob, ctx: JobContext) -> dict:
    return quality(job, ctx) if job.suite == QUALITY else task_suite(job, ctx)


def reference_variant(checkpoint: Checkpoint, ctx: JobContext) -> Variant:
    """The checkpoint's reference variant (F16, or Q8_0 for the 671B models), built here if missing."""
    name = reference_recipe_name(checkpoint)
    recipe = Recipe.objects.filter(name=name).order_by("-version").first()
    if recipe is None:
        raise ValueError(f"reference recipe {name} is not registered (run `manage.py bootstrap`)")
    ready = Variant.objects.filter(checkpoint=checkpoint, recipe=recipe, imatrix_sha256="",
                                   status=Variant.Status.READY).first()
    if ready is not None:
        return ready
    work = storage.work_dir(f"reference-{checkpoint.pk}-{recipe.pk}")
    try:
        return build_variant(checkpoint, recipe, ctx, work, tag=f"ref{os.getpid()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quality(job: BenchmarkJob, ctx: JobContext) -> dict:
    """Tier 1: PPL and KLD against the checkpoint's reference variant, stored in Variant.quality.

    job.options may set n_ctx, max_windows, n_gpu_layers and text_path (default: the evaluation part of
    CPython's pydoc topics, the held-apart tail being reserved for importance matrices).
    """
    from quant.eval.kld import evaluate_variant
    from quant.eval.model import EvalSettings
    from quant.eval.reference import cached_reference
    from quant.eval.text import split_text, topics_text

    variant = job.variant
    opts = job.options or {}
    text = Path(opts["text_path"]).read_text() if "text_path" in opts else split_text(topics_text(), 0.1)[0]
    eval_settings = EvalSettings(n_ctx=int(opts.get("n_ctx", settings.DSQ_EVAL_N_CTX)),
                                 max_windows=opts.get("max_windows", settings.DSQ_EVAL_MAX_WINDOWS),
                                 n_gpu_layers=int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS)))
    reference = reference_variant(variant.checkpoint, ctx)
    ref = cached_reference(storage.first_file(reference), text, storage.storage_root() / "references", eval_settings,
                           reporter=ctx)
    result = evaluate_variant(storage.first_file(variant), text, ref, eval_settings, reporter=ctx).as_dict()
    stored = record_tier1(variant, reference, result, job.suite, reference_ppl_uncertainty=ref.perplexity.uncertainty)
    return {"result": stored.to_json()}


def task_suite(job: BenchmarkJob, ctx: JobContext) -> dict:
    """Tier 2: a named task suite (quant/eval/suites) through lm-evaluation-harness against the variant.

    The model is served by llama-cpp-python's OpenAI-compatible server on loopback, or by an external
    llama-server (job.options["server_url"], e.g. a multi-GPU host). Scores go to Variant.quality.scores.
    options: limit (questions per task), offline (no dataset downloads; default on), n_ctx, n_gpu_layers.
    """
    from quant.eval.harness import run_suite
    from quant.eval.server import ServerSettings, external_server, local_server
    from quant.eval.suites import UnknownSuite, load_suite

    opts = job.options or {}
    try:
        suite = load_suite(job.suite)
    except UnknownSuite as exc:  # the name is checked at request time; a row that slipped past fails for good
        raise PermanentError(str(exc)) from None
    work = storage.work_dir(f"benchmark-{job.pk}")
    work.mkdir(parents=True, exist_ok=True)
    if opts.get("server_url"):
        server = contextlib.nullcontext(external_server(opts["server_url"], opts.get("model", "default")))
    else:
        server = local_server(storage.first_file(job.variant),
                              ServerSettings(n_ctx=int(opts.get("n_ctx", 4096)),
                                             n_gpu_layers=int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS))),
                              log_path=work / "server.log", reporter=ctx)
    try:
        with server as endpoint:
            result = run_suite(suite, endpoint, work / "runs", limit=opts.get("limit"),
                               offline=bool(opts.get("offline", True)), reporter=ctx)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"result": record_scores(job.variant, job.suite, result.as_dict()).to_json()}
