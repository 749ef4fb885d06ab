"""Job state machine on the database: claim with a lease, heartbeat, progress, finish.

Every transition is a conditional UPDATE that must change exactly one row, so two
workers (or a worker and the reaper) can never both believe they own a job.
"""
from __future__ import annotations

import datetime as dt
import traceback
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from registry import leases
from registry.models import FINAL_STATES, BenchmarkJob, ImatrixJob, Job, JobState, QuantizationJob, ShardJob

J = TypeVar("J", bound=Job)
JOB_MODELS: dict[str, type[Job]] = {"quantize": QuantizationJob, "benchmark": BenchmarkJob, "imatrix": ImatrixJob,
                                     "shard": ShardJob}
LOG_TAIL_CHARS = 8000


def kind_of(job: Job) -> str:
    """The job's kind as in JOB_MODELS ("quantize", "benchmark", "imatrix")."""
    return next(kind for kind, model in JOB_MODELS.items() if isinstance(job, model))


class LeaseLost(Exception):
    """The job is no longer ours: cancelled, reaped or claimed by another worker."""


class Waiting(Exception):
    """Raised by a handler that handed its work to shard jobs (registry.shards.split): the job is
    WAITING for them and nothing more is recorded now."""


def backoff_seconds(attempts: int) -> int:
    """How long a failed job waits before its next attempt: 5 s, doubling per attempt, at most 10 min."""
    return min(600, 5 * 2 ** max(0, attempts - 1))


def _lease_until(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.DSQ_LEASE_SECONDS)


def claim(model: type[J], job_id: int, worker: str) -> "J | None":
    """Take a queued job for `worker`; None when it is not claimable (taken, final, backing off).

    The row lock is waited for, not skipped: a row is locked for an instant by whoever updates it
    (the sender recording its message, a cancel, another worker's claim of the same message), and a
    skipped row would cost its message; after the wait the row is judged as it is then."""
    now = timezone.now()
    with transaction.atomic():
        rows = model.objects.select_for_update().filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now), pk=job_id, state=JobState.QUEUED,
            cancel_requested=False,
        )
        job = rows.first()
        if job is None:
            return None
        changed = model.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
            state=JobState.RUNNING, worker=worker, attempts=F("attempts") + 1, started_at=now,
            heartbeat_at=now, lease_expires_at=_lease_until(now), error="",
        )
    if changed != 1:
        return None
    return model.objects.get(pk=job_id)


def heartbeat(job: Job, *, progress: "float | None" = None, step: "str | None" = None,
              eta_seconds: "float | None" = None, log: "str | None" = None) -> None:
    """Extend the lease and record progress; raises LeaseLost when the job is no longer ours.

    A database error (PostgreSQL restarting) propagates and leaves `job` as it was, so the
    caller can send the same progress and log lines again on its next beat without doubling them.
    """
    now = timezone.now()
    fields: dict = {"heartbeat_at": now, "lease_expires_at": _lease_until(now)}
    if progress is not None:
        fields["progress"] = max(0.0, min(1.0, progress))
    if step is not None:
        fields["step"] = step[:200]
    if eta_seconds is not None:
        fields["eta_seconds"] = eta_seconds
    if log:
        fields["log_tail"] = (job.log_tail + log.rstrip("\n") + "\n")[-LOG_TAIL_CHARS:]
    changed = type(job).objects.filter(pk=job.pk, state=JobState.RUNNING, worker=job.worker,
                                       cancel_requested=False).update(**fields)
    if changed != 1:
        raise LeaseLost(f"job {job.pk} is no longer owned by {job.worker}")
    leases.renew(kind_of(job), job.pk)
    job.progress = fields.get("progress", job.progress)
    job.log_tail = fields.get("log_tail", job.log_tail)


def succeed(job: Job, **fields) -> None:
    _finish(job, JobState.SUCCEEDED, progress=1.0, **fields)


def fail(job: Job, exc: BaseException, *, retry: bool = True) -> str:
    """Record a failure; re-queue with backoff while attempts remain. Returns the new state."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    job.log_tail = (job.log_tail + "".join(traceback.format_exception(exc)))[-LOG_TAIL_CHARS:]
    if retry and job.attempts < job.max_attempts:
        backoff = dt.timedelta(seconds=backoff_seconds(job.attempts))
        changed = type(job).objects.filter(pk=job.pk, state=JobState.RUNNING, worker=job.worker).update(
            state=JobState.QUEUED, error=text, log_tail=job.log_tail, worker="", lease_expires_at=None,
            not_before=timezone.now() + backoff,
        )
        if changed == 1:
            return JobState.QUEUED
    _finish(job, JobState.FAILED, error=text, log_tail=job.log_tail)
    return JobState.FAILED


def cancelled(job: Job) -> None:
    """The worker stopped because cancellation was asked for."""
    type(job).objects.filter(pk=job.pk, state=JobState.RUNNING).update(
        state=JobState.CANCELLED, finished_at=timezone.now(), lease_expires_at=None)


def _finish(job: Job, state: str, **fields) -> None:
    changed = type(job).objects.filter(pk=job.pk, state=JobState.RUNNING, worker=job.worker).update(
        state=state, finished_at=timezone.now(), lease_expires_at=None, **fields)
    if changed != 1:
        raise LeaseLost(f"job {job.pk} could not be finished as {state}: no longer owned by {job.worker}")


def request_cancel(job: Job) -> bool:
    """Ask a job to stop. A queued (or waiting) job is cancelled at once; a running one stops at its next
    check. A split quantization's shards are cancelled with it."""
    model = type(job)
    now = timezone.now()
    with transaction.atomic():
        if model.objects.filter(pk=job.pk, state__in=[JobState.QUEUED, JobState.WAITING]).update(
                state=JobState.CANCELLED, cancel_requested=True, finished_at=now) == 1:
            asked = True
        else:
            asked = model.objects.filter(pk=job.pk, state=JobState.RUNNING).update(cancel_requested=True) == 1
        if asked and isinstance(job, QuantizationJob):
            ShardJob.objects.filter(parent=job, state=JobState.QUEUED).update(
                state=JobState.CANCELLED, cancel_requested=True, finished_at=now)
            ShardJob.objects.filter(parent=job, state=JobState.RUNNING).update(cancel_requested=True)
    return asked


def retry(job: Job) -> bool:
    """Put a failed or cancelled job back in the queue with a fresh attempt budget."""
    return type(job).objects.filter(pk=job.pk, state__in=[JobState.FAILED, JobState.CANCELLED]).update(
        state=JobState.QUEUED, cancel_requested=False, attempts=0, error="", not_before=None,
        finished_at=None, progress=0.0, step="", worker="") == 1


def is_cancel_requested(job: Job) -> bool:
    return type(job).objects.filter(pk=job.pk, cancel_requested=True).exists()


def reap_expired(now: "dt.datetime | None" = None) -> list[tuple[str, int]]:
    """Re-queue running jobs whose lease expired (their worker died); fail those out of attempts."""
    now = now or timezone.now()
    requeued = []
    for kind, model in JOB_MODELS.items():
        expired = model.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=now)
        for job in expired:
            if job.attempts < job.max_attempts:
                changed = model.objects.filter(pk=job.pk, state=JobState.RUNNING,
                                               lease_expires_at__lt=now).update(
                    state=JobState.QUEUED, worker="", lease_expires_at=None,
                    error=f"lease expired on {job.worker}; re-queued")
                if changed == 1:
                    requeued.append((kind, job.pk))
            else:
                model.objects.filter(pk=job.pk, state=JobState.RUNNING, lease_expires_at__lt=now).update(
                    state=JobState.FAILED, finished_at=now, lease_expires_at=None,
                    error=f"lease expired on {job.worker} after {job.attempts} attempts")
    return requeued


def mark_enqueued(model: type[Job], job_id: int, countdown: float = 0) -> None:
    """Record that a trigger message for a queued job was sent (due `countdown` seconds from now)."""
    model.objects.filter(pk=job_id, state=JobState.QUEUED).update(
        enqueued_at=timezone.now() + dt.timedelta(seconds=countdown))


def unclaimed(now: "dt.datetime | None" = None) -> list[tuple[str, int]]:
    """Queued jobs whose trigger message is overdue by DSQ_REQUEUE_SECONDS: most likely lost.

    A message is lost when the broker was down at enqueue time (enqueued_at never set) or when
    Redis restarted before a worker took it (Redis keeps no data across restarts here). The row
    is the truth, so the reaper sends another message; claims are conditional, so a duplicate of
    a message that was merely slow only makes a worker answer "not-claimed". Jobs backing off
    (not_before in the future) are left alone: their message is sent with a countdown.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.DSQ_REQUEUE_SECONDS)
    overdue = (Q(enqueued_at__isnull=True, created_at__lt=cutoff) | Q(enqueued_at__lt=cutoff)) & (
        Q(not_before__isnull=True) | Q(not_before__lte=now))
    found = []
    for kind, model in JOB_MODELS.items():
        rows = model.objects.filter(overdue, state=JobState.QUEUED, cancel_requested=False)
        found += [(kind, pk) for pk in rows.order_by("created_at").values_list("pk", flat=True)]
    return found


__all__ = ["Waiting", "backoff_seconds", "claim", "heartbeat", "succeed", "fail", "cancelled", "request_cancel", "retry", "reap_expired",
           "is_cancel_requested", "mark_enqueued", "unclaimed", "LeaseLost", "JOB_MODELS", "FINAL_STATES"]
