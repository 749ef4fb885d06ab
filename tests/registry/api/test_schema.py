"""The OpenAPI schema (registry/api/schema.py) says what the views do; the live check is test_schema_contract.py."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from registry.models import Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    return [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def component(schema, name: str) -> dict:
    return schema["components"]["schemas"][name]


def body_schema(schema, op: dict, code: str) -> dict:
    ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
    return component(schema, ref.rsplit("/", 1)[1])


def test_it_documents_the_error_body_for_every_operation(schema):
    for method, path, op in operations(schema):
        for code in ("400", "401", "429"):
            assert body_schema(schema, op, code) is component(schema, "Error"), (method, path, code)
        if "{" in path:
            assert "404" in op["responses"], (method, path)
        if method == "POST":
            assert {"403", "413"} <= set(op["responses"]), (method, path)
    assert set(component(schema, "Error")["required"]) == {"error", "status"}


def test_it_lists_only_writable_fields_in_request_bodies(schema):
    assert set(component(schema, "ReleaseRequestRequest")["properties"]) == {"variant", "notes"}
    assert set(component(schema, "DecisionRequest")["properties"]) == {"reason"}
    assert set(component(schema, "ApprovalRequest")["properties"]) == {"reason", "override"}
    created = component(schema, "CheckpointCreateRequest")["properties"]
    assert not {"id", "architecture", "parameter_count", "created_at"} & set(created)


def test_it_documents_the_status_codes_that_are_not_200(schema):
    paths = schema["paths"]
    created = paths["/api/releases/"]["post"]["responses"]
    assert "201" in created and "200" not in created
    assert "202" in paths["/api/releases/{id}/publish/"]["post"]["responses"]
    refused = paths["/api/releases/{id}/approve/"]["post"]["responses"]["409"]
    assert "verdict" in component(schema, refused["content"]["application/json"]["schema"]["$ref"].split("/")[-1])[
        "properties"]
    assert {"200", "201"} <= set(paths["/api/quantizations/"]["post"]["responses"])
    for action in ("cancel", "retry"):
        assert "409" in paths[f"/api/jobs/quantize/{{id}}/{action}/"]["post"]["responses"]
    assert {"200", "206", "416"} <= set(paths["/api/files/{variant_id}/{name}"]["get"]["responses"])


TOKEN_ONLY_READS = ("/api/audit/",)  # the audit log: approvers and auditors only (registry.access)


def test_it_marks_reads_public_and_writes_token_only(schema):
    for method, path, op in operations(schema):
        public = {} in op.get("security", [])
        assert public == (method == "GET" and not path.startswith(TOKEN_ONLY_READS)), (method, path, op.get("security"))


def test_it_marks_nullable_what_can_be_null(schema):
    assert component(schema, "TagMove")["properties"]["from_version"].get("nullable")
    assert component(schema, "Manifest")["properties"]["hub"].get("nullable")
    outcome = component(schema, "QuantizationOutcome")["properties"]
    assert outcome["job"].get("nullable") and outcome["variant"].get("nullable")


def keys_match(schema, name: str, body: dict) -> None:
    documented = component(schema, name)
    assert set(documented["required"]) <= set(body) <= set(documented["properties"]), (name, sorted(body))


def test_the_fit_body_is_what_the_view_writes(schema, anonymous):
    factories.deepseek_checkpoint()
    factories.builtin_recipe("DQ3_K_M")
    body = anonymous.get("/api/fit", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M"}).json()
    keys_match(schema, "Fit", body)
    keys_match(schema, "Hardware", body["hardware"])
    keys_match(schema, "GpuUse", body["gpus"][0])


def test_the_pull_manifest_is_what_the_view_writes(schema, anonymous, requester, storage):
    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"), storage=storage,
                          files={"a.gguf": b"GGUF"})
    Release.request(v, requester.user).approve(make_approver("alice"))
    body = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v1").json()
    keys_match(schema, "Manifest", body)
    keys_match(schema, "ManifestRelease", body["release"])
    keys_match(schema, "ManifestFile", body["files"][0])
    keys_match(schema, "ManifestCommands", body["commands"])


def test_the_quantization_outcome_is_what_the_view_writes(schema, requester):
    factories.deepseek_checkpoint()
    factories.builtin_recipe("Q4_K_M")
    response = requester.post("/api/quantizations/", {"checkpoint": "deepseek-r1", "recipe": "Q4_K_M"}, format="json")
    assert response.status_code == 201
    keys_match(schema, "QuantizationOutcome", response.json())


def test_an_error_body_is_what_the_handler_writes(schema, anonymous):
    keys_match(schema, "Error", anonymous.get("/api/releases/?state=nonsense").json())
