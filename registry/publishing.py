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

from registry import dispatch, release_policy
from registry.models import Release


def approve(release: Release, user, reason: str = "", override: str = "") -> release_policy.Verdict:
    """Approve a candidate that satisfies its release policy (Release.approve) and, with
    DSQ_PUBLISH_ON_APPROVAL, send it to the Hub after commit.

    A candidate lacking the evidence its policy requires, or over one of its limits, is refused
    (release_policy.PolicyRefusal, with every failed line) unless the approver writes a justification in
    `override`: then it is approved, and the justification is stored on the release and audited. Who may
    decide is checked first, so the requester is refused as such whatever the evidence.
    """
    release.check_decider(user)
    verdict = release_policy.evaluate(release.variant)
    override = override.strip()
    if not verdict.passed and not override:
        raise release_policy.PolicyRefusal(release, verdict)
    with transaction.atomic():
        release.approve(user, reason, verdict=verdict.to_json(), override="" if verdict.passed else override)
        if settings.DSQ_PUBLISH_ON_APPROVAL:
            dispatch.publish_on_commit(release.pk)
    return verdict


def publish(release: Release) -> None:
    """Send an approved (or published) release to the Hub again, after commit."""
    dispatch.publish_on_commit(release.pk)


def unpublished(older_than_seconds: float) -> list[int]:
    """Approved releases still not on the Hub a while after their approval (a lost or failed publish)."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return list(Release.objects.filter(state=Release.State.APPROVED, decided_at__lt=cutoff)
                .values_list("pk", flat=True))
