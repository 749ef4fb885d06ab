"""The release policy as data: layers (default, family, checkpoint), the verdict line by line, and approval
that refuses a candidate lacking evidence or over a limit unless the approver writes a justification."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError

from registry import publishing, release_policy
from registry.models import AuditLog, Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


def test_it_layers_the_default_the_family_and_the_checkpoint():
    plain = release_policy.policy_for(factories.checkpoint("tiny", family="SmolLM2"))
    assert plain.required_suites == ("quality",) and plain.max_kld_mean == 0.10 and plain.max_ppl_ratio == 1.10
    assert plain.accuracy_limit("MMLU") == 3.0 and plain.accuracy_reference == "reference"
    r1 = factories.checkpoint("deepseek-r1", family="DeepSeek-R1")
    assert release_policy.policy_for(r1).accuracy_limit("AIME 2024") == 8.0
    release_policy.set_for(r1, {"max_kld_mean": 0.02}, user=make_approver("alice"))
    mine = release_policy.policy_for(r1)
    assert mine.max_kld_mean == 0.02 and mine.accuracy_limit("GPQA") == 5.0
    assert mine.source == "default + family DeepSeek-R1 + checkpoint"
    assert AuditLog.objects.filter(action="checkpoint.release_policy", object_id=str(r1.pk)).exists()


def test_it_refuses_a_policy_key_it_does_not_know():
    with pytest.raises(ValidationError, match="unknown key.*max_kld"):
        release_policy.set_for(factories.checkpoint(), {"max_kld": 0.1})
    with pytest.raises(ValidationError, match="accuracy_reference"):
        release_policy.set_for(factories.checkpoint("other"), {"accuracy_reference": "vibes"})


def test_large_models_need_the_task_suites_too():
    r1 = factories.deepseek_checkpoint()  # 671B: the study's task suite is required
    _, v = factories.reference_and_candidate(r1)
    verdict = release_policy.evaluate(v)
    assert not verdict.passed
    assert verdict.failures == ["no results of the 'deepseek-paper' suite, which the policy requires"]


def test_the_verdict_checks_every_limit_line_by_line():
    ref, v = factories.reference_and_candidate(factories.checkpoint("smol", family="SmolLM2"), ppl=6.0,
                                               reference_ppl=5.0, kld_mean=0.25)
    factories.scored(ref, {"MMLU": [80.0]})
    factories.scored(v, {"MMLU": [76.0]})
    checks = {c.name: c for c in release_policy.evaluate(v).checks}
    assert checks["suite:quality"].passed
    assert not checks["ppl_ratio"].passed and checks["ppl_ratio"].measured == pytest.approx(1.2)
    assert checks["ppl_ratio"].message == f"PPL ratio vs F16 #{ref.pk} 1.2 is above the limit 1.1"
    assert not checks["kld_mean"].passed and checks["kld_mean"].limit == 0.10
    assert not checks["accuracy:MMLU"].passed and checks["accuracy:MMLU"].measured == pytest.approx(5.0)
    assert checks["accuracy:MMLU"].message == f"MMLU accuracy drop 5.00 % vs F16 #{ref.pk} is above the limit 3 %"


def test_in_the_study_accuracy_falls_back_to_the_published_baseline():
    r1 = factories.checkpoint("deepseek-r1", family="DeepSeek-R1")
    _, v = factories.reference_and_candidate(r1)
    factories.scored(v, {"GPQA": [60.0]})  # the study's FP8 (official API) row: 69.58
    (check,) = [c for c in release_policy.evaluate(v).checks if c.name == "accuracy:GPQA"]
    assert not check.passed and check.measured == pytest.approx((69.58 - 60.0) / 69.58 * 100)
    assert "FP8 (official API), published (Zhao et al. 2025" in check.message


@pytest.fixture
def unmeasured():
    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"))
    return factories.release(v, by=User.objects.create_user("rita"))


def test_approval_without_evidence_is_refused_with_the_reason(unmeasured):
    with pytest.raises(release_policy.PolicyRefusal) as refused:
        publishing.approve(unmeasured, make_approver("alice"), "looks fine")
    assert "no results of the 'quality' suite" in refused.value.messages[0]
    assert "PPL ratio vs the reference: not measured" in refused.value.messages[0]
    assert Release.objects.get(pk=unmeasured.pk).state == Release.State.CANDIDATE
    assert not AuditLog.objects.filter(action="release.approve").exists()


def test_an_override_needs_a_written_justification_and_is_audited(unmeasured):
    alice = make_approver("alice")
    with pytest.raises(release_policy.PolicyRefusal):
        publishing.approve(unmeasured, alice, "ok", override="   ")
    publishing.approve(unmeasured, alice, "ok", override="the tiny demo model has no task suite; PPL checked by hand")
    release = Release.objects.get(pk=unmeasured.pk)
    assert release.state == Release.State.APPROVED
    assert release.policy_override == "the tiny demo model has no task suite; PPL checked by hand"
    assert release.policy_verdict["passed"] is False and release.policy_verdict["version"] == 1
    entry = AuditLog.objects.get(action="release.policy_override", object_id=str(release.pk))
    assert entry.actor == "alice" and entry.details["justification"].startswith("the tiny demo model")
    assert "no results of the 'quality' suite, which the policy requires" in entry.details["failures"]
    assert AuditLog.objects.get(action="release.approve", object_id=str(release.pk)).details["policy"] == "overridden"


def test_the_requester_cannot_approve_even_with_an_override(unmeasured):
    unmeasured.requested_by.groups.add(make_approver("x").groups.first())
    with pytest.raises(PermissionDenied, match="requester"):
        publishing.approve(unmeasured, unmeasured.requested_by, "mine", override="trust me")


def test_a_passing_candidate_is_approved_with_its_verdict_and_no_override():
    _, v = factories.reference_and_candidate()
    release = factories.release(v, by=User.objects.create_user("rita"))
    publishing.approve(release, make_approver("alice"), "ok", override="not needed")
    release.refresh_from_db()
    assert release.policy_verdict["passed"] is True and release.policy_override == ""
    assert not AuditLog.objects.filter(action="release.policy_override").exists()
