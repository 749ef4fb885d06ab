"""The release policy: which evidence a release needs and how much it may lose, as data.

Policies live in registry/release_policies.json: a default, per-family overrides (DeepSeek-R1, …), and a
checkpoint's own ``release_policy`` field overriding both, key by key. A policy names the suites that must
have been measured (``required_suites``; ``large_model_suites`` too above LARGE_MODEL_PARAMS weights, where
the task suites are what the study compares), and limits against the reference: ``max_ppl_ratio``,
``max_kld_mean``, ``max_kld_p99``, ``min_top1_percent`` (tier 1, against the reference variant the benchmark
measured: F16, or Q8_0 for 100B+), and ``max_accuracy_drop_percent`` per benchmark ("*" for any other),
relative to the reference score chosen by ``accuracy_reference``: "reference" (the reference variant's own
scores), "published" (the study's baseline row for the family) or "either" (the reference variant where it
measured the benchmark, else the published row). A null limit is not checked.

`evaluate` gives a Verdict line by line; registry.publishing.approve refuses a candidate whose verdict
fails unless the approver writes a justification (then audited and shown wherever the release is).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from django.core.exceptions import ValidationError

from registry import quality as quality_view
from registry.benchmarks import LARGE_MODEL_PARAMS
from registry.evidence import Quality

POLICIES_FILE = Path(__file__).with_name("release_policies.json")
POLICY_VERSION = 1
VERDICT_VERSION = 1
ACCURACY_REFERENCES = ("reference", "published", "either")


@dataclass(frozen=True)
class Policy:
    version: int = POLICY_VERSION
    source: str = "default"  # which layers made it: "default", "default + family DeepSeek-R1", "… + checkpoint"
    required_suites: tuple[str, ...] = ("quality",)
    large_model_suites: tuple[str, ...] = ()
    max_ppl_ratio: Optional[float] = None
    max_kld_mean: Optional[float] = None
    max_kld_p99: Optional[float] = None
    min_top1_percent: Optional[float] = None
    max_accuracy_drop_percent: dict[str, float] = field(default_factory=dict)
    accuracy_reference: str = "reference"

    def accuracy_limit(self, benchmark: str) -> Optional[float]:
        limits = self.max_accuracy_drop_percent
        return limits.get(benchmark, limits.get("*"))

    def to_json(self) -> dict:
        data = asdict(self)
        data["required_suites"], data["large_model_suites"] = list(self.required_suites), list(self.large_model_suites)
        return data


SETTABLE = {f.name for f in fields(Policy)} - {"version", "source"}


def parse(layers: "list[tuple[str, dict]]") -> Policy:
    """Merge policy layers (name, keys) in order into one Policy; ValidationError names a bad key or value."""
    merged: dict = {}
    for name, layer in layers:
        if not isinstance(layer, dict):
            raise ValidationError(f"release policy ({name}) must be a JSON object")
        unknown = sorted(set(layer) - SETTABLE)
        if unknown:
            raise ValidationError(f"release policy ({name}): unknown key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(SETTABLE))}")
        merged.update(layer)
    try:
        policy = Policy(source=" + ".join(name for name, layer in layers if layer or name == "default"),
                        required_suites=tuple(str(s) for s in merged.get("required_suites", ("quality",))),
                        large_model_suites=tuple(str(s) for s in merged.get("large_model_suites", ())),
                        max_ppl_ratio=_limit(merged.get("max_ppl_ratio")),
                        max_kld_mean=_limit(merged.get("max_kld_mean")),
                        max_kld_p99=_limit(merged.get("max_kld_p99")),
                        min_top1_percent=_limit(merged.get("min_top1_percent")),
                        max_accuracy_drop_percent={str(k): float(v) for k, v in
                                                   (merged.get("max_accuracy_drop_percent") or {}).items()},
                        accuracy_reference=merged.get("accuracy_reference", "reference"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"release policy: {exc}") from None
    if policy.accuracy_reference not in ACCURACY_REFERENCES:
        raise ValidationError(f"release policy: accuracy_reference must be one of {', '.join(ACCURACY_REFERENCES)}")
    return policy


def _limit(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a limit must be a number or null, got {value!r}")
    return float(value)


def _data() -> dict:
    return json.loads(POLICIES_FILE.read_text())


def family_layer(family: str) -> dict:
    families = _data()["families"]
    return next((layer for name, layer in families.items() if name.lower() == family.lower()), {})


def policy_for(checkpoint) -> Policy:
    """The checkpoint's policy: the default, its family's keys, its own keys."""
    return parse([("default", _data()["default"]), (f"family {checkpoint.family}", family_layer(checkpoint.family)),
                  ("checkpoint", checkpoint.release_policy or {})])


def required_suites(policy: Policy, checkpoint) -> tuple[str, ...]:
    extra = policy.large_model_suites if checkpoint.parameter_count > LARGE_MODEL_PARAMS else ()
    return tuple(dict.fromkeys((*policy.required_suites, *extra)))


# -- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One line of a verdict: what was checked, the measured figure, the limit, and whether it holds."""

    name: str
    passed: bool
    measured: Optional[float]
    limit: Optional[float]
    message: str


@dataclass(frozen=True)
class Verdict:
    version: int = VERDICT_VERSION
    policy: str = ""
    reference: str = ""  # what tier-1 figures are measured against
    passed: bool = False
    checks: tuple[Check, ...] = ()

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        data = asdict(self)
        data["checks"] = list(data["checks"])
        return data

    @classmethod
    def from_json(cls, data: "dict | None") -> "Optional[Verdict]":
        if not data:
            return None
        if data.get("version") != VERDICT_VERSION:
            raise ValueError(f"release policy verdict version {data.get('version')!r}; this code reads {VERDICT_VERSION}")
        return cls(policy=data["policy"], reference=data["reference"], passed=data["passed"],
                   checks=tuple(Check(**c) for c in data["checks"]))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _at_most(name: str, measured: Optional[float], limit: Optional[float], what: str) -> Optional[Check]:
    if limit is None:
        return None
    if measured is None:
        return Check(name, False, None, limit, f"{what}: not measured (limit {_fmt(limit)})")
    ok = measured <= limit
    return Check(name, ok, measured, limit, f"{what} {_fmt(measured)} {'≤' if ok else 'is above the limit'} {_fmt(limit)}")


def evaluate(variant, policy: "Policy | None" = None) -> Verdict:
    """Check a variant's evidence against its checkpoint's policy, line by line."""
    checkpoint = variant.checkpoint
    policy = policy or policy_for(checkpoint)
    quality = Quality.from_json(variant.quality)
    drop = quality_view.drop(variant, policy.accuracy_reference)
    reference = drop.reference or "the reference"
    checks: list[Check] = []
    for suite in required_suites(policy, checkpoint):
        done = suite in quality.suites
        checks.append(Check(f"suite:{suite}", done, None, None,
                            f"the {suite!r} suite was measured" if done else
                            f"no results of the {suite!r} suite, which the policy requires"))
    t = quality.tier1
    for name, measured, limit, what in (
            ("ppl_ratio", t and t.ppl_ratio, policy.max_ppl_ratio, f"PPL ratio vs {reference}"),
            ("kld_mean", t and t.kld_mean, policy.max_kld_mean, f"mean KLD vs {reference}"),
            ("kld_p99", t and t.kld_p99, policy.max_kld_p99, f"p99 KLD vs {reference}")):
        if (check := _at_most(name, measured, limit, what)) is not None:
            checks.append(check)
    if policy.min_top1_percent is not None:
        top1, limit = (t.top1_percent if t else None), policy.min_top1_percent
        checks.append(Check("top1_percent", top1 is not None and top1 >= limit, top1, limit,
                            f"top-1 agreement with {reference}: not measured (at least {_fmt(limit)} %)" if top1 is None
                            else f"top-1 agreement with {reference} {top1:.2f} % "
                                 f"{'≥' if top1 >= limit else 'is below the minimum'} {_fmt(limit)} %"))
    for s in drop.scores:
        limit = policy.accuracy_limit(s.benchmark)
        if limit is None:
            continue
        if s.drop_percent is None:
            checks.append(Check(f"accuracy:{s.benchmark}", False, None, limit,
                                f"{s.benchmark}: no reference score to measure the drop against "
                                f"(accuracy_reference {policy.accuracy_reference})"))
            continue
        ok = s.drop_percent <= limit
        checks.append(Check(f"accuracy:{s.benchmark}", ok, s.drop_percent, limit,
                            f"{s.benchmark} accuracy drop {s.drop_percent:.2f} % vs {s.reference} "
                            f"{'≤' if ok else 'is above the limit'} {_fmt(limit)} %"))
    return Verdict(policy=policy.source, reference=drop.reference, passed=all(c.passed for c in checks),
                   checks=tuple(checks))


class PolicyRefusal(ValidationError):
    """Approval refused: the candidate fails its release policy and no justification was written."""

    def __init__(self, release, verdict: Verdict):
        self.verdict = verdict
        super().__init__(f"release {release} fails its release policy ({verdict.policy}): "
                         + "; ".join(verdict.failures)
                         + ". An approver may override it only with a written justification (override).")


def set_for(checkpoint, overrides: dict, user=None) -> Policy:
    """Store a checkpoint's own policy keys (validated first), audited; {} returns it to its family's."""
    from registry.models import AuditLog

    policy = parse([("default", _data()["default"]), (f"family {checkpoint.family}", family_layer(checkpoint.family)),
                    ("checkpoint", overrides)])
    checkpoint.release_policy = overrides
    checkpoint.save(update_fields=["release_policy"])
    AuditLog.record(user, "checkpoint.release_policy", checkpoint, overrides=overrides)
    return policy
