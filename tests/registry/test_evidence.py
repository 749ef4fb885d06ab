"""The typed JSON shapes (registry.evidence): written by the workers' writers, read back by every reader,
refused in another version, and rows stored before them migrated (0006_typed_evidence)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from quant.convert import ConversionResult, FileResult, TensorResult
from registry.evidence import BenchmarkResult, Plan, Quality, ShapeError, plan_of, quality_of
from registry.models import Variant
from registry.quality import comparison, drop
from tests import factories

pytestmark = pytest.mark.django_db

typed = importlib.import_module("registry.migrations.0006_typed_evidence")


def test_it_reads_back_what_the_benchmark_writer_stores():
    ref, v = factories.reference_and_candidate(ppl=5.4, reference_ppl=5.1, kld_mean=0.05, kld_p99=0.42, top1=0.91)
    q = quality_of(v)
    assert q.version == 1 and q.suites == ("quality",) and not q.baseline
    assert (q.reference, q.reference_variant) == (f"F16 #{ref.pk}", ref.pk)
    assert q.tier1.ppl == 5.4 and q.tier1.reference_ppl == 5.1 and q.tier1.ppl_uncertainty == 0.12
    assert q.tier1.ppl_ratio == pytest.approx(5.4 / 5.1) and q.tier1.kld_p99 == 0.42 and q.tier1.top1_percent == 91.0
    base = quality_of(ref)
    assert base.baseline and base.tier1.ppl == 5.1 and base.tier1.ppl_uncertainty == 0.11 and base.tier1.kld_mean == 0
    assert Quality.from_json(q.to_json()) == q


def test_the_drop_report_and_the_drop_read_the_writers_shape():
    ref, v = factories.reference_and_candidate()
    factories.scored(ref, {"MMLU": [80.0, 82.0]})
    factories.scored(v, {"MMLU": [78.0, 79.0]})
    report = comparison(v.checkpoint)
    assert report.baseline == f"F16 #{ref.pk}"
    row = next(r for r in report.rows if r.variant == f"DQ3_K_M #{v.pk}")
    assert (row.ppl, row.kld_mean, row.top1_percent) == (5.4, 0.05, 91.0) and row.acc_drop_percent == pytest.approx(
        (81.0 - 78.5) / 81.0 * 100)
    (mmlu,) = drop(v).scores
    assert (mmlu.reference, mmlu.reference_mean, mmlu.mean) == (f"F16 #{ref.pk}", 81.0, 78.5)
    assert mmlu.drop_points == 2.5 and mmlu.drop_percent == pytest.approx(2.5 / 81 * 100)
    assert mmlu.drop_std == pytest.approx(2.5 ** 0.5)  # stdev of [80, 82] and of [78, 79], combined


def test_it_refuses_a_shape_of_another_version():
    with pytest.raises(ShapeError, match="version None"):
        Quality.from_json({"ppl": 5.4, "kld_mean": 0.05})
    with pytest.raises(ShapeError, match="Variant.plan"):
        Plan.from_json({"types": {"output.weight": "Q6_K"}})
    assert Quality.from_json({}) == Quality() and not Quality().measured


def conversion() -> ConversionResult:
    tensors = [TensorResult("token_embd.weight", (512, 64), "Q4_K", 18432, 0),
               TensorResult("blk.0.ffn_down.weight", (64, 256), "Q6_K", 13440, 0),
               TensorResult("blk.0.attn_norm.weight", (64,), "F32", 256, 0),
               TensorResult("output.weight", (512, 64), "Q6_K", 26880, 0)]
    return ConversionResult(files=[FileResult(Path("x.gguf"), 59008, "0" * 64, 4)], tensors=tensors,
                            recipe_name="Q4_K_M", recipe_sha256="ab" * 32, arch="llama", n_params=81984,
                            total_bytes=59008, seconds=1.5)


def test_a_plan_gives_fit_its_sizes_and_the_review_its_type_breakdown():
    plan = Plan.from_json(Plan.from_conversion(conversion()).to_json())
    assert plan.tensor_bytes() == [("token_embd.weight", 18432), ("blk.0.ffn_down.weight", 13440),
                                   ("blk.0.attn_norm.weight", 256), ("output.weight", 26880)]
    shares = {s.type: s for s in plan.type_breakdown()}
    assert shares["Q6_K"].tensors == 2 and shares["Q6_K"].weights == 64 * 256 + 512 * 64
    assert shares["Q4_K"].weight_percent == pytest.approx(100 * 512 * 64 / 81984)
    assert shares["F32"].bytes == 256


def test_a_benchmark_result_round_trips_without_nan():
    result = BenchmarkResult(suite="quality", detail={"kld_mean_uncertainty": float("nan"), "n": [1.0, float("inf")]})
    data = result.to_json()
    assert data["version"] == 1 and data["detail"] == {"kld_mean_uncertainty": None, "n": [1.0, None]}
    assert BenchmarkResult.from_json(data).suite == "quality"


# -- the rows stored before the types --------------------------------------------------------------

OLD_VARIANT = {"ppl": 1795.6516107147536, "ppl_uncertainty": 98.3, "ppl_ratio": 1.038, "kld_mean": 0.0123,
               "kld_p99": 0.08, "kld_max": 0.3, "top1_percent": 93.1, "rms_dp_percent": 2.0, "reference": "F16 #3",
               "suites": {"quality": {"perplexity": {"ppl": 1795.6516107147536, "uncertainty": 98.3, "mean_nll": 7.49,
                                                     "n_tokens": 1016, "n_windows": 8},
                                      "reference_ppl": 1729.9, "ppl_ratio": 1.038, "kld_mean": 0.0123,
                                      "kld_mean_uncertainty": 0.001, "kld_median": 0.01, "kld_p99": 0.08,
                                      "kld_max": 0.3, "top1_agreement": 0.931, "rms_dp": 0.02, "n_positions": 1016}}}
OLD_REFERENCE = {"ppl": 1729.9, "kld_mean": 0.0, "top1_percent": 100.0, "baseline": True, "reference": "F16 #3",
                 "suites": {"quality": {"ppl": 1729.9}}}
OLD_TASKS = {"scores": {"MMLU": {"mean": 78.0, "std": 1.0}, "GPQA": 65.5}, "suites": {"deepseek-paper": {}}}
OLD_PLAN = {"recipe": "Q4_K_M", "recipe_sha256": "ab" * 32, "arch": "deepseek2", "n_params": 10, "seconds": 1.0,
            "types": {"token_embd.weight": "Q4_K", "output.weight": "Q6_K"}}


def test_the_migration_turns_old_rows_into_version_1():
    v = Quality.from_json(typed.quality_v1(OLD_VARIANT))
    assert (v.reference, v.reference_variant, v.baseline, v.suites) == ("F16 #3", 3, False, ("quality",))
    assert v.tier1.reference_ppl == 1729.9 and v.tier1.ppl_uncertainty == 98.3
    assert v.tier1.top1_percent == pytest.approx(93.1)
    ref = Quality.from_json(typed.quality_v1(OLD_REFERENCE))
    assert ref.baseline and ref.tier1.ppl == 1729.9 and ref.tier1.ppl_ratio == 1.0
    tasks = Quality.from_json(typed.quality_v1(OLD_TASKS))
    assert tasks.scores["MMLU"].std == 1.0 and tasks.scores["GPQA"].mean == 65.5 and tasks.tier1 is None
    plan = Plan.from_json(typed.plan_v1(OLD_PLAN))
    assert [(t.name, t.type, t.bytes) for t in plan.tensors] == [("token_embd.weight", "Q4_K", None),
                                                                ("output.weight", "Q6_K", None)]
    assert plan.tensor_bytes() is None  # sizes never stored: fit plans them from the recipe
    result = BenchmarkResult.from_json(typed.benchmark_result_v1({"result": OLD_VARIANT["suites"]["quality"]},
                                                                 "quality", "F16 #3"))
    assert result.tier1.kld_p99 == 0.08 and result.reference == "F16 #3"
    assert typed.quality_v1(typed.quality_v1(OLD_VARIANT)) == typed.quality_v1(OLD_VARIANT)  # idempotent


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_the_stored_rows():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("registry", "0005_checkpoint_name")])
    old = executor.loader.project_state([("registry", "0005_checkpoint_name")]).apps
    ckpt = old.get_model("registry", "Checkpoint").objects.create(name="tiny", family="DeepSeek-V3",
                                                                   architecture="deepseek2")
    recipe = old.get_model("registry", "Recipe").objects.create(name="Q4_K_M", sha256="ab" * 32, definition={})
    row = old.get_model("registry", "Variant").objects.create(checkpoint=ckpt, recipe=recipe, quality=OLD_VARIANT,
                                                              plan=OLD_PLAN)
    job = old.get_model("registry", "BenchmarkJob").objects.create(
        variant=row, suite="quality", request_key="k", result={"result": OLD_VARIANT["suites"]["quality"]})
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    variant = Variant.objects.get(pk=row.pk)
    assert quality_of(variant).tier1.ppl_ratio == 1.038 and {t.name: t.type for t in plan_of(variant).tensors}["output.weight"] == "Q6_K"
    from registry.models import BenchmarkJob

    assert BenchmarkResult.from_json(BenchmarkJob.objects.get(pk=job.pk).result).reference == "F16 #3"
