"""Requesting benchmarks of a variant: one live job per (variant, suite), queued after commit.

The "quality" suite is tier 1: perplexity and KL divergence against the checkpoint's reference
variant, which is BF16/F16 for models that fit and Q8_0 for the 671B ones, as is practice.
Other suite names are task suites (quant/eval/suites), run through lm-evaluation-harness.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry import dispatch
from registry.evidence import BenchmarkResult, Quality, Score, TierOne
from registry.models import AuditLog, BenchmarkJob, Checkpoint, JobState, Variant
from registry.quality import variant_label

QUALITY = "quality"
# Above this many weights the unquantized reference does not fit one host: Q8_0 stands in.
LARGE_MODEL_PARAMS = 100e9


def reference_recipe_name(checkpoint: Checkpoint) -> str:
    return "Q8_0" if checkpoint.parameter_count > LARGE_MODEL_PARAMS else "F16"


def known_suites() -> list[str]:
    """The suite names a benchmark may ask for: tier 1 ("quality") and the bundled task suites."""
    from quant.eval.suites import available_suites

    return [QUALITY, *available_suites()]


def check_suites(suites: "list[str]") -> None:
    """ValidationError (400) unless every name is a known suite: names reach the worker, never paths."""
    known = known_suites()
    unknown = [s for s in suites if s not in known]
    if unknown:
        shown = ", ".join(repr(str(s)[:100]) for s in unknown[:5])
        raise ValidationError(f"unknown benchmark suite {shown}; known suites: {', '.join(known)}")


def request_key(variant: Variant, suite: str) -> str:
    return hashlib.sha256(f"benchmark:{variant.pk}:{suite}".encode()).hexdigest()


def request_benchmarks(variant: Variant, suites: "list[str]", user=None,
                       options: "dict | None" = None) -> list[BenchmarkJob]:
    """Queue each suite not already live or done for this variant; returns the jobs (new or live).

    Task suites of a variant that does not fit one GPU go to the host queue (registry.placement)."""
    from registry import placement

    check_suites(suites)
    out = []
    for suite in dict.fromkeys(suites):
        if suite in Quality.from_json(variant.quality).suites:
            continue
        key = request_key(variant, suite)
        live = BenchmarkJob.objects.filter(request_key=key, state__in=[JobState.QUEUED, JobState.RUNNING]).first()
        if live is not None:
            out.append(live)
            continue
        try:
            with transaction.atomic():
                queue = placement.GPU if suite == QUALITY else placement.queue_for(variant, options, suite)
                job = BenchmarkJob.objects.create(variant=variant, suite=suite, request_key=key, requested_by=user,
                                                  options=options or {}, queue=queue)
                AuditLog.record(user, "benchmark.request", job, variant=str(variant), suite=suite)
        except IntegrityError:
            out.append(BenchmarkJob.objects.get(request_key=key, state__in=[JobState.QUEUED, JobState.RUNNING]))
            continue
        dispatch.enqueue_on_commit("benchmark", job.pk)
        out.append(job)
    return out


def _update(variant: Variant, change) -> Quality:
    """Read, change and store a variant's Quality under a row lock (two suites may finish together)."""
    with transaction.atomic():
        v = Variant.objects.select_for_update().get(pk=variant.pk)
        quality = change(Quality.from_json(v.quality))
        v.quality = quality.to_json()
        v.save(update_fields=["quality"])
    variant.quality = v.quality
    return quality


def _with_suite(quality: Quality, suite: str) -> tuple[str, ...]:
    return quality.suites if suite in quality.suites else (*quality.suites, suite)


def record_tier1(variant: Variant, reference: Variant, result: dict, suite: str = QUALITY,
                 reference_ppl_uncertainty: "float | None" = None) -> BenchmarkResult:
    """Store a tier-1 measurement (quant.eval.kld.VariantQuality.as_dict()) of `variant` against `reference`,
    and mark the reference as the baseline with its own PPL. Returns what the benchmark job keeps."""
    tier1 = TierOne.from_evaluation(result, reference_ppl_uncertainty)
    label = variant_label(reference)
    _update(variant, lambda q: replace(q, reference=label, reference_variant=reference.pk, tier1=tier1,
                                       suites=_with_suite(q, suite)))
    if reference.pk != variant.pk:
        own = TierOne.of_reference(tier1.reference_ppl, tier1.reference_ppl_uncertainty, tier1.n_positions)
        _update(reference, lambda q: replace(q, reference=label, reference_variant=reference.pk, baseline=True,
                                             tier1=q.tier1 if q.baseline and q.tier1 else own))
    return BenchmarkResult(suite=suite, reference=label, tier1=tier1, detail=result)


def record_scores(variant: Variant, suite: str, result: dict) -> BenchmarkResult:
    """Store a task suite's scores (quant.eval.harness.SuiteResult.as_dict()): mean ± std over runs."""
    scores = {s["benchmark"]: Score(float(s["mean"]), s.get("std"), tuple(float(x) for x in s.get("runs") or ()))
              for s in result["scores"]}
    _update(variant, lambda q: replace(q, scores={**q.scores, **scores}, suites=_with_suite(q, suite)))
    return BenchmarkResult(suite=suite, scores=scores, detail=result)
