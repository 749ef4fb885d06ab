"""A split quantization: one shard job per GGUF split file, any worker on any host making one.

A Celery chord kept in the database, so that the rows stay the truth: the parent QuantizationJob
plans the variant and `split`s it: in one transaction it goes from running to WAITING and one
queued ShardJob per split file is created, each then sent to the queue. A worker that claims a
shard writes that file alone (workers/quantize.py run_shard), resuming from its own finished
tensors if an earlier worker died. `settle`, called after every shard run and by the reaper,
moves the parent on once its shards are final: all succeeded, it is queued again to register
the files; one failed for good, it fails and the other shards are cancelled. `roll_up` writes
the shards' progress and ETA on the parent, so the API and the job page show one job.
"""
from __future__ import annotations

import hashlib

from django.db import transaction
from django.utils import timezone

from registry import dispatch, jobs
from registry.models import FINAL_STATES, JobState, QuantizationJob, ShardJob


def split(parent: QuantizationJob, files: "list[tuple[str, int]]", plan_key: str) -> list[ShardJob]:
    """Turn the running parent (ours) into a waiting one with a queued shard per (file name, bytes).

    Shards of an earlier split (a retried job) are replaced: their files went when it failed."""
    n = len(files)
    with transaction.atomic():
        changed = QuantizationJob.objects.filter(
            pk=parent.pk, state=JobState.RUNNING, worker=parent.worker, cancel_requested=False).update(
            state=JobState.WAITING, lease_expires_at=None, progress=0.0, eta_seconds=None,
            step=f"split into {n} shard jobs")
        if changed != 1:
            raise jobs.LeaseLost(f"job {parent.pk} is no longer owned by {parent.worker}")
        ShardJob.objects.filter(parent=parent).delete()
        shards = ShardJob.objects.bulk_create([
            ShardJob(parent=parent, index=i, count=n, file_name=name, planned_bytes=size, plan_key=plan_key,
                     queue=parent.queue, max_attempts=parent.max_attempts, requested_by=parent.requested_by,
                     request_key=hashlib.sha256(f"{parent.request_key}:{plan_key}:{i}".encode()).hexdigest())
            for i, (name, size) in enumerate(files)])
        # Largest first: workers that take the small ones last finish together (longest processing time first).
        for shard in sorted(shards, key=lambda s: -s.planned_bytes):
            dispatch.enqueue_on_commit("shard", shard.pk)
    return shards


def roll_up(parent_id: int) -> None:
    """Write the shards' progress (weighted by their bytes), counts and ETA on the waiting parent.

    The ETA extrapolates the rate since the first shard started over the bytes left, so shards
    still queued for want of a free worker are counted."""
    rows = list(ShardJob.objects.filter(parent_id=parent_id).values_list(
        "state", "progress", "planned_bytes", "started_at"))
    if not rows:
        return
    total = sum(r[2] for r in rows) or 1
    done = sum(r[2] * (1.0 if r[0] == JobState.SUCCEEDED else r[1]) for r in rows)
    fraction = done / total
    started = [r[3] for r in rows if r[3] is not None]
    eta = None
    if started and 0 < fraction < 1:
        elapsed = (timezone.now() - min(started)).total_seconds()
        eta = elapsed * (1 - fraction) / fraction
    count = {state: sum(r[0] == state for r in rows) for state in JobState.values}
    step = (f"{len(rows)} shard jobs: {count[JobState.SUCCEEDED]} written, {count[JobState.RUNNING]} running, "
            f"{count[JobState.QUEUED]} queued")
    QuantizationJob.objects.filter(pk=parent_id, state=JobState.WAITING).update(
        progress=fraction, step=step, eta_seconds=eta)


def settle(parent_id: int) -> "str | None":
    """Move a waiting parent on once its shards are final; returns the parent's state (None: no such job).

    All succeeded: queued again to register the files, with a fresh attempt budget (its attempts
    counted the planning). One failed or was cancelled for good: the parent fails, naming it, and
    the other shards are cancelled."""
    roll_up(parent_id)
    with transaction.atomic():
        parent = QuantizationJob.objects.select_for_update().filter(pk=parent_id).first()
        if parent is None or parent.state != JobState.WAITING:
            return parent.state if parent is not None else None
        shards = list(ShardJob.objects.filter(parent_id=parent_id))
        if shards and all(s.state == JobState.SUCCEEDED for s in shards):
            QuantizationJob.objects.filter(pk=parent_id, state=JobState.WAITING).update(
                state=JobState.QUEUED, attempts=0, not_before=None, progress=1.0, eta_seconds=None,
                step=f"all {len(shards)} shard files written: registering")
            dispatch.enqueue_on_commit("quantize", parent_id)
            return JobState.QUEUED
        lost = [s for s in shards if s.state in (JobState.FAILED, JobState.CANCELLED)]
        if not lost:
            return JobState.WAITING
        s = lost[0]
        why = s.error.strip().splitlines()[-1] if s.error.strip() else s.state
        QuantizationJob.objects.filter(pk=parent_id, state=JobState.WAITING).update(
            state=JobState.FAILED, finished_at=timezone.now(),
            error=f"shard {s.index + 1}/{s.count} ({s.file_name}) {s.state}: {why}"[:2000])
        ShardJob.objects.filter(parent_id=parent_id, state=JobState.QUEUED).update(
            state=JobState.CANCELLED, cancel_requested=True, finished_at=timezone.now())
        ShardJob.objects.filter(parent_id=parent_id, state=JobState.RUNNING).update(cancel_requested=True)
        return JobState.FAILED


def all_final(parent_id: int) -> bool:
    """True when no shard of the parent is queued or running (its files may be removed)."""
    return not ShardJob.objects.filter(parent_id=parent_id).exclude(state__in=FINAL_STATES).exists()


def waiting_parents() -> list[int]:
    """Waiting parents whose shards are all final: a worker died between its shard and `settle`."""
    waiting = QuantizationJob.objects.filter(state=JobState.WAITING).values_list("pk", flat=True)
    return [pk for pk in waiting if all_final(pk)]
