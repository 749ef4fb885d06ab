"""Releases: anyone logged in proposes; approvers decide, never on their own request."""
from __future__ import annotations

import pytest

from registry.models import AuditLog, Release, Tag, Variant
from tests import factories
from tests.registry.personas import client_for, make_approver

pytestmark = pytest.mark.django_db


@pytest.fixture
def variant():
    """A DQ3_K_M measured against its F16 reference, within the default release policy."""
    return factories.reference_and_candidate(factories.checkpoint("deepseek-r1"))[1]


@pytest.fixture
def candidate(requester, variant):
    return factories.release(variant, by=requester.user, notes="first DQ3")


def test_it_creates_a_candidate_with_the_next_version(requester, variant):
    first = requester.post("/api/releases/", {"variant": variant.pk, "notes": "v1"}, format="json")
    second = requester.post("/api/releases/", {"variant": variant.pk}, format="json")
    assert first.status_code == second.status_code == 201
    assert (first.json()["label"], second.json()["label"]) == ("v1", "v2")
    assert first.json()["state"] == "candidate" and first.json()["requested_by"] == "rita"


def test_it_refuses_a_release_of_an_unfinished_variant(requester, variant):
    Variant.objects.filter(pk=variant.pk).update(status=Variant.Status.BUILDING)
    response = requester.post("/api/releases/", {"variant": variant.pk}, format="json")
    assert response.status_code == 400 and "only ready variants" in response.json()["error"]


def test_anonymous_cannot_propose(anonymous, variant):
    assert anonymous.post("/api/releases/", {"variant": variant.pk}, format="json").status_code == 401


def test_an_approver_approves_and_the_release_gets_its_tags(approver, candidate):
    response = approver.post(f"/api/releases/{candidate.pk}/approve/", {"reason": "KLD fine"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["state"], body["decided_by"], body["decision_reason"]) == ("approved", "alice", "KLD fine")
    tags = {t.name: t for t in Tag.objects.filter(release=candidate)}
    assert tags["v1"].kind == Tag.Kind.VERSION and tags["latest"].kind == Tag.Kind.CHANNEL
    assert AuditLog.objects.filter(action="release.approve", object_id=str(candidate.pk), actor="alice").exists()


def test_the_requester_cannot_approve_their_own_release_even_as_approver(variant):
    boss = make_approver("bob")
    release = factories.release(variant, by=boss)
    response = client_for(boss).post(f"/api/releases/{release.pk}/approve/", {}, format="json")
    assert response.status_code == 403 and "requester" in response.json()["error"]
    assert Release.objects.get(pk=release.pk).state == Release.State.CANDIDATE


def test_admins_cannot_approve_their_own_release_either(admin, variant):
    release = factories.release(variant, by=admin.user)
    assert admin.post(f"/api/releases/{release.pk}/approve/").status_code == 403


def test_an_admin_approves_someone_elses_release(admin, candidate):
    assert admin.post(f"/api/releases/{candidate.pk}/approve/").json()["state"] == "approved"


def test_non_approvers_cannot_decide(requester, teammate, anonymous, candidate):
    assert requester.post(f"/api/releases/{candidate.pk}/approve/").status_code == 403
    assert teammate.post(f"/api/releases/{candidate.pk}/reject/", {"reason": "no"}).status_code == 403
    assert anonymous.post(f"/api/releases/{candidate.pk}/approve/").status_code == 401


def test_rejecting_needs_a_reason(approver, candidate):
    response = approver.post(f"/api/releases/{candidate.pk}/reject/", {"reason": " "}, format="json")
    assert response.status_code == 400 and "why" in response.json()["error"]
    response = approver.post(f"/api/releases/{candidate.pk}/reject/", {"reason": "PPL +8%"}, format="json")
    assert response.json()["state"] == "rejected" and not Tag.objects.exists()


def test_a_decided_release_cannot_be_decided_again(approver, candidate):
    approver.post(f"/api/releases/{candidate.pk}/approve/")
    response = approver.post(f"/api/releases/{candidate.pk}/reject/", {"reason": "changed my mind"})
    assert response.status_code == 400 and "already approved" in response.json()["error"]


def test_it_lists_and_filters_releases(anonymous, candidate):
    body = anonymous.get("/api/releases/?state=candidate&variant__checkpoint__name=deepseek-r1").json()
    assert [r["id"] for r in body["results"]] == [candidate.pk]
    assert anonymous.get("/api/releases/?state=approved").json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_approval_sends_the_release_to_the_publish_queue(approver, candidate, celery_broker):
    response = approver.post(f"/api/releases/{candidate.pk}/approve/", {"reason": "ok"}, format="json")
    assert response.status_code == 200
    assert celery_broker.llen("publish") == 1


@pytest.mark.django_db(transaction=True)
def test_an_approver_can_resend_an_approved_release_to_the_hub(approver, candidate, celery_broker, settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    approver.post(f"/api/releases/{candidate.pk}/approve/", {"reason": "ok"}, format="json")
    assert celery_broker.llen("publish") == 0
    response = approver.post(f"/api/releases/{candidate.pk}/publish/", {}, format="json")
    assert response.status_code == 202 and celery_broker.llen("publish") == 1


def test_only_approved_releases_can_be_published(approver, requester, candidate):
    response = approver.post(f"/api/releases/{candidate.pk}/publish/", {}, format="json")
    assert response.status_code == 409 and "only approved releases" in response.json()["error"]
    assert requester.post(f"/api/releases/{candidate.pk}/publish/", {}, format="json").status_code == 403


def test_open_candidates_per_user_are_capped(requester, teammate, approver, variant, settings):
    settings.DSQ_MAX_OPEN_CANDIDATES = 3
    created = [requester.post("/api/releases/", {"variant": variant.pk}, format="json") for _ in range(4)]
    assert [r.status_code for r in created] == [201, 201, 201, 400]
    assert "DSQ_MAX_OPEN_CANDIDATES=3" in created[-1].json()["error"]
    assert Release.objects.filter(requested_by=requester.user).count() == 3
    # The cap is per user, and a decision frees a slot.
    assert teammate.post("/api/releases/", {"variant": variant.pk}, format="json").status_code == 201
    approver.post(f"/api/releases/{created[0].json()['id']}/reject/", {"reason": "no"}, format="json")
    assert requester.post("/api/releases/", {"variant": variant.pk}, format="json").status_code == 201


def test_release_notes_are_capped(requester, variant, settings):
    settings.DSQ_MAX_TEXT_CHARS = 1000
    response = requester.post("/api/releases/", {"variant": variant.pk, "notes": "x" * 1001}, format="json")
    assert response.status_code == 400
    assert "notes is 1001 characters long, over the limit of 1000 (DSQ_MAX_TEXT_CHARS)" in response.json()["error"]
    assert not Release.objects.exists()
    ok = requester.post("/api/releases/", {"variant": variant.pk, "notes": "x" * 1000}, format="json")
    assert ok.status_code == 201


def test_the_default_caps_refuse_a_megabyte_of_notes(requester, variant):
    response = requester.post("/api/releases/", {"variant": variant.pk, "notes": "x" * 1_000_000}, format="json")
    assert response.status_code == 400 and "DSQ_MAX_TEXT_CHARS" in response.json()["error"]


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_decision_reasons_are_capped(approver, candidate, settings, action):
    settings.DSQ_MAX_TEXT_CHARS = 100
    response = approver.post(f"/api/releases/{candidate.pk}/{action}/", {"reason": "y" * 101}, format="json")
    assert response.status_code == 400 and "reason is 101 characters long" in response.json()["error"]
    assert Release.objects.get(pk=candidate.pk).state == "candidate"


@pytest.fixture
def unmeasured(requester):
    v = factories.variant(factories.checkpoint("deepseek-v3", family="DeepSeek-V3"), factories.recipe("Q2_K"))
    return factories.release(v, by=requester.user)


def test_it_refuses_to_approve_a_candidate_without_evidence_as_json(approver, unmeasured):
    response = approver.post(f"/api/releases/{unmeasured.pk}/approve/", {"reason": "ship it"}, format="json")
    assert response.status_code == 409 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == 409 and "fails its release policy" in body["error"]
    assert "no results of the 'quality' suite, which the policy requires" in body["error"]
    assert body["verdict"]["passed"] is False
    assert {c["name"] for c in body["verdict"]["checks"] if not c["passed"]} == {"suite:quality", "ppl_ratio",
                                                                                 "kld_mean"}
    assert Release.objects.get(pk=unmeasured.pk).state == Release.State.CANDIDATE


def test_an_override_with_a_justification_approves_and_shows_on_the_release(approver, anonymous, unmeasured):
    response = approver.post(f"/api/releases/{unmeasured.pk}/approve/",
                             {"reason": "ok", "override": "measured by hand on the staging host"}, format="json")
    assert response.status_code == 200, response.json()
    shown = anonymous.get(f"/api/releases/{unmeasured.pk}/").json()
    assert shown["policy_override"] == "measured by hand on the staging host"
    assert shown["policy_verdict"]["passed"] is False
    assert AuditLog.objects.filter(action="release.policy_override", actor="alice").exists()


def test_the_evidence_shows_the_drop_against_the_reference_and_the_verdict(anonymous, candidate):
    body = anonymous.get(f"/api/releases/{candidate.pk}/evidence/").json()
    drop = body["drop"]
    assert drop["baseline"] is False and drop["reference"].startswith("F16 #")
    t = drop["tier1"]
    assert (t["ppl"], t["ppl_uncertainty"], t["reference_ppl"]) == (5.4, 0.12, 5.1)
    assert t["ppl_ratio"] == pytest.approx(5.4 / 5.1) and (t["kld_mean"], t["kld_p99"], t["top1_percent"]) == (
        0.05, 0.42, 91.0)
    assert body["verdict"]["passed"] is True and body["verdict_when"] == "now"
    assert [s["quant"] for s in body["siblings"]] == ["F16", "DQ3_K_M"]
    assert [s["is_this"] for s in body["siblings"]] == [False, True]
