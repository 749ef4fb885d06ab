"""GET /api/audit/: the audit log for approvers and auditors, read-only, filtered by who, what and when."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from registry.models import AuditLog
from tests import factories
from tests.registry.personas import client_for, make_approver

pytestmark = pytest.mark.django_db
URL = "/api/audit/"


@pytest.fixture
def history(settings):
    """rita requests a release, carol approves it; an older entry from a week ago."""
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    rita = User.objects.create_user("rita-2")
    release = factories.release(factories.variant(), by=rita)
    release.approve(make_approver("carol"), "KLD fine")
    old = AuditLog.objects.create(actor="system", action="checkpoint.register", object_type="registry.Checkpoint",
                                  object_id="1", at=timezone.now() - dt.timedelta(days=7))
    return {"release": release, "old": old}


@pytest.fixture
def auditor():
    user = User.objects.create_user("audrey", password="pw")
    group, _ = Group.objects.get_or_create(name="auditors")
    group.permissions.add(Permission.objects.get(codename="view_auditlog"))
    user.groups.add(group)
    return client_for(user)


@pytest.mark.parametrize("persona,expected", [("anonymous", 401), ("requester", 403), ("teammate", 403),
                                              ("approver", 200), ("auditor", 200), ("admin", 200)])
def test_only_approvers_and_auditors_read_it(request, history, persona, expected):
    client = request.getfixturevalue(persona)
    response = client.get(URL)
    detail = client.get(f"{URL}{history['old'].pk}/")
    assert response.status_code == detail.status_code == expected
    if expected != 200:
        assert "error" in response.json() and "error" in detail.json()
    else:
        assert response.json()["count"] == 4  # release.request, release.approve, tag.move (latest), the old one
        assert detail.json() == {"id": history["old"].pk, "at": detail.json()["at"], "actor": "system",
                                 "action": "checkpoint.register", "object_type": "registry.Checkpoint",
                                 "object_id": "1", "details": {}}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_is_read_only_even_for_approvers(approver, history, method):
    entry = history["old"]
    path = URL if method == "post" else f"{URL}{entry.pk}/"
    response = getattr(approver, method)(path, {"actor": "nobody"}, format="json")
    assert response.status_code == 405 and "error" in response.json()
    assert AuditLog.objects.get(pk=entry.pk).actor == "system" and AuditLog.objects.count() == 4


def test_it_filters_by_actor_action_object_and_time(approver, history):
    release = history["release"]

    def ids(query: str) -> list[str]:
        response = approver.get(f"{URL}?{query}")
        assert response.status_code == 200, response.json()
        return [(e["actor"], e["action"]) for e in response.json()["results"]]

    assert ids("actor=carol") == [("carol", "release.approve"), ("carol", "tag.move")]  # newest first
    assert ids("action=release.request") == [("rita-2", "release.request")]
    assert ids(f"object_type=registry.Release&object_id={release.pk}") == [
        ("carol", "release.approve"), ("rita-2", "release.request")]
    week_ago = (timezone.now() - dt.timedelta(days=6)).isoformat()
    assert ("system", "checkpoint.register") not in ids(f"since={week_ago.replace('+', '%2B')}")
    assert ids(f"until={week_ago.replace('+', '%2B')}") == [("system", "checkpoint.register")]


def test_a_bad_time_is_a_400(approver, history):
    response = approver.get(f"{URL}?since=yesterday")
    assert response.status_code == 400 and "since" in response.json()["error"]


@pytest.mark.parametrize("query", ["since=", "until=", "until=%20"])
def test_an_empty_time_is_a_400_not_no_bound(approver, history, query):
    response = approver.get(f"{URL}?{query}")
    assert response.status_code == 400 and query.split("=")[0] in response.json()["error"]
