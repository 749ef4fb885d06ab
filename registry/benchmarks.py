"""Requesting benchmarks of a variant: one live job per (variant, suite), queued after commit.

The "quality" suite is tier 1: perplexity and KL divergence against the checkpoint's reference
variant, which is BF16/F16 for models that fit and Q8_0 for the 671B ones, as is practice.
Other suite names are task suites (quant/eval/suites), run through lm-evaluation-harness.
"""
from __future__ import annotations

import hashlib

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry import dispatch
from registry.models import AuditLog, BenchmarkJob, Checkpoint, JobState, Variant

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
        if suite in (variant.quality or {}).get("suites", {}):
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


def quality_summary(result: dict, reference_label: str) -> dict:
    """The flat fields the drop report reads (registry.quality), from a tier-1 evaluation result."""
    return {"ppl": result["perplexity"]["ppl"], "ppl_uncertainty": result["perplexity"].get("uncertainty"),
            "ppl_ratio": result["ppl_ratio"], "kld_mean": result["kld_mean"], "kld_p99": result["kld_p99"],
            "kld_max": result["kld_max"], "top1_percent": 100.0 * result["top1_agreement"],
            "rms_dp_percent": 100.0 * result["rms_dp"], "reference": reference_label}


def record_quality(variant: Variant, suite: str, result: dict, summary: "dict | None" = None) -> None:
    """Store a suite's full result under quality["suites"] and its summary at the top level."""
    with transaction.atomic():
        v = Variant.objects.select_for_update().get(pk=variant.pk)
        quality = dict(v.quality or {})
        quality["suites"] = {**quality.get("suites", {}), suite: result}
        quality.update(summary or {})
        v.quality = quality
        v.save(update_fields=["quality"])
