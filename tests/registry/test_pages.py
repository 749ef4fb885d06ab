"""The product pages: the checkpoint catalogue with filters, a checkpoint page and a variant page.

The figures are the review page's and the pull manifest's; files link only where registry.access allows."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db

GGUF = b"GGUF released bytes"
UNRELEASED = b"GGUF not approved yet"


def product() -> SimpleNamespace:
    """DeepSeek-R1 (its real config, so fit can size it) with a Q8_0 reference, an approved DQ3_K_M with a
    tensor plan, tier-1 and task figures, and an unreleased Q2_K; a V3 checkpoint of another family."""
    rita, alice = User.objects.create_user("rita"), make_approver("alice")
    r1 = factories.deepseek_checkpoint()
    q8 = factories.variant(r1, factories.builtin_recipe("Q8_0"), bits_per_weight=8.5, total_bytes=713 * 10**9)
    plan = factories.plan_of_conversion([("blk.3.ffn_down_exps.weight", (256, 2048, 7168), "Q6_K", 3_082_813_440),
                                         ("blk.5.ffn_down_exps.weight", (256, 2048, 7168), "Q3_K", 1_614_807_040)])
    dq3 = factories.variant(r1, factories.builtin_recipe("DQ3_K_M"), bits_per_weight=3.57, total_bytes=299 * 10**9,
                            plan=plan, files={"DQ3_K_M.gguf": GGUF})
    q2 = factories.variant(r1, factories.builtin_recipe("Q2_K"), bits_per_weight=2.9, total_bytes=228 * 10**9,
                           files={"Q2_K.gguf": UNRELEASED})
    factories.measured(dq3, q8, ppl=5.26, reference_ppl=5.10, kld_mean=0.0123, kld_p99=0.0871, top1=0.931)
    factories.measured(q2, q8, ppl=5.90, reference_ppl=5.10, kld_mean=0.09)
    factories.scored(q8, {"mmlu": [80.0]})
    factories.scored(dq3, {"mmlu": [78.0]})
    release = factories.release(dq3, by=rita, notes="the study's mix")
    release.approve(alice, "KLD within budget", override="671B: task suite run by hand")
    factories.release(q2, by=rita)
    factories.variant(factories.checkpoint("tiny-v3", family="DeepSeek-V3"), factories.recipe("Q4_K_M"))
    return SimpleNamespace(checkpoint=r1, q8=q8, dq3=dq3, q2=q2, release=release, alice=alice)


def test_the_catalogue_lists_checkpoints_and_filters_by_family_and_architecture(client):
    product()
    page = client.get("/checkpoints/").content.decode()
    assert 'data-checkpoint="deepseek-r1"' in page and 'data-checkpoint="tiny-v3"' in page
    only_r1 = client.get("/checkpoints/?family=DeepSeek-R1").content.decode()
    assert 'data-checkpoint="deepseek-r1"' in only_r1 and 'data-checkpoint="tiny-v3"' not in only_r1
    none = client.get("/checkpoints/?architecture=llama").content.decode()
    assert "no checkpoints match" in none


def test_the_checkpoint_page_shows_catalogue_variants_releases_and_channels(client):
    p = product()
    response = client.get("/checkpoints/deepseek-r1/")
    assert response.status_code == 200
    page = response.content.decode()
    facts = page[page.index('id="facts"'):page.index("</table>", page.index('id="facts"'))]
    assert "deepseek2" in facts and "deepseek-ai/DeepSeek-R1" in facts and "FP8" in facts
    assert str(p.checkpoint.parameter_count) in facts and p.checkpoint.parameter_count > 600 * 10**9
    variants = page[page.index('id="variants"'):]
    assert f'href="/checkpoints/deepseek-r1/variants/{p.dq3.pk}/"' in variants
    assert "3.57" in variants and "5.260" in variants and "0.0123" in variants and "v1 approved" in variants
    releases = page[page.index('id="releases"'):]
    assert "KLD within budget" in releases and "overridden" in releases and "671B: task suite run by hand" in releases
    assert "candidate" in releases  # the Q2_K request
    tags = page[page.index('id="tags"'):]
    assert "deepseek-r1:DQ3_K_M@latest" in tags and "deepseek-r1:DQ3_K_M@v1" in tags and "channel" in tags


def test_the_variant_page_shows_types_quality_files_commands_and_fit(client):
    p = product()
    response = client.get(f"/checkpoints/deepseek-r1/variants/{p.dq3.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    types = page[page.index('id="types"'):]
    assert "<td>Q6_K</td><td>1</td><td>3758096384</td><td>50.00 %</td>" in types
    drop = page[page.index('id="drop"'):]
    assert 'data-metric="kld_mean"' in drop and "0.0123" in drop and "0.0871" in drop and "93.10 %" in drop
    assert 'data-metric="score:mmlu"' in drop and "2.00 points (2.50 %)" in drop
    files = page[page.index('id="files"'):]
    assert hashlib.sha256(GGUF).hexdigest() in files and f'href="/api/files/{p.dq3.pk}/DQ3_K_M.gguf"' in files
    pull = page[page.index('id="pull"'):]
    assert "deepseek-r1:DQ3_K_M@latest" in pull and "llama-server -m DQ3_K_M.gguf -ngl 999" in pull
    assert f"curl -fL -C - -o DQ3_K_M.gguf http://testserver/api/files/{p.dq3.pk}/DQ3_K_M.gguf" in pull
    fit = page[page.index('id="fit"'):]
    assert "8× NVIDIA H100 80 GB" in fit and "fits" in fit


def test_a_published_release_shows_the_hub_llama_cpp_and_ollama_commands(client, settings):
    settings.DSQ_HUB_PUBLIC_URL = "https://huggingface.co"
    p = product()
    p.release.mark_published("dsq/DeepSeek-R1-GGUF", "a" * 40)
    pull = client.get(f"/checkpoints/deepseek-r1/variants/{p.dq3.pk}/").content.decode()
    pull = pull[pull.index('id="pull"'):]
    assert "from the hub" in pull and "llama-server -hf dsq/DeepSeek-R1-GGUF:DQ3_K_M" in pull
    assert "ollama run hf.co/dsq/DeepSeek-R1-GGUF:DQ3_K_M" in pull and "https://huggingface.co/dsq/" in pull


def test_the_variant_page_shows_the_same_figures_as_the_evidence_api(client):
    p = product()
    evidence = client.get(f"/api/releases/{p.release.pk}/evidence/").json()
    page = client.get(f"/checkpoints/deepseek-r1/variants/{p.dq3.pk}/").content.decode()
    assert f"{evidence['drop']['tier1']['kld_p99']:.4g}" in page[page.index('id="drop"'):]
    for line in evidence["fit"]:
        assert line["label"] in page[page.index('id="fit"'):]


def test_unreleased_files_are_listed_but_not_linked_for_anonymous_users(client):
    p = product()
    page = client.get(f"/checkpoints/deepseek-r1/variants/{p.q2.pk}/").content.decode()
    assert hashlib.sha256(UNRELEASED).hexdigest() in page  # the hash is metadata, as in GET /api/variants/
    assert "/api/files/" not in page and 'id="files-unreleased"' in page and 'id="no-pull"' in page
    approver = Client()
    approver.force_login(p.alice)
    assert f'href="/api/files/{p.q2.pk}/Q2_K.gguf"' in approver.get(
        f"/checkpoints/deepseek-r1/variants/{p.q2.pk}/").content.decode()


@pytest.mark.parametrize("url", ["/checkpoints/no-such-model/", "/checkpoints/deepseek-r1/variants/999999/",
                                 "/checkpoints/tiny-v3/variants/{dq3}/"])
def test_unknown_names_and_variants_of_another_checkpoint_are_404(client, url):
    p = product()
    assert client.get(url.format(dq3=p.dq3.pk)).status_code == 404
