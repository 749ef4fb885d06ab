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


# -- JSON whatever the Accept header ----------------------------------------------------------------

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def api_routes() -> list[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(m.upper(), p) for p, item in schema["paths"].items() for m in item if p != "/api/schema/"]


@pytest.mark.parametrize("accept", [BROWSER, "text/html", "application/xml", "image/png"])
def test_every_route_answers_json_to_any_accept_header(anonymous, accept):
    """Lists, 404s, 401s and 400s alike: never DRF's browsable HTML page, never a 406."""
    from tests import factories

    factories.deepseek_checkpoint()
    for method, template in api_routes():
        url = (template.replace("{id}", "999999").replace("{variant_id}", "999999").replace("{ref}", "nope:Q4_K_M@v1")
               .replace("{name}", "deepseek-r1"))
        response = getattr(anonymous, method.lower())(url, HTTP_ACCEPT=accept)
        assert response["Content-Type"] == "application/json", (method, url, response.status_code)
        assert response.status_code not in (406, 500) and response.json(), (method, url, response.status_code)


@pytest.mark.parametrize("query", ["?format=api", "?format=xml", "?format=html"])
def test_a_format_parameter_cannot_ask_for_html(anonymous, query):
    response = anonymous.get(f"/api/recipes/{query}", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"


def test_errors_raised_outside_drf_are_json_under_api(anonymous):
    bad_host = anonymous.get("/api/variants/", HTTP_HOST="evil.example", HTTP_ACCEPT="text/html")
    assert bad_host.status_code == 400 and bad_host["Content-Type"] == "application/json"
    assert bad_host.json() == {"error": "bad request", "status": 400}
    bad_token = anonymous.get("/api/variants/", HTTP_ACCEPT="text/html", HTTP_AUTHORIZATION="Token nope")
    assert bad_token.status_code == 401 and bad_token["Content-Type"] == "application/json"


def test_a_fault_is_a_json_500_with_no_trace(monkeypatch):
    """A bug in a view reaches the client as one JSON line; the traceback stays in the server's log."""
    from django.test import Client

    from registry.api.views import fit

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/dsq/quant/fit.py line 1")

    monkeypatch.setattr(fit, "_question", broken)
    response = Client(raise_request_exception=False).get("/api/fit", HTTP_ACCEPT="text/html")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json()["status"] == 500 and "secret" not in response.content.decode()


def test_pages_outside_the_api_keep_django_html_errors(anonymous):
    response = anonymous.get("/no-such-page/", HTTP_ACCEPT="text/html")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_the_swagger_ui_is_the_one_html_page_and_the_schema_still_negotiates(anonymous):
    docs = anonymous.get("/api/docs/", HTTP_ACCEPT="application/json")
    assert docs.status_code == 200 and docs["Content-Type"].startswith("text/html") and b"swagger" in docs.content
    assert anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()["openapi"]
    assert anonymous.get("/api/schema/", HTTP_ACCEPT="text/html")["Content-Type"].endswith("json")
    assert b"openapi:" in anonymous.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi").content
