"""The job state machine on a real PostgreSQL: claims, leases, retries, cancellation."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from registry import jobs
from registry.models import JobState, QuantizationJob
from tests import factories

pytestmark = pytest.mark.django_db


def test_it_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_it_claims_a_queued_job_once():
    job = factories.quantization_job()
    first = jobs.claim(QuantizationJob, job.pk, "worker-a")
    second = jobs.claim(QuantizationJob, job.pk, "worker-b")
    assert first is not None and first.state == JobState.RUNNING and first.worker == "worker-a"
    assert first.attempts == 1 and first.lease_expires_at > timezone.now()
    assert second is None


@pytest.mark.django_db(transaction=True)
def test_it_gives_a_job_to_exactly_one_of_many_concurrent_claimers():
    job = factories.quantization_job()
    winners = []
    barrier = threading.Barrier(8)

    def contend(name):
        barrier.wait()
        try:
            if jobs.claim(QuantizationJob, job.pk, name):
                winners.append(name)
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert QuantizationJob.objects.get(pk=job.pk).attempts == 1


def test_it_refuses_a_second_live_job_for_the_same_request():
    job = factories.quantization_job(request_key="k" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        QuantizationJob.objects.create(checkpoint=job.checkpoint, recipe=job.recipe, request_key="k" * 64)


def test_heartbeat_extends_the_lease_and_records_progress():
    job = jobs.claim(QuantizationJob, factories.quantization_job().pk, "w")
    before = job.lease_expires_at
    jobs.heartbeat(job, progress=0.5, step="tensor 3/6", log="quantizing blk.1")
    job.refresh_from_db()
    assert job.progress == 0.5 and job.step == "tensor 3/6" and "blk.1" in job.log_tail
    assert job.lease_expires_at >= before


def test_a_cancelled_job_loses_its_lease_at_the_next_heartbeat():
    job = jobs.claim(QuantizationJob, factories.quantization_job().pk, "w")
    assert jobs.request_cancel(job)
    with pytest.raises(jobs.LeaseLost):
        jobs.heartbeat(job, progress=0.1)


def test_cancelling_a_queued_job_ends_it_at_once():
    job = factories.quantization_job()
    assert jobs.request_cancel(job)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert jobs.claim(QuantizationJob, job.pk, "w") is None


def test_a_failure_is_retried_with_backoff_until_attempts_run_out():
    job = factories.quantization_job(max_attempts=2)
    job = jobs.claim(QuantizationJob, job.pk, "w")
    assert jobs.fail(job, RuntimeError("disk full")) == JobState.QUEUED
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.not_before > timezone.now() and "disk full" in job.error
    assert jobs.claim(QuantizationJob, job.pk, "w") is None  # still backing off
    QuantizationJob.objects.filter(pk=job.pk).update(not_before=None)
    job = jobs.claim(QuantizationJob, job.pk, "w")
    assert job.attempts == 2
    assert jobs.fail(job, RuntimeError("disk full again")) == JobState.FAILED
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.finished_at is not None


def test_the_reaper_requeues_a_job_whose_worker_stopped_heartbeating():
    job = jobs.claim(QuantizationJob, factories.quantization_job().pk, "dead-worker")
    QuantizationJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert jobs.reap_expired() == [("quantize", job.pk)]
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.worker == "" and "lease expired" in job.error
    # the dead worker cannot finish a job it no longer owns
    stale = QuantizationJob.objects.get(pk=job.pk)
    stale.worker = "dead-worker"
    with pytest.raises(jobs.LeaseLost):
        jobs.succeed(stale)


def test_the_reaper_leaves_live_leases_alone():
    job = jobs.claim(QuantizationJob, factories.quantization_job().pk, "w")
    assert jobs.reap_expired() == []
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_retry_puts_a_failed_job_back_with_a_fresh_budget():
    job = jobs.claim(QuantizationJob, factories.quantization_job(max_attempts=1).pk, "w")
    jobs.fail(job, ValueError("bad config"))
    assert jobs.retry(job)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempts == 0 and job.error == ""


def test_the_reaper_finds_queued_jobs_whose_message_is_overdue(settings):
    settings.DSQ_REQUEUE_SECONDS = 60
    old = timezone.now() - dt.timedelta(seconds=120)
    ckpt = factories.checkpoint()

    def job(**fields):
        return factories.quantization_job(ckpt, factories.recipe(version=QuantizationJob.objects.count() + 1),
                                          created_at=old, **fields)

    never_sent, lost = job(), job(enqueued_at=old)
    fresh = job(enqueued_at=timezone.now())
    backing_off = job(enqueued_at=old, not_before=timezone.now() + dt.timedelta(seconds=30))
    running = jobs.claim(QuantizationJob, job().pk, "w")
    due = jobs.unclaimed()
    assert ("quantize", never_sent.pk) in due and ("quantize", lost.pk) in due
    assert not {("quantize", j.pk) for j in (fresh, backing_off, running)} & set(due)


def test_a_failed_heartbeat_leaves_the_job_as_it_was(monkeypatch):
    from django.db import OperationalError

    job = jobs.claim(QuantizationJob, factories.quantization_job().pk, "w")
    monkeypatch.setattr(QuantizationJob.objects, "filter", lambda **kw: (_ for _ in ()).throw(OperationalError("down")))
    with pytest.raises(OperationalError):
        jobs.heartbeat(job, progress=0.5, log="tensor 1/9")
    assert job.progress == 0.0 and job.log_tail == ""  # sent again on the next beat, not doubled


def test_a_new_job_gets_dsq_max_attempts_and_backs_off_doubling(settings):
    settings.DSQ_MAX_ATTEMPTS = 5
    assert factories.quantization_job().max_attempts == 5
    assert [jobs.backoff_seconds(n) for n in (1, 2, 3, 9, 10)] == [5, 10, 20, 600, 600]


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_out_a_short_row_lock_instead_of_losing_the_message():
    # The sender records its message (dispatch.enqueue: UPDATE … enqueued_at) just after sending it;
    # a worker that gets the message in that instant finds the row locked. Skipping the row would
    # answer "not claimable" and drop the message: a split job's shard once waited for the reaper so.
    job = factories.quantization_job()
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        with transaction.atomic():
            QuantizationJob.objects.select_for_update().get(pk=job.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()
    claimed = jobs.claim(QuantizationJob, job.pk, "worker-a")
    holder.join()
    assert claimed is not None and claimed.state == JobState.RUNNING and claimed.worker == "worker-a"
