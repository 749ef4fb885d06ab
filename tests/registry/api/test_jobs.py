"""Jobs: list and detail with live progress; cancel and retry by the requester, an approver or staff."""
from __future__ import annotations

import pytest

from registry import jobs
from registry.models import JobState, QuantizationJob
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(requester):
    return factories.quantization_job(requested_by=requester.user)


def test_it_shows_live_progress(anonymous, job):
    running = jobs.claim(QuantizationJob, job.pk, "gpu-1")
    jobs.heartbeat(running, progress=0.42, step="blk.7.ffn_down_exps", eta_seconds=600)
    body = anonymous.get(f"/api/jobs/quantize/{job.pk}/").json()
    assert (body["state"], body["progress"], body["step"], body["eta_seconds"], body["worker"]) == (
        "running", 0.42, "blk.7.ffn_down_exps", 600, "gpu-1")
    listed = anonymous.get("/api/jobs/quantize/?state=running").json()
    assert [j["id"] for j in listed["results"]] == [job.pk]


def test_the_requester_cancels_a_queued_job(requester, job):
    response = requester.post(f"/api/jobs/quantize/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"


def test_an_approver_cancels_a_running_job_at_its_next_heartbeat(approver, job):
    jobs.claim(QuantizationJob, job.pk, "gpu-1")
    response = approver.post(f"/api/jobs/quantize/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    assert response.json()["state"] == "running"


def test_the_requester_cancels_a_split_job_and_its_shards(requester, job):
    from registry import shards
    from registry.models import ShardJob

    waiting = jobs.claim(QuantizationJob, job.pk, "gpu-1")
    first, second = shards.split(waiting, [("m-00001-of-00002.gguf", 10), ("m-00002-of-00002.gguf", 20)], "k" * 64)
    jobs.claim(ShardJob, first.pk, "gpu-2")
    body = requester.post(f"/api/jobs/quantize/{job.pk}/cancel/").json()
    assert body["state"] == "cancelled"
    assert [(s["state"], s["worker"]) for s in body["shards"]] == [("running", "gpu-2"), ("cancelled", "")]
    assert ShardJob.objects.get(pk=first.pk).cancel_requested  # stops at its next heartbeat


def test_a_teammate_cannot_cancel_someone_elses_job(teammate, job):
    response = teammate.post(f"/api/jobs/quantize/{job.pk}/cancel/")
    assert response.status_code == 403 and "requester" in response.json()["error"]
    assert QuantizationJob.objects.get(pk=job.pk).state == JobState.QUEUED


def test_anonymous_cannot_cancel(anonymous, job):
    assert anonymous.post(f"/api/jobs/quantize/{job.pk}/cancel/").status_code == 401


def test_cancelling_a_finished_job_is_a_conflict(requester, job):
    QuantizationJob.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    response = requester.post(f"/api/jobs/quantize/{job.pk}/cancel/")
    assert response.status_code == 409 and "succeeded" in response.json()["error"]


def test_retry_requeues_a_failed_job_and_enqueues_it(admin, job, django_capture_on_commit_callbacks):
    QuantizationJob.objects.filter(pk=job.pk).update(state=JobState.FAILED, error="boom", attempts=3)
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin.post(f"/api/jobs/quantize/{job.pk}/retry/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["attempts"], response.json()["error"]) == ("queued", 0, "")
    assert len(callbacks) == 1


def test_retrying_a_queued_job_is_a_conflict(requester, job):
    response = requester.post(f"/api/jobs/quantize/{job.pk}/retry/")
    assert response.status_code == 409 and "only failed or cancelled" in response.json()["error"]


def test_benchmark_jobs_have_the_same_actions(requester):
    v = factories.variant()
    from registry.models import BenchmarkJob

    bench = BenchmarkJob.objects.create(variant=v, request_key="b" * 64, requested_by=requester.user)
    response = requester.post(f"/api/jobs/benchmark/{bench.pk}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
