"""The benchmark job: measure a variant, store the result in Variant.quality (registry.evidence shapes).

Tier 1 (suite "quality"): perplexity and KL divergence of the variant's GGUF against the
checkpoint's reference variant (built here first when missing). Tier 2 (any other suite): a
named task suite (quant/eval/suites) through lm-evaluation-harness against llama.cpp's llama-server,
started here for the variant on this worker's GPUs (all of a host's for a host worker).
Both are written through registry.benchmarks (record_tier1, record_scores), the one writer of those shapes.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
import os
import shutil
from pathlib import Path

from django.conf import settings

from registry.benchmarks import QUALITY, record_scores, record_tier1, reference_recipe_name
from registry.models import BenchmarkJob, Checkpoint, Recipe, Variant
from quant.progress import Cancelled
from workers import hosts, storage
from workers.context import JobContext, PermanentError
from workers.quantize import build_variant


def requirements(job: BenchmarkJob) -> dict:
    """What a host worker asks before claiming a task suite: how many of its GPUs the variant needs
    with the job's context (quant.fit through registry.placement); one-GPU workers ask nothing here."""
    from quant.fit import MAX_GPUS
    from registry import placement

    if hosts.scope() != "host" or job.suite == QUALITY:
        return {}
    inventory = hosts.gpu_inventory()
    if not inventory:
        return {"gpus": 1, "need": "needs a GPU"}
    need = placement.gpus_needed(job.variant, min(g["total_bytes"] for g in inventory),
                                 placement.context_of(job.options, job.suite))
    return {"gpus": need.gpus or MAX_GPUS + 1, "need": need.describe()}


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
    from quant.eval.text import evaluation_text

    variant = job.variant
    opts = job.options or {}
    text = Path(opts["text_path"]).read_text() if "text_path" in opts else evaluation_text()
    eval_settings = EvalSettings(n_ctx=int(opts.get("n_ctx", settings.DSQ_EVAL_N_CTX)),
                                 max_windows=opts.get("max_windows", settings.DSQ_EVAL_MAX_WINDOWS),
                                 n_gpu_layers=int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS)))
    reference = reference_variant(variant.checkpoint, ctx)
    ref = cached_reference(storage.first_file(reference), text, storage.storage_root() / "references", eval_settings,
                           reporter=ctx)
    result = evaluate_variant(storage.first_file(variant), text, ref, eval_settings, reporter=ctx).as_dict()
    stored = record_tier1(variant, reference, result, job.suite, reference_ppl_uncertainty=ref.perplexity.uncertainty)
    return {"result": stored.to_json()}


ENGINES = ("llama-server", "llama-cpp-python")
# Job options that become llama-server settings (quant.eval.llama_server.LlamaServerSettings).
SERVER_OPTIONS = ("n_gpu_layers", "split_mode", "tensor_split", "flash_attn", "threads")


def llama_server_binary() -> "Path | None":
    """DSQ_LLAMA_SERVER, else `llama-server` on PATH (the GPU image installs it there); None when neither."""
    if settings.DSQ_LLAMA_SERVER:
        return Path(settings.DSQ_LLAMA_SERVER)
    found = shutil.which("llama-server")
    return Path(found) if found else None


def engine_for(opts: dict, n_gpus: int) -> str:
    """llama.cpp's llama-server whenever it is installed; llama-cpp-python's server only where it is enough.

    Enough: a worker with at most one device running the suite through the completions endpoint
    (the embedded default of `make demo` and a CPU-only checkout, where llama-server is not built).
    Not enough: a host worker spreading a variant over several GPUs, which needs llama-server's split.
    """
    engine = opts.get("engine") or ("llama-server" if llama_server_binary() else "llama-cpp-python")
    if engine not in ENGINES:
        raise PermanentError(f"unknown engine {str(engine)[:50]!r}; engines: {', '.join(ENGINES)}")
    if engine == "llama-cpp-python" and n_gpus > 1:
        raise PermanentError(f"{n_gpus} GPUs need llama-server (set DSQ_LLAMA_SERVER or install it on PATH)")
    return engine


def outputs_dir(job: BenchmarkJob) -> Path:
    """Where a task suite's per-question outputs stay after the job (relative path in job.result)."""
    return storage.storage_root() / "benchmarks" / f"job-{job.pk}"


def task_suite(job: BenchmarkJob, ctx: JobContext) -> dict:
    """Tier 2: a named task suite (quant/eval/suites) through lm-evaluation-harness against the variant.

    The model is served by llama.cpp's llama-server, started here with the settings the variant needs
    on this worker's GPUs (quant.eval.llama_server.settings_for), by llama-cpp-python's server where
    that is enough (engine_for), or by an external server (job.options["server_url"]). Scores go to
    Variant.quality["scores"]; each question's prompt, raw output and score stay under
    benchmarks/job-<id>/ in storage (job.result["outputs_dir"]), and job.result["server"] records the
    command the server ran and what it reported about itself.
    options: limit (questions per task), offline (no dataset downloads; default on), n_ctx (per slot),
    parallel (slots; lm_eval keeps that many requests in flight), engine, and the server settings
    n_gpu_layers, split_mode, tensor_split, flash_attn, threads.
    """
    from quant.eval.harness import run_suite
    from quant.eval.suites import UnknownSuite, load_suite

    opts = job.options or {}
    try:
        suite = load_suite(job.suite)
    except UnknownSuite as exc:  # the name is checked at request time; a row that slipped past fails for good
        raise PermanentError(str(exc)) from None
    gpus = hosts.gpu_indices()
    parallel = int(opts.get("parallel", 1))
    keep = outputs_dir(job)
    shutil.rmtree(keep, ignore_errors=True)  # a retry starts over
    keep.mkdir(parents=True)
    try:
        with serve(job, opts, gpus, keep, ctx, default_n_ctx=suite.context_needed()) as (endpoint, record):
            result = run_suite(suite, endpoint, keep / "runs", limit=opts.get("limit"),
                               offline=bool(opts.get("offline", True)), reporter=ctx, concurrency=parallel)
    except Cancelled:
        shutil.rmtree(keep, ignore_errors=True)  # nothing to audit
        raise
    measured = replace(record_scores(job.variant, job.suite, result.as_dict()), server=record,
                       outputs_dir=str(keep.relative_to(storage.storage_root())))
    return {"result": measured.to_json()}


@contextlib.contextmanager
def serve(job: BenchmarkJob, opts: dict, gpus: list[int], logs: Path, ctx: JobContext, default_n_ctx: int = 4096):
    """(endpoint, what the job records about the server) for the duration of the block.

    Context per slot: options["n_ctx"], else what the suite's generation budget needs."""
    from quant.eval.llama_server import llama_server, settings_for
    from quant.eval.server import ServerSettings, external_server, local_server

    n_ctx = int(opts.get("n_ctx", default_n_ctx))
    if opts.get("server_url"):
        yield external_server(opts["server_url"], opts.get("model", "default")), {
            "engine": "external", "url": opts["server_url"]}
        return
    model = storage.first_file(job.variant)
    engine = engine_for(opts, len(gpus))
    if engine == "llama-cpp-python":
        n_gpu_layers = int(opts.get("n_gpu_layers", settings.DSQ_EVAL_GPU_LAYERS))
        with local_server(model, ServerSettings(n_ctx=n_ctx, n_gpu_layers=n_gpu_layers),
                          log_path=logs / "server.log", reporter=ctx) as endpoint:
            yield endpoint, {"engine": engine, "settings": {"n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers}}
        return
    try:
        server_settings = settings_for(len(gpus), n_ctx=n_ctx, parallel=int(opts.get("parallel", 1)),
                                       **{k: opts.get(k) for k in SERVER_OPTIONS})
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"server settings: {exc}") from None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": hosts.cuda_visible_devices(gpus)} if gpus else None

    def started(pid: int, argv: list[str]) -> None:
        ctx.log(f"llama-server pid {pid} on GPUs {gpus or 'none'}: {' '.join(argv)}")

    binary = llama_server_binary()
    if binary is None:
        raise FileNotFoundError("no llama-server on this worker: set DSQ_LLAMA_SERVER or put it on PATH")
    with llama_server(binary, model, server_settings, log_path=logs / "server.log",
                      reporter=ctx, on_start=started, env=env) as running:
        record = without_server_paths(running.record())
        ctx.log(f"llama-server ready: {record['props']}")
        yield running.endpoint, record


def without_server_paths(record: dict) -> dict:
    """The server record as job.result shows it to anyone: the storage root and the binary's directory
    become <storage> and <bin> (the API names no server directories)."""
    import json

    text = json.dumps(record)
    for path, label in ((storage.storage_root(), "<storage>"), (llama_server_binary().parent, "<bin>")):
        text = text.replace(json.dumps(str(path))[1:-1], label)
    return json.loads(text)
