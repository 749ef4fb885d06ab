"""Variants: filters by checkpoint, recipe and status; a query-count baseline for the list."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import Variant
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def variants():
    r1, v3 = factories.checkpoint("deepseek-r1"), factories.checkpoint("deepseek-v3")
    q4, dq3 = factories.recipe("Q4_K_M"), factories.recipe("DQ3_K_M")
    return {
        "r1-q4": factories.variant(r1, q4, files={"a.gguf": b"a"}),
        "r1-dq3": factories.variant(r1, dq3, status=Variant.Status.BUILDING),
        "v3-dq3": factories.variant(v3, dq3, files={"b.gguf": b"b", "c.gguf": b"c"}),
    }


@pytest.mark.parametrize("query,expected", [
    ("checkpoint=deepseek-r1", {"r1-q4", "r1-dq3"}),
    ("recipe=dq3_k_m", {"r1-dq3", "v3-dq3"}),
    ("status=ready", {"r1-q4", "v3-dq3"}),
    ("checkpoint=deepseek-r1&recipe=DQ3_K_M&status=building", {"r1-dq3"}),
])
def test_it_filters(anonymous, variants, query, expected):
    ids = {v["id"] for v in anonymous.get(f"/api/variants/?{query}").json()["results"]}
    assert ids == {variants[k].pk for k in expected}


def test_it_refuses_an_unknown_status(anonymous, variants):
    response = anonymous.get("/api/variants/?status=melted")
    assert response.status_code == 400 and "status" in response.json()["error"]


def test_the_list_costs_a_fixed_number_of_queries(anonymous, variants, settings):
    # The list's own queries: throttle counters (a constant few, in the database cache by default) are off.
    settings.REST_FRAMEWORK = dict(settings.REST_FRAMEWORK, DEFAULT_THROTTLE_RATES={"anon": None, "user": None})
    with CaptureQueriesContext(connection) as few:
        anonymous.get("/api/variants/")
    for i in range(5):
        factories.variant(factories.checkpoint(f"more-{i}"), factories.recipe(f"R{i}"), files={"x.gguf": b"x"})
    with CaptureQueriesContext(connection) as many:
        anonymous.get("/api/variants/")
    assert len(many) == len(few) <= 4


def test_variants_are_read_only(admin, variants):
    response = admin.delete(f"/api/variants/{variants['r1-q4'].pk}/")
    assert response.status_code == 405 and "not allowed" in response.json()["error"]


def test_it_shows_quality_in_its_typed_shape(anonymous):
    ref, v = factories.reference_and_candidate(ppl=5.4, reference_ppl=5.1, kld_mean=0.05)
    factories.scored(v, {"MMLU": [78.0, 79.0]})
    body = anonymous.get(f"/api/variants/{v.pk}/").json()["quality"]
    assert body["version"] == 1 and body["reference"] == f"F16 #{ref.pk}" and body["reference_variant"] == ref.pk
    assert body["tier1"]["ppl"] == 5.4 and body["tier1"]["kld_mean"] == 0.05 and body["tier1"]["ppl_uncertainty"] == 0.12
    assert body["scores"]["MMLU"] == {"mean": 78.5, "std": pytest.approx(0.7071, abs=1e-4), "runs": [78.0, 79.0]}
    assert body["suites"] == ["quality", "deepseek-paper"] and body["baseline"] is False
    never = anonymous.get(f"/api/variants/{factories.variant(ref.checkpoint, factories.recipe('Q2_K')).pk}/").json()
    assert never["quality"]["tier1"] is None and never["quality"]["version"] == 1


def test_a_benchmark_job_shows_its_typed_result(anonymous):
    from registry.benchmarks import record_scores, request_benchmarks
    from registry import jobs
    from registry.models import BenchmarkJob

    v = factories.variant()
    (job,) = request_benchmarks(v, ["smoke"])
    assert anonymous.get(f"/api/jobs/benchmark/{job.pk}/").json()["result"] is None  # not run yet
    running = jobs.claim(BenchmarkJob, job.pk, "gpu-1")
    stored = record_scores(v, "smoke", {"suite": "smoke", "skipped": {}, "scores": [
        {"benchmark": "Smoke QA", "lm_eval_task": "dsq_smoke_qa", "metric": "acc", "runs": [50.0, 50.0],
         "mean": 50.0, "std": 0.0}]})
    jobs.succeed(running, result=stored.to_json())  # what workers.benchmark returns
    result = anonymous.get(f"/api/jobs/benchmark/{job.pk}/").json()["result"]
    assert result["version"] == 1 and result["suite"] == "smoke" and result["scores"]["Smoke QA"]["mean"] == 50.0
