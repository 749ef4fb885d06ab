"""The reaper sends again what was lost: jobs whose worker died or whose message vanished, and approved
releases not yet on the Hub."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry.models import QuantizationJob, Release
from tests import factories
from workers import reaper

pytestmark = pytest.mark.django_db


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
    assert reaper.reap_and_requeue() == 1
    assert celery_broker.llen("publish") == 1


def test_the_reaper_resends_a_queued_job_whose_message_was_lost_and_requeues_an_expired_lease(celery_broker,
                                                                                             settings):
    settings.DSQ_REQUEUE_SECONDS = 60
    long_ago = timezone.now() - dt.timedelta(minutes=5)
    ckpt = factories.checkpoint()
    lost = factories.quantization_job(ckpt, factories.recipe("Q4_K_M"), created_at=long_ago)
    dead = factories.quantization_job(ckpt, factories.recipe("Q2_K"), state="running", worker="gone", attempts=1,
                                      lease_expires_at=long_ago)
    factories.quantization_job(ckpt, factories.recipe("Q8_0"))  # queued just now: its message is not overdue

    assert reaper.reap_and_requeue() == 2
    assert celery_broker.llen("gpu") == 2
    assert {j.state for j in QuantizationJob.objects.filter(pk__in=[lost.pk, dead.pk])} == {"queued"}
