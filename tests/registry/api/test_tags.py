"""Tags: version tags never move; channels move only by approvers, and every move is kept."""
from __future__ import annotations

import pytest

from registry.models import Tag
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_approved(requester):
    ckpt, rcp = factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M")
    v = factories.variant(ckpt, rcp)
    boss = make_approver("carol")
    r1, r2 = factories.release(v, by=requester.user), factories.release(v, by=requester.user)
    r1.approve(boss)
    r2.approve(boss)
    return r1, r2


def test_it_creates_a_channel_and_moves_it_with_history(approver, two_approved):
    r1, r2 = two_approved
    created = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": "stable",
                                           "release": r1.pk}, format="json")
    assert created.status_code == 201, created.json()
    tag = created.json()
    assert (tag["ref"], tag["version"], tag["kind"]) == ("deepseek-r1:DQ3_K_M@stable", "v1", "channel")
    moved = approver.post(f"/api/tags/{tag['id']}/move/", {"release": r2.pk}, format="json").json()
    assert moved["version"] == "v2" and moved["updated_by"] == "alice"
    assert [(m["from_version"], m["to_version"]) for m in moved["history"]] == [("v1", "v2"), (None, "v1")]


def test_latest_follows_each_approval(anonymous, two_approved):
    latest = anonymous.get("/api/tags/?name=latest").json()["results"][0]
    assert latest["version"] == "v2" and len(latest["history"]) == 2


def test_version_tags_never_move(approver, two_approved):
    r1, r2 = two_approved
    v1 = Tag.objects.get(name="v1")
    response = approver.post(f"/api/tags/{v1.pk}/move/", {"release": r2.pk}, format="json")
    assert response.status_code == 400 and "never move" in response.json()["error"]
    assert Tag.objects.get(pk=v1.pk).release == r1


def test_a_channel_cannot_take_a_version_name(approver, two_approved):
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": "v9",
                                            "release": two_approved[0].pk}, format="json")
    assert response.status_code == 400 and "version tag" in response.json()["error"]


def test_channels_only_point_at_approved_releases(approver, requester, two_approved):
    candidate = factories.release(two_approved[0].variant, by=requester.user)
    latest = Tag.objects.get(name="latest")
    response = approver.post(f"/api/tags/{latest.pk}/move/", {"release": candidate.pk}, format="json")
    assert response.status_code == 400 and "candidate" in response.json()["error"]


def test_only_approvers_move_channels(requester, teammate, anonymous, admin, two_approved):
    latest = Tag.objects.get(name="latest")
    for client in (requester, teammate):
        assert client.post(f"/api/tags/{latest.pk}/move/", {"release": two_approved[0].pk}).status_code == 403
    assert anonymous.post(f"/api/tags/{latest.pk}/move/", {"release": two_approved[0].pk}).status_code == 401
    assert admin.post(f"/api/tags/{latest.pk}/move/", {"release": two_approved[0].pk}).status_code == 200
    assert Tag.objects.get(pk=latest.pk).release == two_approved[0]


@pytest.mark.parametrize("name", ["V1", "v01", "V9", "v2-final", "v1_0", "3", "2024-05"])
def test_version_like_names_are_reserved_whatever_their_case(approver, two_approved, name):
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": name,
                                            "release": two_approved[0].pk}, format="json")
    assert response.status_code == 400 and "version tag" in response.json()["error"]
    assert not Tag.objects.filter(name=name).exists()


@pytest.mark.parametrize("name", [" v1", "V1\n", "\tv2", "v1.2"])
def test_padded_or_dotted_version_names_are_reserved_in_the_model_too(two_approved, name):
    """The API's slug field refuses spaces and dots first; the model refuses them on its own."""
    from django.core.exceptions import ValidationError

    r1 = two_approved[0]
    with pytest.raises(ValidationError, match="version tag"):
        Tag.channel(r1.variant.checkpoint, "DQ3_K_M", name)


@pytest.mark.parametrize("name", ["stable", "beta", "vision", "v", "nightly-v2"])
def test_other_channel_names_are_fine(approver, two_approved, name):
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": name,
                                            "release": two_approved[0].pk}, format="json")
    assert response.status_code == 201, response.json()
