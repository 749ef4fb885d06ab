"""Every API error is JSON with a message and the right status, unknown routes included."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/variants/123/files/", "/api/pull/"])
def test_unknown_routes_are_json_404s(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["status"] == 404 and response.json()["error"]


def test_a_missing_object_is_a_json_404(anonymous):
    response = anonymous.get("/api/checkpoints/no-such-model/")
    assert response.status_code == 404 and response.json()["error"]


def test_a_bad_token_is_a_json_401(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Token nope")
    response = anonymous.get("/api/variants/")
    assert response.status_code == 401 and "token" in response.json()["error"].lower()


def test_the_schema_and_docs_pages_load(anonymous):
    schema = anonymous.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/quantizations/" in schema.content and b"/api/fit" in schema.content
    assert anonymous.get("/api/docs/").status_code == 200
