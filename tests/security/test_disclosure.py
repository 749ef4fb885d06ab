"""What each persona reads: server paths, tracebacks and internal addresses stay with those who need them.

| field / message                         | anonymous | teammate | job's requester | approver |
|-----------------------------------------|-----------|----------|-----------------|----------|
| job error, log_tail                     | null      | null     | yes             | yes      |
| checkpoint local_path                   | null      | null     | null            | yes      |
| DSQ_IMPORT_ROOTS in a 400               | –         | no       | no              | no       |
| HF_ENDPOINT in a 400 or a pull manifest | no        | no       | no              | no       |

Withheld fields stay in the response as null, so every reader gets the same shape.
"""
from __future__ import annotations

import pytest

from registry import jobs
from registry.models import BenchmarkJob, Checkpoint, QuantizationJob
from tests import factories

pytestmark = pytest.mark.django_db
SECRET_ERROR = "yaml.scanner.ScannerError: root:x:0:0:root:/root:/bin/bash"
SECRET_TRACE = 'Traceback (most recent call last):\n  File "/srv/dsq/workers/handlers.py", line 1'


@pytest.fixture
def failed_jobs(requester):
    """A failed quantization and a failed benchmark of rita's, with a traceback in their log."""
    quantize = factories.quantization_job(requested_by=requester.user)
    bench = BenchmarkJob.objects.create(variant=factories.variant(quantize.checkpoint, quantize.recipe),
                                        suite="quality", request_key="b", requested_by=requester.user)
    for model, job in ((QuantizationJob, quantize), (BenchmarkJob, bench)):
        model.objects.filter(pk=job.pk).update(state="failed", error=SECRET_ERROR, log_tail=SECRET_TRACE)
    return {"quantize": quantize, "benchmark": bench}


@pytest.mark.parametrize("persona,sees", [("anonymous", False), ("teammate", False), ("requester", True),
                                          ("approver", True)])
@pytest.mark.parametrize("kind", ["quantize", "benchmark"])
def test_job_errors_and_logs_only_for_the_requester_and_approvers(request, failed_jobs, persona, sees, kind):
    client = request.getfixturevalue(persona)
    job = failed_jobs[kind]
    detail = client.get(f"/api/jobs/{kind}/{job.pk}/").json()
    listed = client.get(f"/api/jobs/{kind}/").json()["results"][0]
    for body in (detail, listed):
        assert body["state"] == "failed" and "error" in body and "log_tail" in body
        assert (body["error"], body["log_tail"]) == ((SECRET_ERROR, SECRET_TRACE) if sees else (None, None))


def test_a_job_answered_to_another_requester_hides_its_error(teammate, requester):
    """POST /api/quantizations/ answers the live job of the same inputs, whoever asked for it first."""
    factories.deepseek_checkpoint()
    factories.builtin_recipe("DQ3_K_M")
    body = {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M"}
    first = requester.post("/api/quantizations/", body, format="json").json()["job"]
    QuantizationJob.objects.filter(pk=first["id"]).update(error=SECRET_ERROR)
    again = teammate.post("/api/quantizations/", body, format="json").json()["job"]
    assert again["id"] == first["id"] and again["error"] is None


@pytest.mark.parametrize("persona,sees", [("anonymous", False), ("teammate", False), ("requester", False),
                                          ("approver", True)])
def test_checkpoint_local_paths_only_for_approvers(request, persona, sees):
    factories.checkpoint("tiny-v3", local_path="/srv/models/tiny-v3")
    client = request.getfixturevalue(persona)
    for body in (client.get("/api/checkpoints/tiny-v3/").json(), client.get("/api/checkpoints/").json()["results"][0]):
        assert body["local_path"] == ("/srv/models/tiny-v3" if sees else None)


def test_a_path_outside_the_import_roots_is_refused_without_naming_the_roots(requester, storage, settings, tmp_path):
    settings.DSQ_IMPORT_ROOTS = [tmp_path / "imports"]
    response = requester.post("/api/checkpoints/", {"name": "x", "family": "x", "local_path": "/etc"}, format="json")
    assert response.status_code == 400 and "DSQ_IMPORT_ROOTS" in response.json()["error"]
    assert str(storage) not in response.json()["error"] and str(tmp_path) not in response.json()["error"]


def test_a_hub_error_does_not_name_the_internal_endpoint(requester, settings):
    from dsq.localhub import HubServer

    with HubServer() as hub:  # an internal Hub mirror nobody outside should learn about
        settings.HF_ENDPOINT = hub.url
        response = requester.post("/api/checkpoints/", {"name": "x", "family": "x", "hf_repo": "owner/model"},
                                  format="json")
    assert response.status_code == 400 and "cannot read config.json of owner/model" in response.json()["error"]
    assert "<hub>/api/models/owner/model" in response.json()["error"]  # the Hub's answer, its address left out
    assert "127.0.0.1" not in response.content.decode()


@pytest.fixture
def published(released):
    released.mark_published("dsq/DeepSeek-R1-GGUF", "c0ffee" * 6 + "abcd", "DQ3_K_M-v1")
    return released


def test_an_internal_hub_endpoint_is_not_handed_out_in_pull_manifests(anonymous, published, settings):
    settings.HF_ENDPOINT, settings.DSQ_HUB_PUBLIC_URL = "http://hub.internal:8080", ""
    response = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v1")
    assert response.status_code == 200 and "hub.internal" not in response.content.decode()
    body = response.json()
    assert body["source"] == "registry" and body["hub"]["commit"] == "c0ffee" * 6 + "abcd"
    assert anonymous.get(body["files"][0]["url"]).status_code == 200  # and the URL given works for anyone


def test_a_public_hub_address_can_stand_for_the_internal_one(anonymous, published, settings):
    settings.HF_ENDPOINT, settings.DSQ_HUB_PUBLIC_URL = "http://hub.internal:8080", "https://hub.example/"
    body = anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v1").json()
    assert body["source"] == "hub"
    assert body["files"][0]["url"].startswith("https://hub.example/dsq/DeepSeek-R1-GGUF/resolve/")
