"""Task names map to the documented queues, and the app carries the long-job safety settings."""
from __future__ import annotations

import pytest

from workers import tasks
from workers.celery_app import app


@pytest.mark.parametrize("task, queue", [
    (tasks.quantize, "gpu"), (tasks.benchmark, "gpu"), (tasks.publish, "publish"), (tasks.reap_expired, "cpu"),
])
def test_it_routes_each_task_to_its_queue(task, queue):
    route = app.amqp.router.route({}, task.name, args=(1,), kwargs={})
    assert route["queue"].name == queue


def test_long_jobs_are_acknowledged_late_one_at_a_time():
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] >= 24 * 3600
    assert tasks.quantize.acks_late and tasks.publish.acks_late
    assert app.conf.beat_schedule["reap-expired-leases"]["task"] == "dsq.reap_expired"
