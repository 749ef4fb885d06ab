"""Variants: filters by checkpoint, recipe and status; a query-count baseline for the list."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import Variant
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def variants():
    r1, v3 = factories.checkpoint("deepseek-r1"), factories.checkpoint("deepseek-v3")
    q4, dq3 = factories.recipe("Q4_K_M"), factories.recipe("DQ3_K_M")
    return {
        "r1-q4": factories.variant(r1, q4, files={"a.gguf": b"a"}),
        "r1-dq3": factories.variant(r1, dq3, status=Variant.Status.BUILDING),
        "v3-dq3": factories.variant(v3, dq3, files={"b.gguf": b"b", "c.gguf": b"c"}),
    }


@pytest.mark.parametrize("query,expected", [
    ("checkpoint=deepseek-r1", {"r1-q4", "r1-dq3"}),
    ("recipe=dq3_k_m", {"r1-dq3", "v3-dq3"}),
    ("status=ready", {"r1-q4", "v3-dq3"}),
    ("checkpoint=deepseek-r1&recipe=DQ3_K_M&status=building", {"r1-dq3"}),
])
def test_it_filters(anonymous, variants, query, expected):
    ids = {v["id"] for v in anonymous.get(f"/api/variants/?{query}").json()["results"]}
    assert ids == {variants[k].pk for k in expected}


def test_it_refuses_an_unknown_status(anonymous, variants):
    response = anonymous.get("/api/variants/?status=melted")
    assert response.status_code == 400 and "status" in response.json()["error"]


def test_the_list_costs_a_fixed_number_of_queries(anonymous, variants, settings):
    # The list's own queries: throttle counters (a constant few, in the database cache by default) are off.
    settings.REST_FRAMEWORK = dict(settings.REST_FRAMEWORK, DEFAULT_THROTTLE_RATES={"anon": None, "user": None})
    with CaptureQueriesContext(connection) as few:
        anonymous.get("/api/variants/")
    for i in range(5):
        factories.variant(factories.checkpoint(f"more-{i}"), factories.recipe(f"R{i}"), files={"x.gguf": b"x"})
    with CaptureQueriesContext(connection) as many:
        anonymous.get("/api/variants/")
    assert len(many) == len(few) <= 4


def test_variants_are_read_only(admin, variants):
    response = admin.delete(f"/api/variants/{variants['r1-q4'].pk}/")
    assert response.status_code == 405 and "not allowed" in response.json()["error"]
