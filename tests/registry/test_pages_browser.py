"""The variant page and the admin review page in a real headless Chromium, with screenshots for docs/.

Chromium is driven from the command line as in test_dashboard_browser.py. It takes no cookie there, so
the review page is fetched as a logged-in approver by Django's test client against the same database,
given a <base> at the live server (its admin stylesheets load from there) and rendered from a file.
Set DSQ_UPDATE_SCREENSHOT=1 to copy the screenshots to docs/variant-page.png and docs/review-page.png.
"""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from django.test import Client

from tests.registry.pngread import count_colour, read_png
from tests.registry.test_dashboard_browser import CHROMIUM, ROOT, chromium, hex_rgb
from tests.registry.test_pages import GGUF, product

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")]

CODE_BACKGROUND = "#f6f6f6"  # the variant page's command blocks (templates/registry/variant.html)
ADMIN_HEADER = "#417690"  # Django admin's --header-bg


def test_the_variant_page_renders_its_figures_and_commands(live_server, tmp_path, settings):
    settings.DSQ_HUB_PUBLIC_URL = "https://huggingface.co"
    p = product()
    p.release.mark_published("dsq/DeepSeek-R1-GGUF", "a" * 40)  # so the Hub and Ollama commands show
    url = f"{live_server.url}/checkpoints/deepseek-r1/variants/{p.dq3.pk}/"
    dom = chromium(tmp_path, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "50.00 %" in dom.stdout and "0.0123" in dom.stdout and hashlib.sha256(GGUF).hexdigest() in dom.stdout
    assert "ollama run hf.co/dsq/DeepSeek-R1-GGUF:DQ3_K_M" in dom.stdout and "8× NVIDIA H100 80 GB" in dom.stdout
    png_path = tmp_path / "variant-page.png"
    shot = chromium(tmp_path, url, "--window-size=1280,1500", f"--screenshot={png_path}")
    assert shot.returncode == 0 and png_path.exists(), shot.stderr[-2000:]
    png = read_png(png_path)
    assert png[:2] == (1280, 1500) and count_colour(png, hex_rgb(CODE_BACKGROUND), tolerance=2) > 5000
    if os.environ.get("DSQ_UPDATE_SCREENSHOT") == "1":
        shutil.copy(png_path, ROOT / "docs" / "variant-page.png")


def test_the_review_page_as_an_approver_sees_it(live_server, tmp_path):
    p = product()
    candidate = p.q2.releases.get()
    p.alice.is_staff = True
    p.alice.save()
    client = Client()
    client.force_login(p.alice)
    response = client.get(f"/admin/registry/release/{candidate.pk}/review/")
    assert response.status_code == 200
    html = response.content.decode().replace("<head>", f'<head><base href="{live_server.url}/">', 1)
    assert 'name="_approve"' in html  # alice may decide: the page as an approver sees it
    page = tmp_path / "review.html"
    page.write_text(html)
    png_path = tmp_path / "review-page.png"
    shot = chromium(tmp_path, page.as_uri(), "--window-size=1280,1500", "--allow-file-access-from-files",
                    f"--screenshot={png_path}")
    assert shot.returncode == 0 and png_path.exists(), shot.stderr[-2000:]
    png = read_png(png_path)
    assert png[:2] == (1280, 1500) and count_colour(png, hex_rgb(ADMIN_HEADER), tolerance=2) > 10000  # styled
    if os.environ.get("DSQ_UPDATE_SCREENSHOT") == "1":
        shutil.copy(png_path, ROOT / "docs" / "review-page.png")
