"""Domain rules on the models: recipe versions, release numbering, tag history, the audit log."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError

from quant.recipes import RecipeError
from registry.models import AuditLog, Recipe, Release, Tag, TagMove
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


def test_registering_the_same_recipe_twice_returns_the_first():
    first, created = Recipe.register({"name": "mine", "extends": "Q4_K_M"})
    again, created_again = Recipe.register({"name": "mine", "version": 7, "extends": "Q4_K_M"})
    assert created and not created_again and again == first


def test_a_changed_recipe_becomes_the_next_version_with_its_own_hash():
    v1, _ = Recipe.register({"name": "mine", "extends": "Q4_K_M"})
    v2, created = Recipe.register({"name": "mine", "extends": "Q4_K_M",
                                   "rules": [{"match": "ffn_down", "type": "Q6_K"}]})
    assert created and (v1.version, v2.version) == (1, 2) and v1.sha256 != v2.sha256
    assert v2.parsed().sha256 == v2.sha256  # the stored hash is the hash of what is stored


def test_a_stored_recipe_cannot_change():
    recipe, _ = Recipe.register({"name": "mine", "extends": "Q4_K_M"})
    recipe.sha256 = "0" * 64
    with pytest.raises(ValidationError, match="immutable"):
        recipe.save()


def test_an_invalid_recipe_is_refused_with_the_reason():
    with pytest.raises(ValidationError, match="unknown GGML type"):
        Recipe.register({"name": "bad", "default_type": "Q9_Z"})


def test_a_stored_recipe_that_does_not_parse_is_an_error_never_the_builtin_of_its_name():
    # a row as an older parser could have accepted it (its "default" is not a field today's has)
    stored = Recipe.objects.create(name="Q4_K_M", version=1, sha256="a" * 64,
                                   definition={"name": "Q4_K_M", "version": 1, "default": "Q4_K"})
    with pytest.raises(RecipeError, match=r"^stored recipe Q4_K_M v1 \(sha256 aaaaaaaaaaaa\) does not parse: "
                                          r"unknown field\(s\) \['default'\]"):
        stored.parsed()


def test_release_versions_count_per_checkpoint_and_quant():
    rita = User.objects.create_user("rita")
    ckpt = factories.checkpoint("deepseek-r1")
    old = factories.variant(ckpt, factories.recipe("DQ3_K_M", version=1))
    new = factories.variant(ckpt, factories.recipe("DQ3_K_M", version=2))
    other = factories.variant(ckpt, factories.recipe("Q4_K_M"))
    labels = [Release.request(v, rita).label for v in (old, new, other)]
    assert labels == ["v1", "v2", "v1"]


def test_moving_a_channel_records_who_moved_it_from_where():
    rita, alice = User.objects.create_user("rita"), make_approver("alice")
    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"))
    r1, r2 = Release.request(v, rita), Release.request(v, rita)
    r1.approve(alice)
    r2.approve(alice)
    stable = Tag.channel(v.checkpoint, "DQ3_K_M", "stable")
    stable.move(r1, alice)
    stable.move(r2, alice)
    history = [(m.from_release, m.to_release, m.moved_by) for m in TagMove.objects.filter(tag=stable)]
    assert history == [(r1, r2, alice), (None, r1, alice)]
    with pytest.raises(PermissionDenied):
        stable.move(r1, rita)


def test_version_tags_cannot_be_repointed_even_directly():
    rita, alice = User.objects.create_user("rita"), make_approver("alice")
    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"))
    r1, r2 = Release.request(v, rita), Release.request(v, rita)
    r1.approve(alice)
    r2.approve(alice)
    tag = Tag.objects.get(name="v1")
    tag.release = r2
    with pytest.raises(ValidationError, match="immutable"):
        tag.save()


def test_publishing_needs_an_approved_release():
    v = factories.variant()
    release = Release.request(v, User.objects.create_user("rita"))
    with pytest.raises(ValidationError, match="only approved"):
        release.mark_published("dsq/x", "abc")


def test_the_audit_log_is_append_only():
    entry = AuditLog.record(None, "test", factories.checkpoint())
    entry.action = "rewritten"
    with pytest.raises(ValidationError):
        entry.save()
    with pytest.raises(ValidationError):
        entry.delete()
