"""Quality of a checkpoint's variants against its baseline, through quant.eval.report.

Variant.quality holds what the benchmark jobs measured:
``{"ppl": float, "kld_mean": float, "top1_percent": float, "scores": {benchmark: {"mean", "std"}},
"baseline": bool}``. The baseline is the variant flagged ``baseline`` or else the one with the most
bits per weight (a BF16/Q8_0 reference), so a drop is always measured against the best copy.
"""
from __future__ import annotations

from typing import Iterable, Optional

from quant.eval.report import Report, ReportRow, Score, build_report
from registry.models import Checkpoint, Variant


def variant_label(variant: Variant) -> str:
    return f"{variant.recipe.name}{'+imatrix' if variant.imatrix_sha256 else ''} #{variant.pk}"


def _row(variant: Variant) -> ReportRow:
    q = variant.quality or {}
    scores = {}
    for bench, value in (q.get("scores") or {}).items():
        if isinstance(value, dict) and "mean" in value:
            scores[bench] = Score(float(value["mean"]), value.get("std"))
        elif isinstance(value, (int, float)):
            scores[bench] = Score(float(value))
    return ReportRow(variant=variant_label(variant), scores=scores, size_bytes=variant.total_bytes or None,
                     bits_per_weight=variant.bits_per_weight or None, ppl=q.get("ppl"), kld_mean=q.get("kld_mean"),
                     top1_percent=q.get("top1_percent"))


def baseline_of(variants: Iterable[Variant]) -> Optional[Variant]:
    measured = [v for v in variants if v.quality]
    flagged = [v for v in measured if v.quality.get("baseline")]
    pool = flagged or measured
    return max(pool, key=lambda v: (v.bits_per_weight, v.pk)) if pool else None


def comparison(checkpoint: Checkpoint, variants: "Iterable[Variant] | None" = None) -> Optional[Report]:
    """The drop table of a checkpoint's ready variants; None until one has quality results."""
    if variants is None:
        variants = checkpoint.variants.filter(status=Variant.Status.READY).select_related("recipe")
    variants = sorted(variants, key=lambda v: -v.bits_per_weight)
    base = baseline_of(variants)
    if base is None:
        return None
    rows = [_row(v) for v in variants if v.quality]
    return build_report(checkpoint.name, variant_label(base), rows)


def drop_of(variant: Variant, report: Optional[Report]) -> Optional[ReportRow]:
    """The report row of one variant (None when it has no quality results)."""
    if report is None:
        return None
    label = variant_label(variant)
    return next((r for r in report.rows if r.variant == label), None)
