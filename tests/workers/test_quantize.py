"""A real `celery -A dsq worker` process on a real Redis and the PostgreSQL test database.

The worker quantizes a tiny DeepSeek-V3 checkpoint end to end; a cancelled job leaves no files;
a worker killed mid-job loses its lease, the reaper re-queues the job, and a new worker resumes
from the finished tensors and produces the same bytes as an uninterrupted run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from quant.hashing import file_sha256
from registry import dispatch, jobs
from registry.models import JobState, QuantizationJob, Recipe, Variant
from tests import factories
from tests.faults.processes import freeze_mid_job, frozen, wait_for
from workers import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def make_job(checkpoint_path: Path) -> QuantizationJob:
    ckpt = factories.checkpoint("tiny-v3", local_path=str(checkpoint_path))
    return factories.quantization_job(ckpt, factories.builtin_recipe("Q4_K_M"), max_attempts=3)


def state_of(job) -> QuantizationJob:
    return QuantizationJob.objects.get(pk=job.pk)


def test_a_worker_quantizes_a_checkpoint_end_to_end(start_worker, tiny_checkpoint, storage):
    proc = start_worker("w1")
    job = make_job(tiny_checkpoint)
    dispatch.enqueue("quantize", job.pk)
    done = wait_for("the job to finish", lambda: state_of(job).is_final and state_of(job), 600, proc)
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail
    variant = Variant.objects.get(pk=done.variant_id)
    assert variant.status == Variant.Status.READY and variant.bits_per_weight > 0
    files = list(variant.files.all())
    assert files and variant.total_bytes == sum(f.size for f in files)
    for f in files:
        assert file_sha256(storage / variant.storage_path / f.name) == f.sha256
    assert not (storage / "work" / str(job.pk)).exists()
    assert done.progress == 1.0 and "tensor 1/" in done.log_tail
    # The stored plan is the files' tensors (what the fit view and the review page read).
    from gguf import GGUFReader

    from registry.evidence import plan_of

    in_files = {t.name: (t.tensor_type.name, int(t.n_bytes)) for f in files
                for t in GGUFReader(storage / variant.storage_path / f.name).tensors}
    plan = plan_of(variant)
    assert {t.name: (t.type, t.bytes) for t in plan.tensors} == in_files
    assert plan.recipe == "Q4_K_M" and sum(s.weights for s in plan.type_breakdown()) == plan.n_params


def test_a_cancelled_job_stops_and_leaves_no_files(start_worker, slow_checkpoint, storage):
    proc = start_worker("w1")
    job = make_job(slow_checkpoint)
    dispatch.enqueue("quantize", job.pk)
    wait_for("the job to be claimed", lambda: state_of(job).state == JobState.RUNNING, 600, proc)
    with frozen(proc.popen.pid):  # cancel mid-job, however fast the machine
        assert jobs.request_cancel(state_of(job))
    done = wait_for("the job to stop", lambda: state_of(job).is_final and state_of(job), 600, proc)
    assert done.state == JobState.CANCELLED and done.variant_id is None
    assert not (storage / "work" / str(job.pk)).exists()
    assert not Variant.objects.exists() and not (storage / "variants").exists()


def test_a_killed_worker_loses_its_lease_and_another_resumes_byte_identically(
        start_worker, slow_checkpoint, storage, tmp_path):
    from quant import convert

    total = len(convert.plan_conversion(slow_checkpoint, "Q4_K_M").tensors)
    proc = start_worker("w1")
    job = make_job(slow_checkpoint)
    dispatch.enqueue("quantize", job.pk)
    wait_for("the job to be claimed", lambda: state_of(job).state == JobState.RUNNING, 600, proc)
    tensors = storage / "work" / str(job.pk) / "tensors"
    cached_at_kill = freeze_mid_job(proc.popen.pid, lambda: len(list(tensors.glob("*.bin"))), total)
    proc.kill()  # SIGKILL mid-quantization: some tensors finished, not all
    assert len(list(tensors.glob("*.bin"))) == cached_at_kill, "finished tensors stay in the job's work directory"

    assert state_of(job).state == JobState.RUNNING
    wait_for("the lease to expire", lambda: jobs.reap_expired() or None, 30)  # re-queues and returns it
    assert state_of(job).state == JobState.QUEUED
    dispatch.enqueue("quantize", job.pk)
    proc2 = start_worker("w2")
    done = wait_for("the resumed job to finish", lambda: state_of(job).is_final and state_of(job), 600, proc2)
    assert done.state == JobState.SUCCEEDED and done.worker == "w2" and done.attempts == 2, done.error
    assert "lease expired on w1" not in done.error  # cleared on the new claim
    resumed = {f.name: f.sha256 for f in Variant.objects.get(pk=done.variant_id).files.all()}

    whole = convert.convert(slow_checkpoint, tmp_path / "whole", "Q4_K_M", name="tiny-v3-Q4_K_M",
                            shard_size=django_settings.DSQ_SHARD_BYTES)
    assert resumed == {f.path.name: f.sha256 for f in whole.files}
    assert 0 < cached_at_kill < len(whole.tensors) == total, (cached_at_kill, len(whole.tensors))


@pytest.mark.django_db(transaction=True)  # run_job closes connections like a worker
def test_a_job_whose_stored_recipe_does_not_parse_fails_naming_the_recipe(celery_broker, redis_server, settings,
                                                                         tmp_path):
    settings.CELERY_BROKER_URL = redis_server.url  # where the worker advertises itself
    settings.DSQ_STORAGE_ROOT = tmp_path
    # a row as an older parser could have accepted it; a built-in of the same name exists
    stored = Recipe.objects.create(name="Q4_K_M", version=1, sha256="a" * 64,
                                   definition={"name": "Q4_K_M", "version": 1, "default": "Q4_K"})
    job = factories.quantization_job(factories.checkpoint(local_path=str(tmp_path / "absent")), stored,
                                     max_attempts=1)

    assert tasks.quantize(job.pk) == JobState.FAILED
    row = QuantizationJob.objects.get(pk=job.pk)
    assert "stored recipe Q4_K_M v1 (sha256 aaaaaaaaaaaa) does not parse: unknown field(s) ['default']" in row.error
    assert not Variant.objects.exists()
