"""POST /api/quantizations/: creates a job once, then answers with it (or with the ready variant)."""
from __future__ import annotations

import hashlib
import threading

import pytest
from django.db import connection

from registry.models import AuditLog, JobState, QuantizationJob
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/quantizations/"


@pytest.fixture
def inputs():
    factories.deepseek_checkpoint()
    factories.builtin_recipe("DQ3_K_M")
    return {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "benchmark_suites": ["smoke"]}


def test_it_creates_a_job_and_enqueues_it_after_commit(requester, inputs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = requester.post(URL, inputs, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    job = QuantizationJob.objects.get(pk=body["job"]["id"])
    assert body["created"] is True and job.state == JobState.QUEUED
    assert job.requested_by == requester.user and job.benchmark_suites == ["smoke"]
    assert len(callbacks) == 1  # the Celery trigger waits for the row to be committed
    assert AuditLog.objects.filter(action="quantization.request", object_id=str(job.pk)).exists()


def test_it_returns_the_live_job_for_the_same_inputs(requester, teammate, inputs):
    first = requester.post(URL, inputs, format="json").json()
    again = teammate.post(URL, inputs, format="json")
    assert again.status_code == 200
    assert again.json()["created"] is False and again.json()["job"]["id"] == first["job"]["id"]
    assert QuantizationJob.objects.count() == 1


def test_it_queues_a_new_job_once_the_old_one_failed(requester, inputs):
    first = requester.post(URL, inputs, format="json").json()["job"]["id"]
    QuantizationJob.objects.filter(pk=first).update(state=JobState.FAILED)
    response = requester.post(URL, inputs, format="json")
    assert response.status_code == 201 and response.json()["job"]["id"] != first


def test_it_returns_the_ready_variant_instead_of_rebuilding_it(requester, inputs):
    from registry.models import Checkpoint, Recipe

    variant = factories.variant(Checkpoint.objects.get(name="deepseek-r1"), Recipe.objects.get(name="DQ3_K_M"))
    response = requester.post(URL, inputs, format="json")
    assert response.status_code == 200
    assert response.json()["variant"]["id"] == variant.pk and response.json()["job"] is None
    assert not QuantizationJob.objects.exists()


def test_it_treats_a_different_imatrix_as_different_inputs(requester, inputs, storage):
    (storage / "imatrix.dat").write_bytes(b"importance")
    plain = requester.post(URL, inputs, format="json").json()
    with_imatrix = requester.post(URL, dict(inputs, imatrix="imatrix.dat"), format="json")
    assert with_imatrix.status_code == 201
    assert with_imatrix.json()["job"]["imatrix_sha256"] == hashlib.sha256(b"importance").hexdigest()
    assert with_imatrix.json()["job"]["id"] != plain["job"]["id"]


def test_it_refuses_an_imatrix_outside_the_storage_root(requester, inputs, storage):
    response = requester.post(URL, dict(inputs, imatrix="../../etc/passwd"), format="json")
    assert response.status_code == 400 and "imatrix" in response.json()["error"]


def test_it_explains_an_unknown_recipe_or_checkpoint(requester, inputs):
    response = requester.post(URL, dict(inputs, recipe="Q1_FANTASY"), format="json")
    assert response.status_code == 400 and "unknown recipe 'Q1_FANTASY'" in response.json()["error"]
    response = requester.post(URL, dict(inputs, checkpoint="gpt-5"), format="json")
    assert response.status_code == 400 and response.json()["error"].startswith("checkpoint:")


def test_it_requires_a_login(anonymous, inputs):
    response = anonymous.post(URL, inputs, format="json")
    assert response.status_code == 401 and "credentials" in response.json()["error"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_requests_make_one_job_and_one_message(requester, inputs, celery_broker):
    """The race the partial unique index settles: every request gets the winner's job."""
    barrier, answers = threading.Barrier(6), []

    def ask():
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(**requester._credentials)
        barrier.wait()
        try:
            answers.append(client.post(URL, inputs, format="json"))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers).count(201) == 1
    assert {r.json()["job"]["id"] for r in answers} == {QuantizationJob.objects.get().pk}
    assert celery_broker.llen("gpu") == 1


@pytest.mark.parametrize("suite", ["/etc/passwd", "../../etc/passwd.yaml", "smoke.yaml", "SMOKE", "no-such-suite"])
def test_a_suite_that_is_not_a_known_name_is_refused_and_nothing_is_queued(
        requester, inputs, suite, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = requester.post(URL, dict(inputs, benchmark_suites=["quality", suite]), format="json")
    assert response.status_code == 400
    assert "known suites: quality, deepseek-paper, smoke" in response.json()["error"]
    assert response.json()["fields"].keys() == {"benchmark_suites"}
    assert not QuantizationJob.objects.exists() and not callbacks


def test_an_unknown_suite_for_a_ready_variant_queues_no_benchmark(requester, inputs):
    from registry.models import BenchmarkJob, Checkpoint, Recipe

    factories.variant(Checkpoint.objects.get(name="deepseek-r1"), Recipe.objects.get(name="DQ3_K_M"))
    response = requester.post(URL, dict(inputs, benchmark_suites=["/etc/passwd"]), format="json")
    assert response.status_code == 400 and not BenchmarkJob.objects.exists()
