"""The Celery app, wired from Django settings (CELERY_* names): queues, routes and the reaper's schedule.

Workers run `celery -A dsq worker`; the registry sends messages through registry.dispatch.
Both sides agree on task names only (below), so queued messages stay valid when code moves
and neither side imports the other. The task bodies are found in workers/tasks.py.
"""
from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dsq.settings")

from django.conf import settings  # noqa: E402  (needs the settings module named first)

# Task names: what a message carries. Never rename one; add a new name instead.
QUANTIZE = "dsq.quantize"
QUANTIZE_SHARD = "dsq.quantize_shard"  # one file of a split quantization (registry.shards)
BENCHMARK = "dsq.benchmark"
IMATRIX = "dsq.imatrix"
PUBLISH = "dsq.publish"
REAP_EXPIRED = "dsq.reap_expired"

# Queues: gpu (quantize, compute importance matrices, evaluate on one GPU), host (evaluate a variant that needs a whole host's GPUs:
# registry/placement.py), cpu (plans, imports, housekeeping), publish (Hub uploads).
QUEUES = ("gpu", "host", "cpu", "publish")
HOST_QUEUE = "host"

# Redis keys `dsq:host:<worker>` where each worker advertises its host (workers.hosts writes them,
# the fleet page and /metrics read them).
HOST_KEY_PREFIX = "dsq:host:"

app = Celery("dsq")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.conf.task_routes = {
    QUANTIZE: {"queue": "gpu"},
    QUANTIZE_SHARD: {"queue": "gpu"},
    BENCHMARK: {"queue": "gpu"},
    IMATRIX: {"queue": "gpu"},
    PUBLISH: {"queue": "publish"},
    REAP_EXPIRED: {"queue": "cpu"},
}
app.conf.beat_schedule = {
    # Expired leases and lost messages (registry.jobs.reap_expired, registry.jobs.unclaimed).
    "reap-expired-leases": {"task": REAP_EXPIRED, "schedule": float(settings.DSQ_REAP_SECONDS)},
}
app.autodiscover_tasks(["workers"], related_name="tasks")

# JSON log lines from a job task carry its job id (dsq.logging, DSQ_LOG_FORMAT=json).
from dsq.logging import tag_celery_tasks  # noqa: E402

tag_celery_tasks()
