"""The model card (workers.model_card): linked to its base model, a quality table of real metrics with their
reference and drop, the policy verdict (and any override), the recipe's types, and the study's published rows."""
from __future__ import annotations

import pytest
import yaml
from django.contrib.auth.models import User

from quant.imatrix import Coverage, TensorCoverage
from registry import publishing
from registry.models import Release
from tests import factories
from tests.registry.personas import make_approver
from workers.model_card import render_card

pytestmark = pytest.mark.django_db


def recipe(name: str):
    from registry.models import Recipe

    return Recipe.objects.filter(name=name).first() or factories.recipe(name)


def approved(ckpt, override: str = "", measured: bool = True, **measures) -> Release:
    ref = factories.variant(ckpt, recipe("F16"), bits_per_weight=16.0)
    v = factories.variant(ckpt, recipe("DQ3_K_M"), bits_per_weight=3.59, plan=factories.plan_of_conversion(
        [("blk.3.ffn_down_exps.weight", (4, 64, 32), "Q6_K", 6720), ("blk.5.ffn_down_exps.weight", (4, 64, 32), "Q3_K", 3520)],
        recipe_name="DQ3_K_M"))
    if measured:
        factories.measured(v, ref, ppl=1795.6516107147536, ppl_uncertainty=98.3, reference_ppl=1729.9,
                           reference_ppl_uncertainty=94.1, kld_mean=0.0123, kld_p99=0.0871, top1=0.931, **measures)
        factories.scored(ref, {"MMLU": [80.0, 82.0]})
        factories.scored(v, {"MMLU": [78.0, 79.0]})
    rita = User.objects.filter(username="rita").first() or User.objects.create_user("rita")
    alice = User.objects.filter(username="alice").first() or make_approver("alice")
    release = factories.release(v, by=rita)
    publishing.approve(release, alice, "ok", override=override)
    release.refresh_from_db()
    return release


def header(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def table(card: str) -> list[list[str]]:
    start = card.index("| metric | reference | this quant | drop |")
    lines = card[start:].split("\n\n")[0].splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_it_links_the_card_to_its_base_model(settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    r1 = factories.checkpoint("deepseek-r1", family="DeepSeek-R1", hf_repo="deepseek-ai/DeepSeek-R1")
    meta = header(render_card(approved(r1), "dsq/deepseek-r1-GGUF"))
    assert meta["base_model"] == "deepseek-ai/DeepSeek-R1" and meta["base_model_relation"] == "quantized"
    assert meta["library_name"] == "gguf"


def test_a_local_checkpoint_has_no_dangling_relation(settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    card = render_card(approved(factories.checkpoint("tiny", family="DeepSeek-V3", revision="demo")), "dsq/tiny-GGUF")
    assert "base_model" not in header(card) and "base_model_relation" not in header(card)
    assert "Base model: the local checkpoint tiny at revision demo (not on the Hub)." in card


def test_the_quality_table_has_reference_this_quant_and_drop_for_every_metric(settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    release = approved(factories.checkpoint("tiny", family="DeepSeek-V3"))
    rows = table(render_card(release, "dsq/tiny-GGUF"))
    assert [r[0] for r in rows] == ["Perplexity", "KLD mean", "KLD p99", "Top-1 agreement", "MMLU"]
    assert all(len(r) == 4 and all(r) for r in rows)  # no empty reference or drop cell, no non-metric row
    ppl, kld, p99, top1, mmlu = rows
    assert ppl == ["Perplexity", "1730 ± 94", "1796 ± 98", "PPL ratio 1.0380 (+3.80 %)"]
    assert kld[2:] == ["0.01230 ± 0.00061", "0.01230"] and p99[2] == "0.08710" and top1[2] == "93.10 %"
    ref = release.variant.checkpoint.variants.get(recipe__name="F16")
    assert mmlu == ["MMLU", f"81.0 ± 1.4 (F16 #{ref.pk})", "78.50 ± 0.71", "2.5 ± 1.6 points (3.09 %)"]


def test_the_card_carries_the_verdict_the_override_and_the_recipe_types(settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    release = approved(factories.checkpoint("tiny", family="DeepSeek-V3"), measured=False,
                       override="a smoke release: measured by hand")
    card = render_card(release, "dsq/tiny-GGUF")
    assert "Release policy (default + family DeepSeek-V3): **failed**" in card
    assert "- ✗ no results of the 'quality' suite, which the policy requires" in card
    assert "**Approved with an override of the release policy** by alice: a smoke release: measured by hand" in card
    assert "| Q6_K | 1 | 8192 | 50.00 % |" in card and "| Q3_K | 1 | 8192 | 50.00 % |" in card


def test_a_checkpoint_in_the_study_carries_its_published_rows_labelled_as_published(settings):
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    card = render_card(approved(factories.checkpoint("deepseek-r1", family="DeepSeek-R1")), "dsq/r1-GGUF")
    published = card[card.index("## Published results of the study"):]
    assert "published figures, not measured by dsq" in published and "FP8 (official API)" in published
    dq3 = next(line for line in published.splitlines() if line.startswith("| DQ3_K_M |"))
    assert "published (Zhao et al. 2025, arXiv 2505.02390)" in dq3 and "| 83.03 | 0.34 |" in dq3
    other = render_card(approved(factories.checkpoint("smol", family="SmolLM2"), override="MMLU -3.1 % is noise here"),
                        "dsq/smol-GGUF")
    assert "Published results" not in other


def test_the_card_names_the_imatrix_its_dataset_and_the_experts_without_data(settings, storage):
    from registry import calibration
    from registry.models import ImatrixArtifact, Variant

    settings.DSQ_PUBLISH_ON_APPROVAL = False
    r1 = factories.checkpoint("deepseek-r1", family="DeepSeek-R1", hf_repo="deepseek-ai/DeepSeek-R1")
    dataset, _ = calibration.register("chat-en", "Hello there. " * 50, source="written for this test")
    im = ImatrixArtifact.objects.create(checkpoint=r1, dataset=dataset, chunks=0, n_ctx=512, sha256="cd" * 32,
                                        chunk_count=7, storage_path="imatrices/x.gguf",
                                        coverage=Coverage(  # three of eight experts never routed
                                            format="gguf", chunk_count=7, chunk_size=512, datasets=("chat-en",),
                                            tensors=(TensorCoverage("blk.1.ffn_up_exps.weight", n_mat=8,
                                                                    tokens=(9, 0, 4, 0, 3, 0, 2, 1), ncall=None),),
                                        ).as_dict())
    release = approved(r1)
    Variant.objects.filter(pk=release.variant_id).update(imatrix=im, imatrix_sha256=im.sha256)
    release.refresh_from_db()
    card = render_card(release, "dsq/deepseek-r1-GGUF")
    line = next(x for x in card.splitlines() if x.startswith("- Importance matrix:"))
    assert "chat-en" in line and dataset.sha256[:16] in line and "written for this test" in line
    assert "7 chunks of 512 tokens" in line and "3 experts saw no calibration token" in line
