"""?limit= and ?offset= on every list: bounded, and a value out of range is a JSON 400 that names it."""
from __future__ import annotations

import pytest

from registry.api.pagination import MAX_OFFSET
from tests import factories

pytestmark = pytest.mark.django_db

LISTS = ["/api/checkpoints/", "/api/recipes/", "/api/variants/", "/api/releases/", "/api/tags/",
         "/api/jobs/quantize/", "/api/jobs/benchmark/"]


@pytest.fixture
def rows():
    """A few rows in every list, so a query with the bad value really reaches the database."""
    v = factories.variant(factories.deepseek_checkpoint(), factories.builtin_recipe("Q4_K_M"))
    factories.quantization_job(v.checkpoint, v.recipe)
    return v


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("query", ["limit=9223372036854775808", "offset=9223372036854775808"])
def test_every_list_refuses_a_limit_or_offset_past_64_bits(admin, rows, url, query):
    """Once a 500 on SQLite (datatype mismatch), a database error on PostgreSQL."""
    response = admin.get(f"{url}?{query}")
    assert response.status_code == 400 and response["Content-Type"] == "application/json", response.content[:200]
    assert response.json()["error"].startswith(f"{query.split('=')[0]}: expected an integer from")


@pytest.mark.parametrize("query,named", [
    ("limit=99999999999999999999999", "limit"), ("limit=1001", "limit"), ("limit=0", "limit"), ("limit=-1", "limit"),
    ("limit=ten", "limit"), ("limit=", "limit"), ("limit=1&offset=9223372036854775808", "offset"),
    ("offset=-5", "offset"), ("offset=1e3", "offset"), ("offset=" + "9" * 5000, "offset"),
])
def test_each_bad_value_is_a_400_naming_the_parameter_and_its_range(anonymous, rows, query, named):
    response = anonymous.get(f"/api/recipes/?{query}")
    assert response.status_code == 400 and response.json()["error"].startswith(f"{named}: expected an integer from")
    assert len(response.json()["error"]) < 200


def test_it_pages_with_limit_and_offset(anonymous):
    for i in range(3):
        factories.recipe(f"R{i}")
    body = anonymous.get("/api/recipes/", {"limit": 2, "offset": 1}).json()
    assert (body["count"], len(body["results"])) == (3, 2)


def test_the_bounds_themselves_are_served(anonymous, rows):
    assert len(anonymous.get("/api/recipes/?limit=1000").json()["results"]) == 1
    page = anonymous.get(f"/api/recipes/?limit=1&offset={MAX_OFFSET}").json()
    assert page["results"] == [] and page["count"] == 1


def test_the_maximum_page_comes_from_settings(anonymous, rows, settings):
    settings.DSQ_MAX_PAGE_SIZE = 5
    assert anonymous.get("/api/recipes/?limit=5").status_code == 200
    assert "from 1 to 5" in anonymous.get("/api/recipes/?limit=6").json()["error"]


def test_the_schema_declares_the_bounds(anonymous):
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/variants/"]["get"]["parameters"]}
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert params["offset"] == {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}


def test_it_refuses_a_query_parameter_given_twice(anonymous):
    factories.recipe("R0")
    response = anonymous.get("/api/recipes/?limit=1&limit=2")
    assert response.status_code == 400 and "limit" in response.json()["error"]
