"""Security tests: personas, a small released registry, and throttle counters cleared per test."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests import factories
from tests.registry.personas import admin, anonymous, approver, requester, teammate  # noqa: F401 (fixtures)
from tests.registry.personas import make_approver

SHARD = b"GGUF" + bytes(range(256)) * 8


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters live in the cache; each test starts with none spent."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def released(storage, settings):
    """deepseek-r1:DQ3_K_M with v1 approved (tags v1, latest) by carol, requested by rita; a file on disk; its
    quality measured against an F16 reference variant."""
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    ckpt = factories.checkpoint("deepseek-r1")
    variant = factories.variant(ckpt, factories.recipe("DQ3_K_M"), storage=storage,
                                files={"deepseek-r1-DQ3_K_M.gguf": SHARD})
    # Measured against its reference (which has no files), so approvals satisfy the release policy.
    factories.measured(variant, factories.variant(ckpt, factories.recipe("F16"), bits_per_weight=16.0))
    release = factories.release(variant, by=User.objects.create_user("rita-2"))
    release.approve(make_approver("carol"))
    release.refresh_from_db()
    return release
