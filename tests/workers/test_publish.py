"""Publishing to a Hub look-alike through the real huggingface_hub client over HTTP."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest
from django.core import serializers

from registry.models import AuditLog, Release
from tests.workers.conftest import HUB_TOKEN
from workers import publish

pytestmark = pytest.mark.django_db

REPO = "dsq-test/deepseek-r1-GGUF"


def test_it_publishes_an_approved_release_as_one_commit_and_a_tag(hub, make_release):
    release = make_release("DQ3_K_M", version=2)
    result = publish.publish_release(release.pk)

    assert result.uploaded and result.repo_id == REPO and result.tag == "DQ3_K_M-v2"
    repo = hub.repos[REPO]
    assert repo.tags["DQ3_K_M-v2"] == result.commit == repo.branches["main"]
    assert len(repo.commits) == 2  # the repo's initial commit and the release's one commit
    for f in release.variant.files.all():
        data = hub.file_bytes(REPO, "DQ3_K_M-v2", f"dynamic/DQ3_K_M/{f.name}")
        assert data is not None and hashlib.sha256(data).hexdigest() == f.sha256
    release.refresh_from_db()
    assert (release.state, release.hub_repo, release.hub_commit, release.hub_tag) == (
        Release.State.PUBLISHED, REPO, result.commit, "DQ3_K_M-v2")
    assert AuditLog.objects.filter(action="release.published", object_id=str(release.pk)).count() == 1


def test_the_model_card_carries_hub_metadata_and_the_quant(hub, make_release):
    release = make_release("DQ3_K_M", version=1)
    publish.publish_release(release.pk)
    card = hub.file_bytes(REPO, "main", "README.md").decode()
    header = card.split("---")[1]
    for line in ("base_model: deepseek-ai/DeepSeek-R1", "base_model_relation: quantized",
                 "library_name: gguf", "quantized_by: dsq"):
        assert line in header
    assert "## DQ3_K_M" in card and "Bits per weight: 3.520" in card
    assert "| Perplexity | 6.02 ± 0.11 | 6.31 ± 0.12 | PPL ratio 1.0482 (+4.82 %) |" in card
    assert json.dumps(release.variant.recipe.definition, indent=2, sort_keys=True) in card  # the recipe, as stored


def test_a_second_quant_keeps_the_first_in_the_card(hub, make_release):
    first = make_release("DQ3_K_M", version=1)
    publish.publish_release(first.pk)
    second = make_release("DQ2_K", version=1, checkpoint=first.variant.checkpoint)
    result = publish.publish_release(second.pk)
    card = hub.file_bytes(REPO, result.commit, "README.md").decode()
    assert "## DQ3_K_M" in card and "## DQ2_K" in card
    assert hub.file_bytes(REPO, "DQ2_K-v1", f"dynamic/DQ3_K_M/{first.variant.files.first().name}") is not None


def test_publishing_twice_publishes_nothing_new(hub, make_release):
    release = make_release()
    first = publish.publish_release(release.pk)
    commits_before, requests_before = len(hub.repos[REPO].commits), len(hub.requests)
    # Even with the row reset to approved (a lost DB write), the Hub tag is found and reused.
    Release.objects.filter(pk=release.pk).update(state=Release.State.APPROVED, hub_commit="")
    again = publish.publish_release(release.pk)
    assert not again.uploaded and again.commit == first.commit
    assert len(hub.repos[REPO].commits) == commits_before
    assert [p for m, p, _ in hub.requests[requests_before:] if m != "GET"] == ["/api/repos/create"]


def test_a_commit_that_landed_without_its_tag_is_not_committed_again(hub, make_release):
    release = make_release()
    hub.fail("POST", "/tag/", times=99, status=400)
    with pytest.raises(Exception):
        publish.publish_release(release.pk)
    landed = hub.head(REPO)
    hub.faults.clear()
    result = publish.publish_release(release.pk)
    assert not result.uploaded and result.commit == landed and hub.repos[REPO].tags["DQ3_K_M-v1"] == landed


def test_transient_errors_mid_publish_are_retried(hub, make_release):
    release = make_release()
    hub.fail("POST", "/preupload/", times=1, status=503)
    hub.fail("PUT", "/lfs-upload/", times=1, status=502)
    hub.fail("POST", "/commit/", times=2, status=503)
    hub.fail("POST", "/tag/", times=1, status=500)
    result = publish.publish_release(release.pk)
    assert result.uploaded and hub.repos[REPO].tags["DQ3_K_M-v1"] == result.commit
    assert sum(1 for m, p, _ in hub.requests if m == "POST" and "/commit/" in p) == 3
    assert len(hub.repos[REPO].commits) == 2  # initial + exactly one release commit


def test_a_commit_whose_response_was_lost_is_not_sent_again(hub, make_release):
    release = make_release()
    hub.lose_commit_responses = 1
    result = publish.publish_release(release.pk)
    assert sum(1 for m, p, _ in hub.requests if m == "POST" and "/commit/" in p) == 1
    assert len(hub.repos[REPO].commits) == 2 and hub.repos[REPO].tags["DQ3_K_M-v1"] == result.commit


def test_a_failed_publish_leaves_nothing_half_published(hub, make_release):
    release = make_release()
    hub.fail("POST", "/commit/", times=99, status=503)
    with pytest.raises(Exception):
        publish.publish_release(release.pk)
    repo = hub.repos[REPO]
    assert len(repo.commits) == 1 and not repo.tags  # LFS blobs may be uploaded; no file is visible
    assert hub.file_bytes(REPO, "main", f"dynamic/DQ3_K_M/{release.variant.files.first().name}") is None
    release.refresh_from_db()
    assert release.state == Release.State.APPROVED and release.hub_commit == ""


def test_it_refuses_a_release_that_is_not_approved(hub, make_release):
    release = make_release(state=Release.State.CANDIDATE)
    with pytest.raises(publish.PublishError):
        publish.publish_release(release.pk)
    assert REPO not in hub.repos


def test_the_token_never_reaches_logs_card_or_database(hub, make_release, caplog):
    caplog.set_level(logging.DEBUG)
    release = make_release()
    hub.fail("POST", "/commit/", times=1, status=503)
    publish.publish_release(release.pk)
    assert {h.get("authorization") for m, _, h in hub.requests if m == "POST"} == {f"Bearer {HUB_TOKEN}"}
    assert HUB_TOKEN not in caplog.text
    assert HUB_TOKEN not in hub.file_bytes(REPO, "main", "README.md").decode()
    dump = serializers.serialize("json", [*Release.objects.all(), *AuditLog.objects.all()])
    assert HUB_TOKEN not in dump and HUB_TOKEN not in json.dumps(list(Release.objects.values()), default=str)


def test_published_files_resolve_by_tag_with_the_client(hub, make_release, tmp_path):
    from huggingface_hub import hf_hub_download

    release = make_release()
    result = publish.publish_release(release.pk)
    f = release.variant.files.first()
    path = hf_hub_download(REPO, f"dynamic/DQ3_K_M/{f.name}", revision=result.tag, endpoint=hub.url,
                           token=HUB_TOKEN, cache_dir=tmp_path / "cache")
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == f.sha256


def test_it_lays_out_quants_so_llama_cpp_finds_each_ones_own_file(hub, make_release):
    from huggingface_hub import HfApi

    first = make_release("Q3_K_M", shards=1)
    publish.publish_release(first.pk)
    second = make_release("DQ3_K_M", checkpoint=first.variant.checkpoint)
    publish.publish_release(second.pk)
    files = HfApi(endpoint=hub.url, token=False).list_repo_files(REPO)
    assert files == ["Q3_K_M/deepseek-r1-Q3_K_M-00001-of-00001.gguf", "README.md",
                     "dynamic/DQ3_K_M/deepseek-r1-DQ3_K_M-00001-of-00002.gguf",
                     "dynamic/DQ3_K_M/deepseek-r1-DQ3_K_M-00002-of-00002.gguf"]


def test_a_release_that_would_send_llama_cpp_to_another_quants_file_is_refused(hub, make_release):
    f16 = make_release("F16", shards=1)
    publish.publish_release(f16.pk)
    head = hub.head(REPO)
    bf16 = make_release("BF16", shards=1, checkpoint=f16.variant.checkpoint)
    with pytest.raises(publish.PublishError, match=r"`llama-server -hf REPO:F16` would load BF16/"):
        publish.publish_release(bf16.pk)
    assert hub.head(REPO) == head  # nothing committed
    bf16.refresh_from_db()
    assert bf16.state == Release.State.APPROVED
