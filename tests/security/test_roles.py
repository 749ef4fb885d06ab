"""Who may request, approve, publish and move channels, as one table per action.

Already proven elsewhere (not repeated here): the requester cannot approve their own release,
even as an approver or admin (tests/registry/api/test_releases.py::
test_the_requester_cannot_approve_their_own_release_even_as_approver and
test_admins_cannot_approve_their_own_release_either); only approvers move channels
(tests/registry/api/test_tags.py::test_only_approvers_move_channels).
"""
from __future__ import annotations

import pytest

from registry.models import QuantizationJob, Release, Tag
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate(requester, released):
    return factories.release(released.variant, by=requester.user)


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("requester", 201), ("teammate", 201),
                                              ("approver", 201), ("admin", 201)])
def test_anyone_logged_in_may_request_a_release(request, released, persona, expected):
    client = request.getfixturevalue(persona)
    response = client.post("/api/releases/", {"variant": released.variant.pk}, format="json")
    assert response.status_code == expected
    assert Release.objects.filter(state="candidate").count() == (1 if expected == 201 else 0)


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("requester", 403), ("teammate", 403),
                                              ("approver", 200), ("admin", 200)])
def test_only_approvers_other_than_the_requester_approve(request, candidate, persona, expected):
    client = request.getfixturevalue(persona)
    response = client.post(f"/api/releases/{candidate.pk}/approve/", {"reason": "ok"}, format="json")
    assert response.status_code == expected
    state = Release.objects.get(pk=candidate.pk).state
    assert state == ("approved" if expected == 200 else "candidate")


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("requester", 403), ("teammate", 403),
                                              ("approver", 202), ("admin", 202)])
def test_only_approvers_publish(request, released, celery_broker, persona, expected):
    client = request.getfixturevalue(persona)
    response = client.post(f"/api/releases/{released.pk}/publish/", {}, format="json")
    assert response.status_code == expected
    assert celery_broker.llen("publish") == 0  # sent only once the transaction commits


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("requester", 403), ("teammate", 403),
                                              ("approver", 201), ("admin", 201)])
def test_only_approvers_create_channels(request, released, persona, expected):
    client = request.getfixturevalue(persona)
    response = client.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": "stable",
                                          "release": released.pk}, format="json")
    assert response.status_code == expected
    assert Tag.objects.filter(name="stable").exists() == (expected == 201)


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("teammate", 403), ("requester", 200),
                                              ("approver", 200)])
def test_only_the_jobs_requester_or_an_approver_cancels_it(request, requester, persona, expected):
    job = factories.quantization_job(requested_by=requester.user)
    client = request.getfixturevalue(persona)
    response = client.post(f"/api/jobs/quantize/{job.pk}/cancel/", {}, format="json")
    assert response.status_code == expected
    assert QuantizationJob.objects.get(pk=job.pk).cancel_requested == (expected == 200)


def test_a_deactivated_approver_loses_the_role(approver, candidate):
    approver.user.is_active = False
    approver.user.save()
    response = approver.post(f"/api/releases/{candidate.pk}/approve/", {}, format="json")
    assert response.status_code in (401, 403)
    assert Release.objects.get(pk=candidate.pk).state == "candidate"
