"""/metrics after real job rows, host records and queued messages (the shapes the workers write)."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from registry import jobs
from registry.models import QuantizationJob, Release
from tests import factories

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]



def finished_job(ckpt, recipe, seconds: float, worker: str = "gpu-node-1") -> QuantizationJob:
    job = jobs.claim(QuantizationJob, factories.quantization_job(ckpt, recipe).pk, worker)
    jobs.succeed(job)
    start = timezone.now() - dt.timedelta(hours=1)
    QuantizationJob.objects.filter(pk=job.pk).update(started_at=start, finished_at=start + dt.timedelta(seconds=seconds))
    return job


def test_it_counts_jobs_by_kind_and_state_and_times_the_finished_ones(client, broker):
    ckpt = factories.checkpoint("tiny-v3", parameter_count=14_000_000)
    finished_job(ckpt, factories.recipe("Q4_K_M"), 70)
    finished_job(ckpt, factories.recipe("Q8_0"), 140)
    running = jobs.claim(QuantizationJob, factories.quantization_job(ckpt, factories.recipe("Q2_K")).pk, "w")
    factories.quantization_job(ckpt, factories.recipe("Q3_K_M"))
    samples = scrape(client)

    assert value(samples, "dsq_jobs", kind="quantize", state="succeeded") == 2
    assert value(samples, "dsq_jobs", kind="quantize", state="running") == 1
    assert value(samples, "dsq_jobs", kind="quantize", state="queued") == 1
    assert value(samples, "dsq_jobs", kind="benchmark", state="queued") == 0
    assert value(samples, "dsq_job_duration_seconds_count", kind="quantize", state="succeeded") == 2
    assert value(samples, "dsq_job_duration_seconds_sum", kind="quantize", state="succeeded") == 210
    assert value(samples, "dsq_job_duration_seconds_bucket", kind="quantize", state="succeeded", le="60.0") == 0
    assert value(samples, "dsq_job_duration_seconds_bucket", kind="quantize", state="succeeded", le="300.0") == 2
    assert value(samples, "dsq_quantize_weights_per_second", type="Q4_K_M", queue="gpu") == 200_000
    assert value(samples, "dsq_quantize_weights_per_second", type="Q8_0", queue="gpu") == 100_000
    assert value(samples, "dsq_jobs_stuck", kind="quantize") == 0
    QuantizationJob.objects.filter(pk=running.pk).update(heartbeat_at=timezone.now() - dt.timedelta(hours=1))
    assert value(scrape(client), "dsq_jobs_stuck", kind="quantize") == 1


def test_it_reports_queue_depths_heartbeats_and_gpu_memory_from_redis(client, broker):
    from dsq.celery import app

    for job_id in (1, 2, 3):
        app.send_task("dsq.quantize", args=[job_id], queue="gpu")
    app.send_task("dsq.publish", args=[1], queue="publish")
    record = {"device": "cuda:0", "gpu_free_bytes": 30 * 2**30, "gpu_total_bytes": 80 * 2**30,
              "disk_free_bytes": 2**40, "storage_root": "/data/storage", "updated_at": time.time() - 5,
              "worker": "gpu-node-1:17", "queues": ["gpu"]}
    broker.set("dsq:host:gpu-node-1:17", json.dumps(record), ex=90)
    samples = scrape(client)

    assert value(samples, "dsq_broker_up") == 1
    assert value(samples, "dsq_queue_depth", queue="gpu") == 3
    assert value(samples, "dsq_queue_depth", queue="publish") == 1
    assert value(samples, "dsq_queue_depth", queue="cpu") == 0
    assert 5 <= value(samples, "dsq_worker_heartbeat_age_seconds", worker="gpu-node-1:17", device="cuda:0") < 30
    assert value(samples, "dsq_gpu_memory_free_bytes", worker="gpu-node-1:17", device="cuda:0") == 30 * 2**30
    assert value(samples, "dsq_gpu_memory_used_bytes", worker="gpu-node-1:17", device="cuda:0") == 50 * 2**30


def test_without_redis_it_still_answers_from_the_database(client, settings):
    from dsq.localservices import free_port

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    samples = scrape(client)
    assert value(samples, "dsq_broker_up") == 0 and value(samples, "dsq_jobs", kind="quantize", state="queued") == 0


def test_it_counts_approved_releases_that_never_reached_the_hub(client, broker, settings):
    rita, alice = User.objects.create_user("rita"), User.objects.create_user("alice")
    variant = factories.variant(factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M"))
    Release.objects.create(variant=variant, version=1, state=Release.State.APPROVED, requested_by=rita,
                           decided_by=alice, decided_at=timezone.now() - dt.timedelta(hours=2))
    Release.objects.create(variant=variant, version=2, state=Release.State.APPROVED, requested_by=rita,
                           decided_by=alice, decided_at=timezone.now())  # its publish may still be under way
    settings.DSQ_REQUEUE_SECONDS = 600
    assert value(scrape(client), "dsq_publish_failures") == 1


def test_request_latency_is_labelled_by_route_pattern_not_path(client, broker):
    job = factories.quantization_job()
    client.get(f"/api/jobs/quantize/{job.pk}/")
    client.get("/api/jobs/quantize/999999/")
    routes = {dict(labels)["route"] for name, labels in scrape(client) if name == "dsq_http_request_duration_seconds_count"}
    assert not any(str(job.pk) in r or "999999" in r for r in routes), routes
    assert any(r.startswith("/api/jobs/quantize/") for r in routes), routes


def test_with_a_multiprocess_directory_request_latency_is_merged_across_processes(tmp_path):
    """What gunicorn's workers do in compose: each process records, any one of them answers the sum."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "dsq.settings"}
    setup = "import django; django.setup(); from django.test import Client; "
    for _ in range(2):
        subprocess.run([sys.executable, "-c", setup + "assert Client().get('/healthz').status_code == 200"],
                       env=env, check=True, timeout=120)
    code = setup + ("from registry.metrics import metrics_view; from django.test import RequestFactory; "
                    "print(metrics_view(RequestFactory().get('/metrics')).content.decode())")
    text = subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True,
                          text=True).stdout
    assert 'dsq_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 2.0' in text


@pytest.mark.django_db(transaction=True)
def test_while_postgres_is_down_it_still_answers_and_says_so(client, broker, postgres_server):
    from tests.registry.test_health import postgres_stopped

    with postgres_stopped(postgres_server):
        samples = scrape(client)
    assert value(samples, "dsq_database_up") == 0 and value(samples, "dsq_broker_up") == 1
    assert not any(name == "dsq_jobs" for name, _ in samples)
    assert value(scrape(client), "dsq_database_up") == 1
