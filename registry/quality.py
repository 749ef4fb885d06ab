"""Quality of a checkpoint's variants against its reference, through quant.eval.report.

Variant.quality is registry.evidence.Quality, written by registry.benchmarks and read only through
that type here. The baseline of a checkpoint's drop table is the variant flagged ``baseline`` (the
reference the benchmark worker measured against: F16, or Q8_0 for the 671B models), else the one with
the most bits per weight. `drop` is one variant's drop against its own reference, metric by metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from quant.eval import report as eval_report
from quant.eval.report import Report, ReportRow, build_report
from quant.eval.report import Score as ReportScore
from registry.evidence import Quality, Score, TierOne
from registry.models import Checkpoint, Variant


def variant_label(variant: Variant) -> str:
    """`Q4_K_M #7`, `Q4_K_M+imatrix #8`, or with a registered imatrix its dataset: `Q4_K_M+imatrix(pydoc-…) #9`."""
    imatrix = ""
    if variant.imatrix_id is not None:
        imatrix = f"+imatrix({variant.imatrix.dataset.name})"
    elif variant.imatrix_sha256:
        imatrix = "+imatrix"
    return f"{variant.recipe.name}{imatrix} #{variant.pk}"


def _row(variant: Variant, q: Quality) -> ReportRow:
    t = q.tier1
    return ReportRow(variant=variant_label(variant), scores={b: ReportScore(s.mean, s.std) for b, s in q.scores.items()},
                     size_bytes=variant.total_bytes or None, bits_per_weight=variant.bits_per_weight or None,
                     ppl=t.ppl if t else None, kld_mean=t.kld_mean if t else None,
                     top1_percent=t.top1_percent if t else None)


def baseline_of(variants: Iterable[Variant]) -> Optional[Variant]:
    measured = [v for v in variants if Quality.from_json(v.quality).measured]
    flagged = [v for v in measured if Quality.from_json(v.quality).baseline]
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
    rows = [_row(v, q) for v in variants if (q := Quality.from_json(v.quality)).measured]
    return build_report(checkpoint.name, variant_label(base), rows)


def drop_of(variant: Variant, report: Optional[Report]) -> Optional[ReportRow]:
    """The report row of one variant (None when it has no quality results)."""
    if report is None:
        return None
    label = variant_label(variant)
    return next((r for r in report.rows if r.variant == label), None)


# -- one variant against its reference ------------------------------------------------------------


@dataclass(frozen=True)
class ScoreDrop:
    """A task score of the variant beside the reference's: drop in points and percent, ± combined."""

    benchmark: str
    mean: float
    std: Optional[float]
    reference: Optional[str]  # what it is compared to; None when nothing measured that benchmark
    reference_mean: Optional[float]
    reference_std: Optional[float]
    drop_points: Optional[float]  # reference − this: positive is worse
    drop_std: Optional[float]  # sqrt(std² + reference std²), when both are known
    drop_percent: Optional[float]  # drop_points / reference mean × 100


@dataclass(frozen=True)
class Drop:
    """What a variant loses against its reference: tier 1 (PPL, KLD, top-1) and every task score."""

    variant: str
    reference: str  # "" until measured
    reference_variant: Optional[int]
    baseline: bool  # the variant is the reference itself
    tier1: Optional[TierOne]
    scores: tuple[ScoreDrop, ...]

    @property
    def measured(self) -> bool:
        return self.tier1 is not None or bool(self.scores)


def study_table(checkpoint: Checkpoint) -> Optional[str]:
    """The study's table for this checkpoint's family (DeepSeek-R1, …), or None (not in the study, or the
    published figures are not available here)."""
    tables = eval_report.published_tables()
    family = checkpoint.family.lower()
    return next((name for name in tables if name.lower() == family), None)


def published_reference(checkpoint: Checkpoint) -> "tuple[str, dict[str, Score]] | None":
    """(label, scores) of the study's baseline row for this checkpoint's family, labelled as published."""
    table = study_table(checkpoint)
    if table is None:
        return None
    baseline = eval_report.published_tables()[table]["baseline"]
    row = next(r for r in eval_report.published_rows(table) if r.variant == baseline)
    return f"{baseline}, {eval_report.PUBLISHED_LABEL}", {b: Score(s.mean, s.std) for b, s in row.scores.items()}


def score_drop(benchmark: str, score: Score, reference: "tuple[str, dict[str, Score]] | None") -> ScoreDrop:
    ref = reference[1].get(benchmark) if reference else None
    if ref is None:
        return ScoreDrop(benchmark, score.mean, score.std, None, None, None, None, None, None)
    points = ref.mean - score.mean
    spread = math.hypot(score.std, ref.std) if score.std is not None and ref.std is not None else None
    return ScoreDrop(benchmark, score.mean, score.std, reference[0], ref.mean, ref.std, points, spread,
                     100.0 * points / ref.mean if ref.mean else None)


def drop(variant: Variant, accuracy_reference: str = "reference") -> Drop:
    """The variant against its reference. Task scores are compared with the reference variant's own scores
    (accuracy_reference "reference"), or with the study's published baseline row ("published"), or with
    the reference variant where it measured the benchmark and the published row elsewhere ("either")."""
    q = Quality.from_json(variant.quality)
    measured_ref = None
    if q.reference_variant is not None and not q.baseline:
        ref = Variant.objects.select_related("recipe").filter(pk=q.reference_variant).first()
        if ref is not None:
            measured_ref = (variant_label(ref), Quality.from_json(ref.quality).scores)
    published = published_reference(variant.checkpoint) if accuracy_reference in ("published", "either") else None
    scores = []
    for benchmark, score in sorted(q.scores.items()):
        use = published if accuracy_reference == "published" else measured_ref
        if accuracy_reference == "either" and not (measured_ref and benchmark in measured_ref[1]):
            use = published
        scores.append(score_drop(benchmark, score, use))
    return Drop(variant_label(variant), q.reference, q.reference_variant, q.baseline, q.tier1, tuple(scores))
