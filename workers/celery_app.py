"""The Celery app, configured from Django settings (CELERY_* names)."""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dsq.settings")

from django.conf import settings  # noqa: E402  (needs the settings module named first)

# Queues: gpu (quantize, evaluate), cpu (plans, imports, housekeeping), publish (Hub uploads).
QUEUES = ("gpu", "cpu", "publish")

app = Celery("dsq")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.conf.task_routes = {
    "dsq.quantize": {"queue": "gpu"},
    "dsq.benchmark": {"queue": "gpu"},
    "dsq.publish": {"queue": "publish"},
    "dsq.reap_expired": {"queue": "cpu"},
}
app.conf.beat_schedule = {
    # Expired leases and lost messages (registry.jobs.reap_expired, registry.jobs.unclaimed).
    "reap-expired-leases": {"task": "dsq.reap_expired", "schedule": float(settings.DSQ_REAP_SECONDS)},
}
app.autodiscover_tasks(["workers"], related_name="tasks")


@worker_ready.connect
def _advertise_host(sender=None, **_) -> None:
    """Keep this host's capabilities (GPU memory, free disk) visible in Redis while it runs."""
    from workers import hosts, runner

    try:
        queues = sorted(sender.app.amqp.queues.consume_from)
    except AttributeError:
        queues = []
    hosts.start_advertising(runner.worker_name(), queues)
