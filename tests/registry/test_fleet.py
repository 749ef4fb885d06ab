"""The fleet page's server side: hosts from Redis records, jobs from rows, stuck and waiting jobs."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.utils import timezone

from registry import jobs
from registry.models import QuantizationJob
from tests import factories

pytestmark = pytest.mark.django_db



def advertise(client, worker: str, device: str = "cpu", free: "int | None" = None, total: "int | None" = None,
              queues: "list[str] | None" = None) -> None:
    """The record workers/hosts.py writes."""
    record = {"device": device, "gpu_free_bytes": free, "gpu_total_bytes": total, "disk_free_bytes": 500 * 2**30,
              "storage_root": "/data/storage", "updated_at": time.time() - 3, "worker": worker,
              "queues": queues or ["cpu"]}
    client.set(f"dsq:host:{worker}", json.dumps(record), ex=90)


def row_of(page: str, marker: str) -> str:
    start = page.index(marker)
    return page[start:page.index("</tr>", start)]


def test_it_shows_each_gpu_with_its_memory_and_the_job_it_holds(client, broker):
    advertise(broker, "gpu-node-1:7", "cuda:0", free=20 * 2**30, total=80 * 2**30, queues=["gpu"])
    advertise(broker, "gpu-node-2:9", "cuda:0", free=80 * 2**30, total=80 * 2**30, queues=["gpu"])
    advertise(broker, "cpu-node-1:3", queues=["cpu", "publish"])
    job = jobs.claim(QuantizationJob, factories.quantization_job(factories.checkpoint("deepseek-v3"),
                                                                  factories.recipe("Q5_K_M")).pk, "gpu-node-1:7")
    jobs.heartbeat(job, progress=0.42, step="blk.17.ffn_down_exps")
    page = client.get("/fleet/").content.decode()

    busy = row_of(page, 'data-worker="gpu-node-1:7"')
    assert "cuda:0" in busy and f"#{job.pk} blk.17.ffn_down_exps (42%)" in busy and "60.0\xa0GB" in busy
    assert "idle" in row_of(page, 'data-worker="gpu-node-2:9"')
    assert "cpu, publish" in row_of(page, 'data-worker="cpu-node-1:3"')
    assert 'class="stuck"' not in page


def test_it_names_the_oldest_waiting_job_and_why_it_waits(client, broker):
    ckpt = factories.checkpoint("deepseek-r1")
    old = factories.quantization_job(ckpt, factories.recipe("Q8_0"),
                                     step="needs 700.0 GiB disk, 120.0 GiB free",
                                     created_at=timezone.now() - dt.timedelta(hours=3))
    factories.quantization_job(ckpt, factories.recipe("Q2_K"))
    page = client.get("/fleet/").content.decode()
    oldest = page[page.index('<div id="oldest">'):page.index("</div>", page.index('<div id="oldest">'))]
    assert f'data-job="{old.pk}"' in oldest and "needs 700.0 GiB disk, 120.0 GiB free" in oldest


def test_it_highlights_a_running_job_without_a_heartbeat_for_the_stuck_minutes(client, broker, settings):
    settings.DSQ_STUCK_MINUTES = 10
    advertise(broker, "gpu-node-1:7", "cuda:0", free=2**30, total=80 * 2**30, queues=["gpu"])
    ckpt = factories.checkpoint("deepseek-r1")
    stuck = jobs.claim(QuantizationJob, factories.quantization_job(ckpt, factories.recipe("Q8_0")).pk, "gpu-node-1:7")
    fresh = jobs.claim(QuantizationJob, factories.quantization_job(ckpt, factories.recipe("Q2_K")).pk, "gone:1")
    QuantizationJob.objects.filter(pk=stuck.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=11))
    page = client.get("/fleet/").content.decode()
    assert 'class="stuck"' in row_of(page, f'<tr data-job="{stuck.pk}"')
    assert 'class="stuck"' not in row_of(page, f'<tr data-job="{fresh.pk}"')
    assert "(not advertising)" in row_of(page, f'<tr data-job="{fresh.pk}"')


def test_it_shows_queue_depths_and_says_when_the_broker_is_away(client, broker, celery_broker, settings):
    from dsq.celery import app

    for job_id in (1, 2):
        app.send_task("dsq.quantize", args=[job_id], queue="gpu")
    page = client.get("/fleet/").content.decode()
    assert '<td class="num">2</td>' in row_of(page, 'data-queue="gpu"')
    from dsq.localservices import free_port

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    page = client.get("/fleet/").content.decode()
    assert 'id="broker-error"' in page
