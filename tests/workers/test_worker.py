"""A real `celery -A workers worker` process on a real Redis and the PostgreSQL test database.

The worker quantizes a tiny DeepSeek-V3 checkpoint end to end; a cancelled job leaves no files;
a worker killed mid-job loses its lease, the reaper re-queues the job, and a new worker resumes
from the finished tensors and produces the same bytes as an uninterrupted run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from quant.hashing import file_sha256
from registry import jobs
from registry.models import JobState, QuantizationJob, Variant
from tests import factories
from tests.faults.processes import freeze_mid_job, frozen
from workers import runner
from workers.celery_app import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, predicate, timeout: float, proc: "subprocess.Popen | None" = None, log: "Path | None" = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; worker log tail:\n{tail}")


@pytest.fixture
def start_worker(redis_server, celery_broker, storage, tmp_path):
    db = django_settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_BROKER_URL": redis_server.url, "DSQ_STORAGE_ROOT": str(storage),
           "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_LEASE_SECONDS": "4", "DSQ_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    procs = []

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "gpu", "-c", "1",
             "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env={**env, "DSQ_WORKER_NAME": name}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        procs.append(proc)
        wait_for(f"worker {name} to be ready", lambda: "ready." in log.read_text(), 90, proc, log)
        return proc, log

    yield start
    app.control.purge()
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def make_job(checkpoint_path: Path) -> QuantizationJob:
    ckpt = factories.checkpoint("tiny-v3", local_path=str(checkpoint_path))
    rcp = factories.recipe("Q4_K_M")
    return factories.quantization_job(ckpt, rcp, max_attempts=3)


def state_of(job) -> QuantizationJob:
    return QuantizationJob.objects.get(pk=job.pk)


def test_a_worker_quantizes_a_checkpoint_end_to_end(start_worker, tiny_checkpoint, storage):
    proc, log = start_worker("w1")
    job = make_job(tiny_checkpoint)
    runner.enqueue("quantize", job.pk)
    done = wait_for("the job to finish", lambda: state_of(job).is_final and state_of(job), 300, proc, log)
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail
    variant = Variant.objects.get(pk=done.variant_id)
    assert variant.status == Variant.Status.READY and variant.bits_per_weight > 0
    files = list(variant.files.all())
    assert files and variant.total_bytes == sum(f.size for f in files)
    for f in files:
        assert file_sha256(storage / variant.storage_path / f.name) == f.sha256
    assert not (storage / "work" / str(job.pk)).exists()
    assert done.progress == 1.0 and "tensor 1/" in done.log_tail


def test_a_cancelled_job_stops_and_leaves_no_files(start_worker, slow_checkpoint, storage):
    proc, log = start_worker("w1")
    job = make_job(slow_checkpoint)
    runner.enqueue("quantize", job.pk)
    wait_for("the job to be claimed", lambda: state_of(job).state == JobState.RUNNING, 120, proc, log)
    with frozen(proc.pid):  # cancel mid-job, however fast the machine
        assert jobs.request_cancel(state_of(job))
    done = wait_for("the job to stop", lambda: state_of(job).is_final and state_of(job), 120, proc, log)
    assert done.state == JobState.CANCELLED and done.variant_id is None
    assert not (storage / "work" / str(job.pk)).exists()
    assert not Variant.objects.exists() and not (storage / "variants").exists()


def test_a_killed_worker_loses_its_lease_and_another_resumes_byte_identically(
        start_worker, slow_checkpoint, storage, tmp_path):
    from quant import convert

    total = len(convert.plan_conversion(slow_checkpoint, "Q4_K_M").tensors)
    proc, log = start_worker("w1")
    job = make_job(slow_checkpoint)
    runner.enqueue("quantize", job.pk)
    wait_for("the job to be claimed", lambda: state_of(job).state == JobState.RUNNING, 120, proc, log)
    tensors = storage / "work" / str(job.pk) / "tensors"
    cached_at_kill = freeze_mid_job(proc.pid, lambda: len(list(tensors.glob("*.bin"))), total)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-quantization: some tensors finished, not all
    proc.wait(10)
    assert len(list(tensors.glob("*.bin"))) == cached_at_kill, "finished tensors stay in the job's work directory"

    assert state_of(job).state == JobState.RUNNING
    wait_for("the lease to expire", lambda: jobs.reap_expired() or None, 30)  # re-queues and returns it
    assert state_of(job).state == JobState.QUEUED
    runner.enqueue("quantize", job.pk)
    proc2, log2 = start_worker("w2")
    done = wait_for("the resumed job to finish", lambda: state_of(job).is_final and state_of(job), 300, proc2, log2)
    assert done.state == JobState.SUCCEEDED and done.worker == "w2" and done.attempts == 2, done.error
    assert "lease expired on w1" not in done.error  # cleared on the new claim
    resumed = {f.name: f.sha256 for f in Variant.objects.get(pk=done.variant_id).files.all()}

    whole = convert.convert(slow_checkpoint, tmp_path / "whole", "Q4_K_M", name="tiny-v3-Q4_K_M",
                            shard_size=getattr(django_settings, "DSQ_SHARD_BYTES", None))
    assert resumed == {f.path.name: f.sha256 for f in whole.files}
    assert 0 < cached_at_kill < len(whole.tensors) == total, (cached_at_kill, len(whole.tensors))
