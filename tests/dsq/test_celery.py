"""Task names map to the documented queues, and the app carries the long-job safety settings."""
from __future__ import annotations

import pytest

from dsq.celery import app
from workers import tasks


@pytest.mark.parametrize("task, name, queue", [
    (tasks.quantize, "dsq.quantize", "gpu"), (tasks.benchmark, "dsq.benchmark", "gpu"),
    (tasks.publish, "dsq.publish", "publish"), (tasks.reap_expired, "dsq.reap_expired", "cpu"),
])
def test_it_routes_each_task_to_its_queue_under_a_name_that_never_changes(task, name, queue):
    assert task.name == name  # queued messages carry the name
    route = app.amqp.router.route({}, task.name, args=(1,), kwargs={})
    assert route["queue"].name == queue


def test_long_jobs_are_acknowledged_late_one_at_a_time():
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] >= 24 * 3600
    assert tasks.quantize.acks_late and tasks.publish.acks_late
    assert app.conf.beat_schedule["reap-expired-leases"]["task"] == "dsq.reap_expired"


def test_celery_dash_a_dsq_finds_this_app():
    """What the worker command lines (`celery -A dsq worker`) load."""
    from celery.app.utils import find_app

    assert find_app("dsq") is app
