"""A split variant made by shard jobs, one per GGUF file (registry.shards, workers/quantize.py run_shard).

The tasks run here as a worker runs them (in process: the state machine, progress, cancel, failure),
then with real `celery -A dsq worker` processes: two workers share the shards, one is killed with
SIGKILL mid-shard, and only that shard runs again, resuming from its finished tensors; the files
registered are byte for byte those of a one-job run.
"""
from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings

from quant import convert
from registry import dispatch, jobs
from registry.models import JobState, QuantizationJob, ShardJob, Variant
from tests import factories
from tests.faults.processes import freeze_mid_job, wait_for
from workers import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHARD_BYTES = 768 << 10  # the tiny checkpoint's Q4_K_M in 3 files


@pytest.fixture
def split(settings, celery_broker, redis_server, storage):
    settings.CELERY_BROKER_URL = redis_server.url  # where run_job advertises this "worker"
    settings.DSQ_STORAGE_ROOT = storage
    settings.DSQ_SHARD_BYTES = SHARD_BYTES
    return storage


def make_job(path, name="tiny-v3") -> QuantizationJob:
    ckpt = factories.checkpoint(name, local_path=str(path))
    return factories.quantization_job(ckpt, factories.builtin_recipe("Q4_K_M"), max_attempts=3)


def row(job) -> QuantizationJob:
    return QuantizationJob.objects.get(pk=job.pk)


def one_job_run(path, tmp_path, name):
    """What one job writes for the same inputs: every file, name -> sha256."""
    plan = convert.plan_conversion(path, "Q4_K_M", name=f"{name}-Q4_K_M", shard_size=django_settings.DSQ_SHARD_BYTES)
    return {f.path.name: f.sha256 for f in convert.execute(plan, tmp_path / "one-job").files}


def test_a_split_job_waits_for_its_shards_then_registers_their_files(split, tiny_checkpoint, tmp_path):
    job = make_job(tiny_checkpoint)
    assert tasks.quantize(job.pk) == JobState.WAITING
    shards = list(ShardJob.objects.filter(parent=job))
    assert len(shards) == 3 and [s.index for s in shards] == [0, 1, 2]
    assert row(job).state == JobState.WAITING and "split into 3 shard jobs" in row(job).step

    assert tasks.quantize_shard(shards[0].pk) == JobState.SUCCEEDED
    waiting = row(job)
    share = shards[0].planned_bytes / sum(s.planned_bytes for s in shards)
    assert waiting.state == JobState.WAITING and waiting.progress == pytest.approx(share)
    assert "1 written, 0 running, 2 queued" in waiting.step

    for s in shards[1:]:
        assert tasks.quantize_shard(s.pk) == JobState.SUCCEEDED
    assert row(job).state == JobState.QUEUED and row(job).attempts == 0  # registering has its own attempts
    assert tasks.quantize(job.pk) == JobState.SUCCEEDED

    variant = Variant.objects.get(pk=row(job).variant_id)
    registered = {f.name: f.sha256 for f in variant.files.all()}
    assert registered == one_job_run(tiny_checkpoint, tmp_path, "tiny-v3")
    for f in variant.files.all():
        assert (split / variant.storage_path / f.name).stat().st_size == f.size
    assert variant.total_bytes == sum(f.size for f in variant.files.all())
    assert len(variant.plan["tensors"]) == sum(s.result["tensors"].__len__() for s in ShardJob.objects.filter(parent=job))
    assert not (split / "work" / str(job.pk)).exists()


def test_cancelling_a_split_job_cancels_its_shards_and_removes_their_files(split, tiny_checkpoint):
    job = make_job(tiny_checkpoint)
    assert tasks.quantize(job.pk) == JobState.WAITING
    first, *rest = ShardJob.objects.filter(parent=job)
    assert tasks.quantize_shard(first.pk) == JobState.SUCCEEDED
    assert (split / "work" / str(job.pk) / "files" / first.file_name).is_file()

    assert jobs.request_cancel(row(job))
    assert row(job).state == JobState.CANCELLED
    assert {s.state for s in ShardJob.objects.filter(parent=job).exclude(pk=first.pk)} == {JobState.CANCELLED}
    assert tasks.quantize_shard(rest[0].pk) == "not-claimed"  # its message still arrives: the files go then
    assert not (split / "work" / str(job.pk)).exists()
    assert not Variant.objects.exists()


def test_a_shard_that_fails_for_good_fails_its_job_naming_it(split, tiny_checkpoint, tmp_path):
    import shutil

    model = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    job = make_job(model)
    assert tasks.quantize(job.pk) == JobState.WAITING
    first, second, third = ShardJob.objects.filter(parent=job)
    assert tasks.quantize_shard(first.pk) == JobState.SUCCEEDED
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # changed under the job

    assert tasks.quantize_shard(second.pk) == JobState.FAILED
    failed = row(job)
    assert failed.state == JobState.FAILED
    assert f"shard 2/3 ({second.file_name}) failed" in failed.error and "changed since the job was split" in failed.error
    assert ShardJob.objects.get(pk=third.pk).state == JobState.CANCELLED
    assert not (split / "work" / str(job.pk)).exists() and not Variant.objects.exists()

    # retried, it splits again (the weights as they are now) and its new shards make the variant
    assert jobs.retry(row(job))
    assert tasks.quantize(job.pk) == JobState.WAITING
    for s in ShardJob.objects.filter(parent=job):
        assert s.attempts == 0
        assert tasks.quantize_shard(s.pk) == JobState.SUCCEEDED
    assert tasks.quantize(job.pk) == JobState.SUCCEEDED


def test_two_workers_share_the_shards_and_a_killed_one_reruns_only_its_shard(start_worker, slow_checkpoint, storage,
                                                                             settings, tmp_path):
    settings.DSQ_SHARD_BYTES = 4 << 20
    env = {"DSQ_SHARD_BYTES": str(settings.DSQ_SHARD_BYTES)}
    w1, w2 = start_worker("w1", env), start_worker("w2", env)
    job = make_job(slow_checkpoint, "slow-v3")
    dispatch.enqueue("quantize", job.pk)
    shards = wait_for("the job to split", lambda: list(ShardJob.objects.filter(parent=job)), 600, w1)
    assert len(shards) >= 4

    # w1's first shard, stopped and killed once some of its tensors are finished
    mine = wait_for("w1 to run a shard", lambda: ShardJob.objects.filter(
        parent=job, worker="w1", state=JobState.RUNNING).first(), 600, w1)
    tensors = storage / "work" / str(job.pk) / f"shard-{mine.index}" / "tensors"
    total = len([t for t in convert.plan_conversion(slow_checkpoint, "Q4_K_M", shard_size=settings.DSQ_SHARD_BYTES,
                                                    name="slow-v3-Q4_K_M").tensors if t.file_index == mine.index])
    kept = freeze_mid_job(w1.popen.pid, lambda: len(list(tensors.glob("*.bin"))), total)
    w1.kill()
    before = {s.pk: (s.state, s.attempts, s.worker) for s in ShardJob.objects.filter(parent=job)}

    wait_for("the killed shard's lease to expire", lambda: ("shard", mine.pk) in jobs.reap_expired() or None, 60)
    dispatch.enqueue("shard", mine.pk)
    done = wait_for("the job to finish", lambda: row(job).is_final and row(job), 600, w2)
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail

    after = {s.pk: s for s in ShardJob.objects.filter(parent=job)}
    rerun = after[mine.pk]
    assert rerun.state == JobState.SUCCEEDED and rerun.worker == "w2" and rerun.attempts == 2
    assert f"{kept} tensor(s) finished by an earlier attempt are reused" in rerun.log_tail
    for pk, (state, attempts, worker) in before.items():
        if pk != mine.pk and state == JobState.SUCCEEDED:
            assert (after[pk].attempts, after[pk].worker) == (attempts, worker)  # not run again
    assert all(s.attempts == 1 for pk, s in after.items() if pk != mine.pk)
    assert {s.worker for s in after.values()} >= {"w2"}
    registered = {f.name: f.sha256 for f in Variant.objects.get(pk=done.variant_id).files.all()}
    assert registered == one_job_run(slow_checkpoint, tmp_path, "slow-v3")
    assert 0 < kept < total
    assert not (storage / "work" / str(job.pk)).exists()
