"""Hostile input at the API boundary: every answer is a 4xx JSON error, never a 500, never a file outside.

Baseline cases live beside the endpoints (tests/registry/api/test_files.py:
`../model.gguf`, `..%2F..%2Fetc%2Fpasswd`, `/etc/passwd`, a recorded name escaping storage;
test_quantizations.py: a relative imatrix escaping storage). These add the rest.
"""
from __future__ import annotations

import io
import json
import os

import pytest
from drf_spectacular.generators import SchemaGenerator

from quant import configs
from registry.models import Checkpoint, Tag

pytestmark = pytest.mark.django_db


def assert_json_4xx(response, *codes):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if codes:
        assert response.status_code in codes, response.status_code
    assert response["Content-Type"] == "application/json" and response.json()["error"]


@pytest.mark.parametrize("name", [
    "%2e%2e/%2e%2e/etc/passwd", "%252e%252e%252fetc%252fpasswd", "..%5c..%5cetc%5cpasswd", "....//....//etc/passwd",
    "deepseek-r1-DQ3_K_M.gguf%00.txt", "deepseek-r1-DQ3_K_M.gguf/..", "%2Fetc%2Fpasswd", "x" * 5000,
    "deepseek-r1-DQ3_K_M.gguf/../../../../../etc/passwd",
])
def test_file_names_that_walk_out_are_json_404s(anonymous, released, name):
    response = anonymous.get(f"/api/files/{released.variant_id}/{name}")
    assert_json_4xx(response, 404, 400)  # 400: a NUL byte, refused before any lookup


@pytest.mark.parametrize("path", ["/api/files/99999999999999999999999/x.gguf", "/api/releases/99999999999999999999/",
                                  "/api/variants/-1/", "/api/tags/1e9/", "/api/jobs/quantize/%00/",
                                  "/api/variants/?limit=99999999999999999999&offset=-5",
                                  "/api/fit?variant=99999999999999999999"])
def test_out_of_range_ids_are_4xx_not_database_errors(anonymous, released, path):
    assert_json_4xx(anonymous.get(path))


@pytest.mark.parametrize("name", ["../stable", "a/b", "..", "st\x00able", "st\nable", "st\x1bable", "s" * 101,
                                  "stable\u202e", ""])
def test_bad_channel_names_are_refused(approver, released, name):
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": "DQ3_K_M", "name": name,
                                            "release": released.pk}, format="json")
    assert_json_4xx(response, 400)
    assert set(Tag.objects.values_list("name", flat=True)) == {"v1", "latest"}


@pytest.mark.parametrize("quant", ["../DQ3_K_M", "DQ3_K_M\x00", "Q" * 5000, "DQ3_K_M/../x"])
def test_bad_quant_names_for_a_channel_are_refused(approver, released, quant):
    response = approver.post("/api/tags/", {"checkpoint": "deepseek-r1", "quant": quant, "name": "stable",
                                            "release": released.pk}, format="json")
    assert_json_4xx(response, 400)
    assert not Tag.objects.filter(name="stable").exists()


@pytest.mark.parametrize("ref", ["deepseek-r1:DQ3_K_M@..", "deepseek-r1:DQ3_K_M@%2e%2e%2fv1", "..:..@..",
                                 "deepseek-r1:DQ3_K_M@v%0a1", "deepseek-r1:DQ3_K_M@%00", "a:" + "b" * 10000,
                                 "deepseek-r1:DQ3_K_M@v1%2F..%2F..%2Fetc"])
def test_bad_pull_references_are_json_errors(anonymous, released, ref):
    assert_json_4xx(anonymous.get(f"/api/pull/{ref}"), 400, 404)


def register(client, **fields):
    body = {"name": "imported", "family": "R1-Distill-Llama-8B", **fields}
    return client.post("/api/checkpoints/", body, format="json")


@pytest.fixture
def outside(tmp_path):
    """A valid checkpoint directory that is not under any import root."""
    d = tmp_path / "outside" / "model"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(configs.load_config("DeepSeek-R1-Distill-Llama-8B")))
    return d


def test_a_local_path_outside_the_import_roots_is_refused(requester, storage, outside):
    for path in [str(outside), str(outside / "config.json"), f"{storage}/../outside/model", "/etc", "/etc/passwd",
                 "relative/model", "/proc/self/environ"]:
        response = register(requester, local_path=path)
        assert_json_4xx(response, 400)
        assert "local_path" in response.json()["error"], path
    assert not Checkpoint.objects.filter(name="imported").exists()


def test_a_symlink_from_inside_the_roots_to_outside_is_refused(requester, storage, outside):
    os.symlink(outside, storage / "innocent")
    response = register(requester, local_path=str(storage / "innocent"))
    assert_json_4xx(response, 400)
    assert "DSQ_IMPORT_ROOTS" in response.json()["error"]


def test_a_local_path_inside_an_import_root_is_accepted(requester, storage, outside, settings):
    """The same directory is fine once an operator lists its parent in DSQ_IMPORT_ROOTS."""
    settings.DSQ_IMPORT_ROOTS = [outside.parent]
    response = register(requester, local_path=str(outside))
    assert response.status_code == 201 and Checkpoint.objects.get(name="imported").local_path == str(outside)


def test_the_default_import_roots_are_storage_and_var():
    from dsq import settings as module

    assert module.DSQ_IMPORT_ROOTS == [module.DSQ_STORAGE_ROOT, (module.BASE_DIR / "var").resolve()]


@pytest.mark.parametrize("fields", [{"name": "../evil", "config": {}}, {"name": "a/b", "config": {}},
                                    {"name": "x" * 101, "config": {}}, {"hf_repo": "../../api/whoami"},
                                    {"hf_repo": "owner/name/../../x"}, {"hf_repo": "owner/na\x00me"},
                                    {"local_path": "/srv/x\x00/y"}])
def test_bad_names_and_repos_are_refused_before_anything_is_read(requester, fields, settings):
    settings.HF_ENDPOINT = "http://127.0.0.1:9"  # nothing listens: a Hub call would be a 400 for another reason
    response = register(requester, **fields)
    assert_json_4xx(response, 400)
    assert "cannot read" not in response.json()["error"]


def test_an_absolute_imatrix_outside_the_roots_is_refused_even_with_its_hash(requester, storage, released):
    response = requester.post("/api/quantizations/", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M",
                                                      "imatrix": "/etc/passwd", "imatrix_sha256": "0" * 64},
                              format="json")
    assert_json_4xx(response, 400)
    assert "imatrix" in response.json()["error"]


def test_an_oversized_body_is_a_413_json_error(requester, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"name": "big", "family": "x", "config": {"pad": "x" * 20_000}})
    response = requester.post("/api/checkpoints/", body, content_type="application/json")
    assert_json_4xx(response, 413)
    assert "limit" in response.json()["error"] and not Checkpoint.objects.filter(name="big").exists()


def test_a_body_just_under_the_limit_is_parsed(requester, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = requester.post("/api/checkpoints/", {"name": "small", "family": "x", "config": {"pad": "x"}},
                              format="json")
    assert response.status_code == 400 and "unsupported model" in response.json()["error"]  # parsed, judged


def test_a_file_upload_is_refused_and_nothing_is_written(requester, storage):
    upload = io.BytesIO(b"GGUF" * 100)
    upload.name = "../../evil.gguf"
    response = requester.post("/api/checkpoints/", {"name": "up", "family": "x", "config": upload},
                              format="multipart")
    assert_json_4xx(response, 400)
    assert "no file uploads" in response.json()["error"]
    assert not list(storage.rglob("*")) and not (storage.parent / "evil.gguf").exists()


def write_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(m.upper(), p) for p, item in schema["paths"].items() for m in item if m in ("post", "put", "patch")]


@pytest.mark.parametrize("body", ['{"variant": ', "[1, 2", "\x00\xff", "null", '"just a string"', "[" * 50_000,
                                  '{"variant": 1e999}', '{"variant": 100000000000000000000000}',
                                  '{"release": {"$gt": 0}}'])
def test_malformed_json_on_every_write_is_never_a_500(admin, released, body):
    """Endpoints that read a body answer 400; a few (publish, cancel, retry) ignore it and answer as usual."""
    refused = 0
    for method, template in write_operations():
        url = template.replace("{id}", str(released.pk)).replace("{name}", "deepseek-r1")
        response = getattr(admin, method.lower())(url, body, content_type="application/json")
        assert response.status_code < 500, (method, url, response.status_code, response.content[:200])
        assert response["Content-Type"] == "application/json", (method, url)
        refused += response.status_code == 400
    assert refused >= 5  # checkpoints, quantizations, releases, tags, approve, move…


def test_deeply_nested_json_is_a_400_not_a_crash(admin):
    response = admin.post("/api/checkpoints/", "[" * 100_000, content_type="application/json")
    assert_json_4xx(response, 400)
    assert "nested" in response.json()["error"]
