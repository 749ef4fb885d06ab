"""The reaper (Celery beat, every DSQ_REAP_SECONDS): jobs whose worker died, messages that were lost.

The rows are the truth: a running job whose lease expired is queued again (registry.jobs), a split
quantization whose shards all ended is moved on (registry.shards),
a queued job whose message is overdue gets another one, and an approved release still not
on the Hub is sent again (publishing is idempotent). Claims are conditional, so a duplicate
message only makes a worker answer "not-claimed".
"""
from __future__ import annotations

from django.conf import settings

from registry import dispatch, jobs, publishing, shards
from workers.quantize import settle_parent


def reap_and_requeue() -> int:
    """Re-queue jobs whose worker died and re-send messages that were lost; returns how many were sent."""
    due = dict.fromkeys(jobs.reap_expired() + jobs.unclaimed())  # a reaped job is also overdue: send once
    sent = sum(dispatch.enqueue(kind, job_id) for kind, job_id in due)
    for parent_id in shards.waiting_parents():  # its last shard's worker died before moving it on
        settle_parent(parent_id)
    if settings.DSQ_PUBLISH_ON_APPROVAL:
        sent += sum(dispatch.publish(pk) for pk in publishing.unpublished(settings.DSQ_REQUEUE_SECONDS))
    return sent
