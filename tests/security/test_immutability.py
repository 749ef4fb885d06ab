"""Released versions and version tags never change, through the API or directly on the models.

Re-pointing `v1` with Tag.save is also tests/registry/test_models.py::
test_version_tags_cannot_be_repointed_even_directly; moving it through the API is
tests/registry/api/test_tags.py::test_version_tags_never_move.
"""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from registry.models import ArtifactFile, Release, Tag, Variant
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(released):
    released.mark_published("dsq/deepseek-r1-GGUF", "a" * 40, "DQ3_K_M-v1")
    return Release.objects.get(pk=released.pk)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_api_has_no_way_to_edit_or_delete_a_release_or_tag(admin, published, method):
    v1 = Tag.objects.get(name="v1")
    body = {"hub_commit": "b" * 40, "version": 9, "release": published.pk}
    for url in (f"/api/releases/{published.pk}/", f"/api/tags/{v1.pk}/", f"/api/variants/{published.variant_id}/"):
        assert getattr(admin, method)(url, body, format="json").status_code == 405, url
    assert Release.objects.get(pk=published.pk).hub_commit == "a" * 40 and Tag.objects.filter(pk=v1.pk).exists()


def test_a_channel_cannot_take_over_a_version_tag_through_the_api(approver, published, requester):
    second = factories.release(published.variant, by=requester.user)
    second.approve(approver.user)
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": "v1",
                                            "release": second.pk}, format="json")
    assert response.status_code == 400
    assert Tag.objects.get(name="v1").release_id == published.pk


@pytest.mark.parametrize("field,value", [("hub_commit", "b" * 40), ("hub_repo", "evil/repo"), ("version", 7),
                                         ("decided_by_id", None), ("state", "approved"), ("state", "candidate")])
def test_a_published_release_cannot_be_edited(published, field, value):
    setattr(published, field, value)
    with pytest.raises(ValidationError, match="cannot change"):
        published.save()
    assert Release.objects.filter(pk=published.pk, hub_commit="a" * 40, version=1, state="published").exists()


def test_an_approved_release_cannot_go_back_to_candidate_or_change_variant(released):
    other = factories.variant(released.variant.checkpoint, factories.recipe("DQ3_K_M", version=2))
    for field, value in (("state", "candidate"), ("variant_id", other.pk)):
        release = Release.objects.get(pk=released.pk)
        setattr(release, field, value)
        with pytest.raises(ValidationError, match="cannot change"):
            release.save()
    assert Release.objects.get(pk=released.pk).state == "approved"


def test_notes_and_publishing_still_work_on_an_approved_release(released):
    released.notes = "typo fixed"
    released.save()
    released.mark_published("dsq/deepseek-r1-GGUF", "c" * 40, "DQ3_K_M-v1")
    assert Release.objects.get(pk=released.pk).state == "published"


def test_released_versions_and_version_tags_are_never_deleted(published):
    # Each refused delete in its own savepoint, as a caller would: the refusal aborts the transaction.
    with pytest.raises((ValidationError, ProtectedError)), transaction.atomic():
        Release.objects.filter(pk=published.pk).delete()  # queryset deletes are refused too
    with pytest.raises(ValidationError, match="version tags are never deleted"), transaction.atomic():
        Tag.objects.get(name="v1").delete()
    Tag.objects.filter(release=published, kind=Tag.Kind.CHANNEL).delete()
    with pytest.raises(ValidationError, match="never deleted"), transaction.atomic():
        Tag.objects.filter(release=published).delete()
    assert Release.objects.filter(pk=published.pk).exists() and Tag.objects.filter(name="v1").exists()


def test_a_channel_may_be_deleted_and_a_candidate_too(published, requester):
    Tag.objects.get(name="latest").delete()
    candidate = factories.release(published.variant, by=requester.user)
    candidate.delete()
    assert not Tag.objects.filter(name="latest").exists() and not Release.objects.filter(pk=candidate.pk).exists()


def test_a_released_variants_files_cannot_be_added_edited_or_deleted(published):
    f = ArtifactFile.objects.get(variant=published.variant)
    f.sha256 = "0" * 64
    with pytest.raises(ValidationError, match="cannot change"):
        f.save()
    with pytest.raises(ValidationError, match="cannot change"):
        ArtifactFile.objects.create(variant=published.variant, name="extra.gguf", size=1, sha256="1" * 64)
    with pytest.raises(ValidationError, match="never deleted"), transaction.atomic():
        ArtifactFile.objects.filter(variant=published.variant).delete()
    assert list(published.variant.files.values_list("sha256", flat=True)) == [f.__class__.objects.get(pk=f.pk).sha256]
    assert ArtifactFile.objects.get(pk=f.pk).sha256 != "0" * 64


def test_a_released_variant_keeps_its_storage_path_but_may_gain_quality(published):
    variant = Variant.objects.get(pk=published.variant_id)
    factories.scored(variant, {"MMLU": [78.0]})  # the benchmark worker's write goes through
    variant.storage_path = "variants/elsewhere"
    with pytest.raises(ValidationError, match="storage_path"):
        variant.save()
    assert Variant.objects.get(pk=variant.pk).storage_path != "variants/elsewhere"


def test_an_unreleased_variants_files_can_still_be_fixed(storage):
    v = factories.variant(storage=storage, files={"a.gguf": b"x"})
    ArtifactFile.objects.filter(variant=v).delete()
    ArtifactFile.objects.create(variant=v, name="b.gguf", size=1, sha256="2" * 64)
    assert list(v.files.values_list("name", flat=True)) == ["b.gguf"]
