"""Getting approved releases onto the Hub: approval that publishes, the explicit re-send, what is overdue.

The upload itself is the worker's (workers.publish); the registry only sends the message,
through registry.dispatch, once the approval has committed. Publishing is idempotent, so
sending a release twice is safe.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry import dispatch
from registry.models import Release


def approve(release: Release, user, reason: str = "") -> None:
    """Approve a candidate (Release.approve) and, with DSQ_PUBLISH_ON_APPROVAL, send it to the Hub after commit."""
    with transaction.atomic():
        release.approve(user, reason)
        if settings.DSQ_PUBLISH_ON_APPROVAL:
            dispatch.publish_on_commit(release.pk)


def publish(release: Release) -> None:
    """Send an approved (or published) release to the Hub again, after commit."""
    dispatch.publish_on_commit(release.pk)


def unpublished(older_than_seconds: float) -> list[int]:
    """Approved releases still not on the Hub a while after their approval (a lost or failed publish)."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return list(Release.objects.filter(state=Release.State.APPROVED, decided_at__lt=cutoff)
                .values_list("pk", flat=True))
