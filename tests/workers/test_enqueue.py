"""Sending a job's trigger message: a broker that is down never fails the caller; the row remembers."""
from __future__ import annotations

import pytest

from registry.models import QuantizationJob
from tests import factories
from workers import runner, tasks

pytestmark = pytest.mark.django_db


def test_enqueue_with_the_broker_down_returns_false_and_leaves_the_job_queued(monkeypatch):
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.quantize, "apply_async", refuse)
    job = factories.quantization_job()
    assert runner.enqueue("quantize", job.pk) is False
    assert QuantizationJob.objects.get(pk=job.pk).enqueued_at is None  # the reaper sends it later


def test_enqueue_records_when_the_message_falls_due(monkeypatch):
    monkeypatch.setattr(tasks.quantize, "apply_async", lambda *a, **k: None)
    job = factories.quantization_job()
    assert runner.enqueue("quantize", job.pk, countdown=30) is True
    row = QuantizationJob.objects.get(pk=job.pk)
    assert (row.enqueued_at - row.created_at).total_seconds() > 29
