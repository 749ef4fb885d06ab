"""Sending trigger messages: a broker that is down never fails the caller; the row remembers,
and the reaper sends what was lost (jobs and approved releases not yet on the Hub)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from dsq.localservices import free_port
from registry.models import QuantizationJob, Release
from tests import factories
from tests.conftest import point_celery_at
from workers import runner

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
    assert runner.enqueue("quantize", job.pk) is False
    assert QuantizationJob.objects.get(pk=job.pk).enqueued_at is None  # the reaper sends it later


def test_enqueue_records_when_the_message_falls_due(celery_broker):
    job = factories.quantization_job()
    assert runner.enqueue("quantize", job.pk, countdown=30) is True
    row = QuantizationJob.objects.get(pk=job.pk)
    assert (row.enqueued_at - row.created_at).total_seconds() > 29
    assert celery_broker.llen("gpu") == 1  # delivered now, held by the worker until it falls due


def test_the_reaper_resends_approved_releases_that_never_reached_the_hub(celery_broker, settings, make_release):
    settings.DSQ_REQUEUE_SECONDS = 60
    ckpt = factories.checkpoint("deepseek-r1")
    stuck = make_release("DQ3_K_M", checkpoint=ckpt)
    Release.objects.filter(pk=stuck.pk).update(decided_at=timezone.now() - dt.timedelta(minutes=5))
    fresh = make_release("Q4_K_M", checkpoint=ckpt)
    Release.objects.filter(pk=fresh.pk).update(decided_at=timezone.now())
    done = make_release("Q2_K", checkpoint=ckpt)
    Release.objects.filter(pk=done.pk).update(state=Release.State.PUBLISHED,
                                              decided_at=timezone.now() - dt.timedelta(hours=1))
    assert runner.reap_and_requeue() == 1
    assert celery_broker.llen("publish") == 1
