"""The admin sits behind login and CSRF; the API's session login needs CSRF too (tokens do not)."""
from __future__ import annotations

import pytest
from django.test import Client

from registry.models import Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate(requester, released):
    return factories.release(released.variant, by=requester.user)


@pytest.fixture
def alice_in_browser() -> Client:
    """A staff approver logged in through the admin, in a browser that checks CSRF as real ones do."""
    user = make_approver("alice-staff")
    user.is_staff = True
    user.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/admin/", "/admin/registry/release/", "/admin/registry/auditlog/",
                                  "/admin/registry/recipe/new-version/"])
def test_anonymous_is_sent_to_the_login_page(path):
    response = Client().get(path)
    assert response.status_code == 302 and response["Location"].startswith(f"/admin/login/?next={path}")


def test_anonymous_cannot_post_a_review_decision(candidate):
    response = Client().post(f"/admin/registry/release/{candidate.pk}/review/", {"_approve": "1"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Release.objects.get(pk=candidate.pk).state == "candidate"


def test_a_review_decision_without_the_csrf_token_is_refused(alice_in_browser, candidate):
    response = alice_in_browser.post(f"/admin/registry/release/{candidate.pk}/review/",
                                     {"reason": "ok", "_approve": "1"})
    assert response.status_code == 403 and b"CSRF" in response.content
    assert Release.objects.get(pk=candidate.pk).state == "candidate"


def test_an_admin_action_without_the_csrf_token_is_refused(alice_in_browser, candidate):
    response = alice_in_browser.post("/admin/registry/release/", {"action": "review_selected",
                                                                  "_selected_action": [candidate.pk]})
    assert response.status_code == 403 and b"CSRF" in response.content


def test_the_same_decision_with_the_csrf_token_goes_through(alice_in_browser, candidate):
    """The refusal above is CSRF, not something else: with the token from the page, it works."""
    page = alice_in_browser.get(f"/admin/registry/release/{candidate.pk}/review/")
    token = page.context["csrf_token"]
    response = alice_in_browser.post(f"/admin/registry/release/{candidate.pk}/review/",
                                     {"reason": "ok", "_approve": "1", "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert Release.objects.get(pk=candidate.pk).state == "approved"


def test_an_api_write_with_a_session_cookie_needs_csrf(alice_in_browser, candidate):
    response = alice_in_browser.post(f"/api/releases/{candidate.pk}/approve/", {"reason": "ok"},
                                     content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert Release.objects.get(pk=candidate.pk).state == "candidate"
