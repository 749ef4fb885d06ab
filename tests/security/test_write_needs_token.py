"""Every write needs a token: walk the OpenAPI schema and the URL conf as an anonymous client.

New endpoints are covered without editing this file: the walk finds them.
"""
from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db
WRITE_METHODS = ("post", "put", "patch", "delete")


def schema_operations() -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation the API documents."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item
            if method in ("get", *WRITE_METHODS)]


def concrete(template: str, ids: dict[str, str]) -> str:
    """Fill `{id}`, `{name}`, `{variant_id}`… with values of real rows (any value would do for 401)."""
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m[1], "1"), template)


def url_patterns(resolver=None, prefix: str = "") -> list[str]:
    """Every route in the URL conf as a regex source, for routes the schema does not list."""
    out = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            out += url_patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            out.append(prefix + str(entry.pattern))
    return out


def test_the_schema_lists_the_writes_we_expect():
    writes = {(m, p) for m, p in schema_operations() if m != "GET"}
    for expected in [("POST", "/api/quantizations/"), ("POST", "/api/releases/{id}/publish/"),
                     ("POST", "/api/releases/{id}/approve/"), ("POST", "/api/tags/{id}/move/"),
                     ("POST", "/api/checkpoints/"), ("POST", "/api/jobs/quantize/{id}/cancel/")]:
        assert expected in writes  # a walk that found nothing would prove nothing


@pytest.mark.parametrize("method,template", [op for op in schema_operations() if op[0] != "GET"])
def test_every_documented_write_answers_401_to_anonymous(anonymous, released, method, template):
    ids = {"id": str(released.pk), "name": released.variant.checkpoint.name}
    response = getattr(anonymous, method.lower())(concrete(template, ids), {}, format="json")
    assert response.status_code == 401, (method, template, response.content[:200])
    assert response.json()["error"] and response["WWW-Authenticate"].startswith("Token")


def test_no_route_under_api_accepts_an_anonymous_write(anonymous, released):
    """Routes outside the schema too (pull, files, fit, catch-all): writes are 401/404/405, never 2xx or 5xx."""
    api_routes = [p for p in url_patterns() if p.startswith("api/")]
    assert len(api_routes) > 10
    v = released.variant
    samples = {f"/api/pull/{v.checkpoint.name}:DQ3_K_M@v1", f"/api/files/{v.pk}/{v.files.first().name}",
               "/api/fit", "/api/schema/", "/api/docs/", "/api/no-such-route/", f"/api/releases/{released.pk}/",
               f"/api/tags/{released.tags.first().pk}/", f"/api/variants/{v.pk}/", "/api/checkpoints/deepseek-r1/"}
    for path in sorted(samples):
        for method in WRITE_METHODS:
            response = getattr(anonymous, method)(path, {}, format="json")
            assert response.status_code in (401, 404, 405), (method, path, response.status_code)
    # GET stays open for reads: the same walk must not be refusing everything.
    assert anonymous.get(f"/api/pull/{v.checkpoint.name}:DQ3_K_M@v1").status_code == 200
