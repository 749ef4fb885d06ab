"""?limit=&offset= on lists (registry/api/pagination.py): bounded, and a bad value is a 400, not the default."""
from __future__ import annotations

import pytest

from registry.api.pagination import MAX_LIMIT, MAX_OFFSET
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def recipes():
    return [factories.recipe(f"R{i}") for i in range(3)]


def test_it_pages_with_limit_and_offset(anonymous, recipes):
    body = anonymous.get("/api/recipes/", {"limit": 2, "offset": 1}).json()
    assert (body["count"], len(body["results"])) == (3, 2)


@pytest.mark.parametrize("params", [{"limit": "abc"}, {"limit": 0}, {"limit": -1}, {"limit": MAX_LIMIT + 1},
                                    {"offset": "1e3"}, {"offset": -1}, {"offset": MAX_OFFSET + 1},
                                    {"limit": 2**64}])
def test_it_refuses_a_limit_or_offset_out_of_range(anonymous, recipes, params):
    response = anonymous.get("/api/recipes/", params)
    assert response.status_code == 400, response.content
    assert set(response.json()["fields"]) == set(params)


def test_it_refuses_a_query_parameter_given_twice(anonymous, recipes):
    response = anonymous.get("/api/recipes/?limit=1&limit=2")
    assert response.status_code == 400 and "limit" in response.json()["error"]
