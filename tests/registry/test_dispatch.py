"""The registry's door to the queue: a broker that is down never fails the caller, the row remembers
(the reaper, tests/workers/test_reaper.py, sends what was lost), and messages go out after commit."""
from __future__ import annotations

import pytest

from dsq.localservices import free_port
from registry.models import QuantizationJob
from tests import factories
from tests.conftest import point_celery_at
from registry import dispatch

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down():
    """The producer pointed at a loopback port nobody listens on: a real refused connection."""
    original = point_celery_at(f"redis://127.0.0.1:{free_port()}/0")
    try:
        yield
    finally:
        point_celery_at(original)


def test_enqueue_with_the_broker_down_returns_false_and_leaves_the_job_queued(broker_down):
    job = factories.quantization_job()
    assert dispatch.enqueue("quantize", job.pk) is False
    assert QuantizationJob.objects.get(pk=job.pk).enqueued_at is None  # the reaper sends it later


def test_enqueue_records_when_the_message_falls_due(celery_broker):
    job = factories.quantization_job()
    assert dispatch.enqueue("quantize", job.pk, countdown=30) is True
    row = QuantizationJob.objects.get(pk=job.pk)
    assert (row.enqueued_at - row.created_at).total_seconds() > 29
    assert celery_broker.llen("gpu") == 1  # delivered now, held by the worker until it falls due


def test_publish_with_the_broker_down_returns_false(broker_down):
    assert dispatch.publish(1) is False


def test_messages_wait_for_the_commit(celery_broker, django_capture_on_commit_callbacks):
    job = factories.quantization_job()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        dispatch.enqueue_on_commit("quantize", job.pk)
        dispatch.publish_on_commit(7)
    assert celery_broker.llen("gpu") == celery_broker.llen("publish") == 0 and len(callbacks) == 2
    for send in callbacks:
        send()
    assert celery_broker.llen("gpu") == celery_broker.llen("publish") == 1


def test_messages_name_their_task_and_carry_only_the_id(celery_broker):
    import json

    job = factories.quantization_job()
    dispatch.enqueue("quantize", job.pk)
    message = json.loads(celery_broker.lpop("gpu"))
    assert message["headers"]["task"] == "dsq.quantize" and message["headers"]["argsrepr"] == f"[{job.pk}]"
