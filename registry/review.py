"""What an approver decides on, for the admin review page and GET /api/releases/{id}/evidence/ alike.

One release's variant against its reference (registry.quality.drop), the release policy's verdict line
by line (stored at approval; computed now for a candidate), the tensor types the recipe chose (weights
per type, from Variant.plan), the same figures for the checkpoint's other variants (is this the best
choice at its size?) and whether it fits each built-in GPU profile.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from quant import config_check
from quant import fit as quant_fit
from registry import placement, quality, release_policy
from registry.evidence import Quality, TierOne, TypeShare, plan_of
from registry.models import Release, Variant

FIT_CONTEXT = 32768  # the fit API's default question


@dataclass(frozen=True)
class Sibling:
    """Another variant of the same checkpoint (or this one), with its size and tier-1 figures."""

    variant: int
    label: str
    quant: str
    size_bytes: int
    bits_per_weight: float
    tier1: Optional[TierOne]
    average_score: Optional[float]
    is_this: bool
    is_reference: bool
    released: Optional[str]  # the newest approved or published version label


@dataclass(frozen=True)
class FitLine:
    hardware: str
    label: str
    context: int
    fits: bool
    per_gpu_bytes: int
    gpu_bytes: int
    headroom_bytes: int


@dataclass(frozen=True)
class Evidence:
    release: int
    variant: int
    size_bytes: int
    bits_per_weight: float
    drop: quality.Drop
    verdict: release_policy.Verdict
    verdict_when: str  # "at approval" (stored) or "now" (a candidate, or decided before policies)
    override: str
    types: tuple[TypeShare, ...]
    siblings: tuple[Sibling, ...]
    fit: tuple[FitLine, ...]
    fit_error: str


def siblings(variant: Variant) -> tuple[Sibling, ...]:
    out = []
    ready = (Variant.objects.filter(checkpoint_id=variant.checkpoint_id, status=Variant.Status.READY)
             .select_related("recipe").prefetch_related("releases"))
    for v in sorted(ready, key=lambda v: (-v.bits_per_weight, v.pk)):
        q = Quality.from_json(v.quality)
        scores = [s.mean for s in q.scores.values()]
        released = sorted((r for r in v.releases.all() if r.pullable), key=lambda r: -r.version)
        out.append(Sibling(v.pk, quality.variant_label(v), v.recipe.name, v.total_bytes, v.bits_per_weight, q.tier1,
                           sum(scores) / len(scores) if scores else None, v.pk == variant.pk, q.baseline,
                           released[0].label if released else None))
    return tuple(out)


def fit_lines(variant: Variant) -> tuple[tuple[FitLine, ...], str]:
    """The fit verdict on each built-in GPU profile at the API's default context ('' or why it cannot be sized)."""
    try:
        config_check.check(variant.checkpoint.config)
        tensors = placement.variant_tensors(variant)
        lines = []
        for hw in quant_fit.HARDWARE.values():
            f = quant_fit.fit(variant.checkpoint.config, tensors, hw, FIT_CONTEXT)
            lines.append(FitLine(hw.name, hw.label, FIT_CONTEXT, f.fits, f.per_gpu_bytes, hw.gpu_bytes,
                                 f.headroom_bytes))
        return tuple(lines), ""
    except (KeyError, ValueError, TypeError) as exc:
        return (), f"{variant.checkpoint.name}'s config cannot be sized: {exc}"


def of(release: Release) -> Evidence:
    variant = release.variant
    policy = release_policy.policy_for(variant.checkpoint)
    stored = release_policy.Verdict.from_json(release.policy_verdict)
    verdict = stored or release_policy.evaluate(variant, policy)
    fit, fit_error = fit_lines(variant)
    return Evidence(release=release.pk, variant=variant.pk, size_bytes=variant.total_bytes,
                    bits_per_weight=variant.bits_per_weight, drop=quality.drop(variant, policy.accuracy_reference),
                    verdict=verdict, verdict_when="at approval" if stored else "now",
                    override=release.policy_override, types=tuple(plan_of(variant).type_breakdown()),
                    siblings=siblings(variant), fit=fit, fit_error=fit_error)
