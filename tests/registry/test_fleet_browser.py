"""The fleet page in a real headless Chromium against a live server, a real Redis and real job rows."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry import jobs
from registry.models import QuantizationJob
from tests import factories
from tests.registry.pngread import count_colour, read_png
from tests.registry.test_dashboard_browser import CHROMIUM, chromium, hex_rgb
from tests.registry.test_fleet import advertise

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")]
STUCK_COLOUR = "#fde2e1"  # templates/registry/fleet.html, tr.stuck


@pytest.fixture
def fleet(settings, redis_server):
    import redis

    settings.CELERY_BROKER_URL = redis_server.url
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    advertise(client, "gpu-node-1:7", "cuda:0", free=20 * 2**30, total=80 * 2**30, queues=["gpu"])
    advertise(client, "cpu-node-1:3", queues=["cpu", "publish"])
    ckpt = factories.checkpoint("deepseek-v3")
    job = jobs.claim(QuantizationJob, factories.quantization_job(ckpt, factories.recipe("Q5_K_M")).pk, "gpu-node-1:7")
    jobs.heartbeat(job, progress=0.42, step="blk.17.ffn_down_exps")
    QuantizationJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=30))
    waiting = factories.quantization_job(ckpt, factories.recipe("Q8_0"), step="needs 700.0 GiB disk, 120.0 GiB free")
    return job, waiting


def test_it_shows_hosts_jobs_and_the_waiting_job(live_server, fleet, tmp_path):
    job, waiting = fleet
    result = chromium(tmp_path, f"{live_server.url}/fleet/", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-worker="gpu-node-1:7"' in dom and f"#{job.pk} blk.17.ffn_down_exps (42%)" in dom
    assert 'data-worker="cpu-node-1:3"' in dom and "cpu, publish" in dom
    assert f'data-job="{waiting.pk}"' in dom and "needs 700.0 GiB disk, 120.0 GiB free" in dom
    assert f'<tr data-job="{job.pk}" class="stuck">' in dom


def test_the_stuck_job_is_visibly_highlighted(live_server, fleet, tmp_path):
    png_path = tmp_path / "fleet.png"
    result = chromium(tmp_path, f"{live_server.url}/fleet/", f"--screenshot={png_path}")
    assert result.returncode == 0 and png_path.exists(), result.stderr[-2000:]
    assert count_colour(read_png(png_path), hex_rgb(STUCK_COLOUR)) > 2000  # one highlighted table row
