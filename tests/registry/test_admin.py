"""Admin: release review with approve/reject, the read-only audit log, the recipe editor's dry run."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from registry.models import AuditLog, Recipe, Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


def staff_client(user: User) -> Client:
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def candidate():
    ckpt = factories.checkpoint("deepseek-r1")
    q8 = factories.variant(ckpt, factories.recipe("Q8_0"), bits_per_weight=8.5, total_bytes=665 * 2**30)
    v = factories.variant(ckpt, factories.recipe("DQ3_K_M"), bits_per_weight=3.59, total_bytes=281 * 2**30)
    factories.measured(v, q8, ppl=1795.6516107147536, ppl_uncertainty=98.3, reference_ppl=1729.9,
                       reference_ppl_uncertainty=94.1, kld_mean=0.0123, kld_p99=0.0871, top1=0.931)
    factories.scored(q8, {"mmlu": [80.0]})
    factories.scored(v, {"mmlu": [78.0]})
    return factories.release(v, by=User.objects.create_user("rita"))


def test_the_review_page_shows_size_bpw_and_drop(candidate):
    page = staff_client(make_approver("alice")).get(f"/admin/registry/release/{candidate.pk}/review/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "281.00 GiB" in html and "3.590" in html and "2.50 %" in html and 'name="_approve"' in html


def test_the_review_page_shows_the_real_drop_against_the_reference(candidate):
    html = staff_client(make_approver("alice")).get(f"/admin/registry/release/{candidate.pk}/review/").content.decode()
    q8 = candidate.variant.checkpoint.variants.get(recipe__name="Q8_0")
    assert f"against Q8_0 #{q8.pk}" in html and ">baseline<" not in html
    assert "1796 ± 98" in html and "1730 ± 94" in html and "1795.65161" not in html  # PPL with its ±
    assert "PPL ratio 1.038" in html and "0.01230" in html and "0.08710" in html and "93.10 %" in html
    assert "2.00 points (2.50 %)" in html  # the task score against the reference's
    assert 'id="verdict" class="passed"' in html and "mean KLD vs Q8_0" in html


def test_the_review_page_shows_types_siblings_and_fit():
    r1 = factories.deepseek_checkpoint()
    q8 = factories.variant(r1, factories.builtin_recipe("Q8_0"), bits_per_weight=8.5, total_bytes=713 * 10**9)
    v = factories.variant(r1, factories.builtin_recipe("DQ3_K_M"), bits_per_weight=3.57, total_bytes=299 * 10**9,
                          plan=factories.plan_of_conversion([("blk.3.ffn_down_exps.weight", (256, 2048, 7168), "Q6_K", 10),
                                                             ("blk.5.ffn_down_exps.weight", (256, 2048, 7168), "Q3_K", 10)]))
    factories.measured(v, q8)
    release = factories.release(v, by=User.objects.create_user("rita"))
    html = staff_client(make_approver("alice")).get(f"/admin/registry/release/{release.pk}/review/").content.decode()
    types = html[html.index('id="types"'):]
    assert "<td>Q6_K</td><td>1</td><td>3758096384</td><td>50.00 %</td>" in types
    siblings = html[html.index('id="siblings"'):]
    assert f'data-variant="{q8.pk}"' in siblings and "(reference)" in siblings and 'class="this"' in siblings
    fit = html[html.index('id="fit"'):]
    assert "8× NVIDIA H100 80 GB" in fit and "fits" in fit
    assert "no results of the &#x27;deepseek-paper&#x27; suite" in html  # 671B: task suites required


def test_the_review_page_refuses_an_approval_without_evidence_and_says_why():
    v = factories.variant(factories.checkpoint("tiny-v3"), factories.recipe("Q2_K"))
    release = factories.release(v, by=User.objects.create_user("rita"))
    client = staff_client(make_approver("alice"))
    response = client.post(f"/admin/registry/release/{release.pk}/review/", {"reason": "ok", "_approve": "1"},
                           follow=True)
    html = response.content.decode()
    assert "fails its release policy" in html and "no results of the &#x27;quality&#x27; suite" in html
    assert Release.objects.get(pk=release.pk).state == Release.State.CANDIDATE
    client.post(f"/admin/registry/release/{release.pk}/review/",
                {"reason": "ok", "override": "a smoke release for the staging Hub", "_approve": "1"})
    release.refresh_from_db()
    assert release.state == Release.State.APPROVED and release.policy_override == "a smoke release for the staging Hub"
    page = client.get(f"/admin/registry/release/{release.pk}/review/").content.decode()
    assert 'id="override">a smoke release for the staging Hub' in page
    assert "a smoke release for the staging Hub" in Client().get("/").content.decode()  # the dashboard shows it


def test_an_approver_approves_from_the_review_page(candidate):
    client = staff_client(make_approver("alice"))
    response = client.post(f"/admin/registry/release/{candidate.pk}/review/", {"reason": "ok", "_approve": "1"})
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.state == Release.State.APPROVED and candidate.decision_reason == "ok"


def test_the_requester_sees_no_buttons_and_cannot_post_a_decision(candidate):
    candidate.requested_by.groups.add(make_approver("x").groups.first())
    client = staff_client(candidate.requested_by)
    assert "you requested it" in client.get(f"/admin/registry/release/{candidate.pk}/review/").content.decode()
    client.post(f"/admin/registry/release/{candidate.pk}/review/", {"reason": "mine", "_approve": "1"})
    assert Release.objects.get(pk=candidate.pk).state == Release.State.CANDIDATE


def test_the_audit_log_cannot_be_edited_even_by_a_superuser(candidate):
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    entry = AuditLog.objects.first()
    assert client.get("/admin/registry/auditlog/").status_code == 200
    assert client.get("/admin/registry/auditlog/add/").status_code == 403
    assert client.post(f"/admin/registry/auditlog/{entry.pk}/delete/").status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_the_recipe_editor_previews_a_plan_then_saves_a_new_version():
    ckpt = factories.deepseek_checkpoint()
    builtin = factories.builtin_recipe("Q4_K_M")
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    custom = {"name": "Q4_K_M", "extends": "Q4_K_M", "rules": [{"match": "ffn_down_exps", "type": "Q6_K"}]}
    dry = client.post("/admin/registry/recipe/new-version/", {"definition": json.dumps(custom),
                                                              "checkpoint": ckpt.pk, "_dryrun": "1"})
    html = dry.content.decode()
    assert 'id="plan-preview"' in html and "bits per weight" in html and "Q6_K" in html
    assert Recipe.objects.filter(name="Q4_K_M").count() == 1  # a dry run saves nothing
    client.post("/admin/registry/recipe/new-version/", {"definition": json.dumps(custom), "_save": "1"})
    assert list(Recipe.objects.filter(name="Q4_K_M").values_list("version", flat=True)) == [builtin.version + 1,
                                                                                          builtin.version]


def test_the_recipe_editor_shows_validation_errors():
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    bad = client.post("/admin/registry/recipe/new-version/", {"definition": '{"name": "x", "default_type": "Q9_Z"}',
                                                              "_save": "1"})
    assert "unknown GGML type" in bad.content.decode() and not Recipe.objects.exists()


@pytest.mark.parametrize("who,expected", [("approver", 200), ("auditor", 200), ("staff", 403)])
def test_approvers_and_auditors_read_the_audit_log_in_the_admin_read_only(candidate, who, expected):
    from django.contrib.auth.models import Group, Permission

    user = make_approver("alice") if who == "approver" else User.objects.create_user("audrey")
    if who == "auditor":
        group, _ = Group.objects.get_or_create(name="auditors")
        group.permissions.add(Permission.objects.get(codename="view_auditlog"))
        user.groups.add(group)
    client = staff_client(user)
    entry = AuditLog.objects.first()
    listing = client.get("/admin/registry/auditlog/")
    assert listing.status_code == expected
    assert client.get(f"/admin/registry/auditlog/{entry.pk}/change/").status_code == expected
    if expected == 200:
        assert "release.request" in listing.content.decode()
        assert client.post(f"/admin/registry/auditlog/{entry.pk}/change/", {"actor": "x"}).status_code == 403
        assert client.post(f"/admin/registry/auditlog/{entry.pk}/delete/").status_code == 403
        assert client.get("/admin/registry/auditlog/add/").status_code == 403
    assert AuditLog.objects.get(pk=entry.pk).actor == "rita"


def test_bootstrap_creates_the_auditors_group():
    from django.contrib.auth.models import Group

    from registry.bootstrap import bootstrap

    assert "auditors" in bootstrap()["groups"]
    assert Group.objects.get(name="auditors").permissions.filter(codename="view_auditlog").exists()
