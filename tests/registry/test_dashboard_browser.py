"""The dashboard in a real headless Chromium against a live server with a populated registry.

Needs Debian's `chromium` (scripts/install-system-deps.sh with DSQ_WITH_BROWSER=1). Set
DSQ_UPDATE_SCREENSHOT=1 to copy the screenshot to docs/dashboard.png.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from registry import jobs
from registry.charts import FRONT_COLOUR, POINT_COLOUR
from registry.models import QuantizationJob
from tests import factories
from tests.registry.personas import make_approver
from tests.registry.pngread import count_colour, read_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")]
ROOT = Path(__file__).resolve().parents[2]


def chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1024",
            "--virtual-time-budget=4000", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.fixture
def populated():
    rita, alice = User.objects.create_user("rita"), make_approver("alice")
    r1 = factories.checkpoint("deepseek-r1", family="DeepSeek-R1")
    results = [("Q8_0", 8.5, 665, 5.10, 0.000, 80.0), ("Q4_K_M", 4.85, 377, 5.18, 0.010, 79.4),
               ("DQ3_K_M", 3.59, 281, 5.26, 0.020, 79.0), ("Q3_K_M", 3.9, 298, 5.35, 0.030, 78.2),
               ("Q2_K", 2.9, 228, 5.90, 0.090, 74.0)]
    variants = {}
    for name, bpw, gib, ppl, kld, mmlu in results:
        variants[name] = factories.variant(r1, factories.recipe(name), bits_per_weight=bpw, total_bytes=gib * 2**30)
        if name != "Q8_0":
            factories.measured(variants[name], variants["Q8_0"], ppl=ppl, reference_ppl=5.10, kld_mean=kld)
        factories.scored(variants[name], {"mmlu": [mmlu]})
    release = factories.release(variants["DQ3_K_M"], by=rita, notes="the study's mix")
    release.approve(alice, "KLD within budget")
    factories.release(variants["Q2_K"], by=rita).reject(alice, "accuracy drop too large")
    job = factories.quantization_job(factories.checkpoint("deepseek-v3"), factories.recipe("Q5_K_M"))
    running = jobs.claim(QuantizationJob, job.pk, "gpu-node-1")
    jobs.heartbeat(running, progress=0.42, step="blk.17.ffn_down_exps", eta_seconds=5400)
    return job


def test_it_renders_the_variants_jobs_and_history_and_refreshes_progress(live_server, populated, tmp_path):
    result = chromium(tmp_path, f"{live_server.url}/", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'id="pareto-chart"' in dom and dom.count('class="variant"') == 5
    assert "DQ3_K_M" in dom and "281.0" in dom and "3.59" in dom and "baseline" in dom
    assert "v1 approved" in dom and "accuracy drop too large" in dom and "KLD within budget" in dom
    assert f'data-job="{populated.pk}"' in dom and "42%" in dom and "blk.17.ffn_down_exps" in dom
    assert 'data-jobs-refreshed="1"' in dom  # the fetch loop reached the jobs API and updated the table


def test_the_screenshot_shows_the_chart_with_its_pareto_front(live_server, populated, tmp_path):
    png_path = tmp_path / "dashboard.png"
    result = chromium(tmp_path, f"{live_server.url}/", f"--screenshot={png_path}")
    assert result.returncode == 0 and png_path.exists(), result.stderr[-2000:]
    png = read_png(png_path)
    assert png[:2] == (1280, 1024)
    # Blue points and the orange front are only drawn inside the chart: both must be visible.
    assert count_colour(png, hex_rgb(FRONT_COLOUR)) > 500
    assert count_colour(png, hex_rgb(POINT_COLOUR)) > 150
    if os.environ.get("DSQ_UPDATE_SCREENSHOT") == "1":
        shutil.copy(png_path, ROOT / "docs" / "dashboard.png")
