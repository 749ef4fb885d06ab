"""The one door to the queue: every Celery message is sent here, by task name.

The row is the truth and a message only a trigger. A message that cannot be sent (the broker
is down) loses nothing: the job stays queued, or the release approved, and the reaper
(workers.reaper) sends it again, so an API request succeeds even while Redis is down.
The `*_on_commit` forms send once the surrounding transaction commits, never before the row
a worker will look for exists.
"""
from __future__ import annotations

import logging

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

from dsq.celery import BENCHMARK, HOST_QUEUE, IMATRIX, PUBLISH, QUANTIZE, QUANTIZE_SHARD, app
from registry import jobs

log = logging.getLogger(__name__)

TASK_OF_KIND = {"quantize": QUANTIZE, "benchmark": BENCHMARK, "imatrix": IMATRIX, "shard": QUANTIZE_SHARD}


def _send(name: str, object_id: int, countdown: float = 0, queue: "str | None" = None) -> bool:
    try:
        app.send_task(name, args=[object_id], countdown=countdown or None, queue=queue)
    except (BrokerError, OSError) as exc:
        log.warning("%s %s: message not sent, the reaper will send it again: %s", name, object_id, exc)
        return False
    return True


def enqueue(kind: str, job_id: int, countdown: float = 0) -> bool:
    """Send the trigger of a committed queued job (`kind` as in registry.jobs.JOB_MODELS); False if not sent.

    A job whose row says `host` (registry.placement) goes to the host workers' queue; the others follow
    the task's route (dsq.celery)."""
    row_queue = jobs.JOB_MODELS[kind].objects.filter(pk=job_id).values_list("queue", flat=True).first()
    if not _send(TASK_OF_KIND[kind], job_id, countdown, queue=HOST_QUEUE if row_queue == HOST_QUEUE else None):
        return False
    jobs.mark_enqueued(jobs.JOB_MODELS[kind], job_id, countdown)
    return True


def enqueue_on_commit(kind: str, job_id: int) -> None:
    transaction.on_commit(lambda: enqueue(kind, job_id))


def publish(release_id: int) -> bool:
    """Send an approved release to the publish queue; False if not sent (the reaper re-sends it)."""
    return _send(PUBLISH, release_id)


def publish_on_commit(release_id: int) -> None:
    transaction.on_commit(lambda: publish(release_id))
