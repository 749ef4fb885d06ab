"""Approval that publishes: the message waits for the commit, follows DSQ_PUBLISH_ON_APPROVAL, and a refused
approval sends nothing."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from registry import publishing
from registry.models import Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate():
    _, variant = factories.reference_and_candidate(factories.checkpoint("deepseek-r1"))
    return factories.release(variant, by=User.objects.create_user("rita"))


@pytest.mark.parametrize("on_approval, sent", [(True, 1), (False, 0)])
def test_it_approves_and_sends_the_release_after_commit(candidate, celery_broker, settings,
                                                        django_capture_on_commit_callbacks, on_approval, sent):
    settings.DSQ_PUBLISH_ON_APPROVAL = on_approval
    with django_capture_on_commit_callbacks(execute=True):
        publishing.approve(candidate, make_approver("alice"), "looks right")
        assert celery_broker.llen("publish") == 0  # not before the commit
    assert candidate.state == Release.State.APPROVED and celery_broker.llen("publish") == sent


def test_a_refused_approval_sends_nothing(candidate, celery_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(PermissionDenied):
        publishing.approve(candidate, candidate.requested_by)
    assert callbacks == [] and celery_broker.llen("publish") == 0


def test_unpublished_lists_approved_releases_older_than_the_cutoff(candidate):
    candidate.approve(make_approver("alice"))
    assert publishing.unpublished(60) == []
    Release.objects.filter(pk=candidate.pk).update(decided_at=timezone.now() - dt.timedelta(minutes=5))
    assert publishing.unpublished(60) == [candidate.pk]
