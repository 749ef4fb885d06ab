"""GET /api/pull/<model>:<quant>@<tag>: exact files, URLs and commands."""
from __future__ import annotations

import hashlib

import pytest

from registry.models import Release
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db
SHARDS = {"DeepSeek-R1-DQ3_K_M-00001-of-00002.gguf": b"GGUF" + b"a" * 60,
          "DeepSeek-R1-DQ3_K_M-00002-of-00002.gguf": b"b" * 40}


@pytest.fixture
def approved(requester, storage):
    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"), storage=storage,
                          files=SHARDS, bits_per_weight=3.59)
    release = factories.release(v, by=requester.user)
    release.approve(make_approver("alice"))
    return release


def test_it_resolves_a_tag_to_files_on_the_registry(anonymous, approved):
    response = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v1")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["release"] == {"id": approved.pk, "version": "v1", "state": "approved"}
    assert body["source"] == "registry" and body["total_bytes"] == 104
    first = body["files"][0]
    assert first["name"] == "DeepSeek-R1-DQ3_K_M-00001-of-00002.gguf" and first["size"] == 64
    assert first["sha256"] == hashlib.sha256(SHARDS[first["name"]]).hexdigest()
    assert first["url"] == f"http://testserver/api/files/{approved.variant.pk}/{first['name']}"
    assert body["commands"]["llama_server"].startswith("llama-server -m DeepSeek-R1-DQ3_K_M-00001-of-00002.gguf")
    assert "ollama" not in body["commands"]
    assert anonymous.get(first["url"]).status_code == 200  # the URL really serves the file


def test_the_tag_defaults_to_latest(anonymous, approved):
    assert anonymous.get("/api/pull/deepseek-r1:DQ3_K_M").json()["tag"] == "latest"


def test_a_published_release_resolves_to_the_hub_pinned_to_its_commit(anonymous, approved, settings):
    settings.HF_ENDPOINT = "https://hub.example"
    approved.mark_published("dsq/DeepSeek-R1-GGUF", "c0ffee" * 6 + "abcd", "DQ3_K_M-v1")
    body = anonymous.get("/api/pull/deepseek-r1:dq3_k_m@latest").json()
    assert body["source"] == "hub" and body["hub"]["commit"] == "c0ffee" * 6 + "abcd"
    assert body["files"][0]["url"] == ("https://hub.example/dsq/DeepSeek-R1-GGUF/resolve/" + "c0ffee" * 6 + "abcd/"
                                       "dynamic/DQ3_K_M/DeepSeek-R1-DQ3_K_M-00001-of-00002.gguf")
    assert body["commands"]["llama_cli_hub"] == "llama-cli -hf dsq/DeepSeek-R1-GGUF:DQ3_K_M"
    assert body["commands"]["ollama"] == "ollama run hf.co/dsq/DeepSeek-R1-GGUF:DQ3_K_M"


def test_a_release_keeps_the_folder_it_was_published_to(anonymous, approved, settings):
    """A release published before the `dynamic/` layout (migration 0008 records `<QUANT>`) still pulls."""
    settings.HF_ENDPOINT = "https://hub.example"
    approved.mark_published("dsq/DeepSeek-R1-GGUF", "c0ffee" * 6 + "abcd", "DQ3_K_M-v1", hub_folder="DQ3_K_M")
    body = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M").json()
    assert body["files"][0]["url"].endswith("abcd/DQ3_K_M/DeepSeek-R1-DQ3_K_M-00001-of-00002.gguf")


def test_unknown_tags_and_bad_refs_are_json_errors(anonymous, approved):
    missing = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@stable")
    assert missing.status_code == 404 and "no tag deepseek-r1:DQ3_K_M@stable" in missing.json()["error"]
    bad = anonymous.get("/api/pull/not-a-ref")
    assert bad.status_code == 400 and "<model>:<quant>" in bad.json()["error"]


def test_a_candidate_cannot_be_pulled(anonymous, requester, approved):
    factories.release(approved.variant, by=requester.user)
    assert anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v2").status_code == 404
    assert Release.objects.filter(state="candidate").count() == 1


@pytest.mark.django_db(transaction=True)
def test_dsq_pull_downloads_and_verifies_through_the_file_endpoint(live_server, storage, tmp_path, celery_broker):
    """The client (dsq.pull) against this API and file endpoint, end to end over HTTP."""
    from dsq.pull import pull

    from django.contrib.auth.models import User

    v = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"), storage=storage,
                          files=SHARDS)
    factories.release(v, by=User.objects.create_user("rita")).approve(make_approver("alice"))
    result = pull("deepseek-r1:DQ3_K_M@v1", str(tmp_path / "out"), live_server.url, None, show_progress=False)
    got = {p.name if hasattr(p, "name") else str(p).rsplit("/", 1)[-1] for p in result.files}
    assert got == set(SHARDS)
    for name, data in SHARDS.items():
        assert (tmp_path / "out" / name).read_bytes() == data
