"""The typed shapes of the JSON the registry stores and other modules read.

Three JSON columns cross modules: ``Variant.quality`` (written by the benchmark worker through
registry.benchmarks, read by the drop report, the review page, the policy and the model card),
``Variant.plan`` (written by the quantize worker, read by the fit view and the review page) and
``BenchmarkJob.result`` (written by the benchmark worker, read through the API). Each has one
dataclass here, with a ``version``; writers store ``to_json()`` and readers go through
``from_json()``, so a shape exists once. Migration 0006 rewrote the rows stored before these types.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

QUALITY_VERSION = 1
PLAN_VERSION = 1
BENCHMARK_RESULT_VERSION = 1


class ShapeError(ValueError):
    """A stored JSON value is not the shape (or version) this code reads."""


def _check_version(kind: str, data: dict, version: int) -> None:
    if data.get("version") != version:
        raise ShapeError(f"{kind} has version {data.get('version')!r}; this code reads version {version} "
                         f"(run the migrations)")


def _finite(x: Any) -> Optional[float]:
    """A float JSON can hold (NaN and infinities become null)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: PostgreSQL's jsonb refuses them."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# -- Variant.quality ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TierOne:
    """Perplexity and KL divergence of a variant against its reference, on the same text (quant.eval.kld)."""

    ppl: float
    ppl_uncertainty: Optional[float]  # llama-perplexity's ±
    reference_ppl: float
    reference_ppl_uncertainty: Optional[float]
    ppl_ratio: float
    kld_mean: float
    kld_mean_uncertainty: Optional[float]
    kld_p99: Optional[float]  # None only on rows migrated from a summary that lacked it
    kld_max: Optional[float]
    top1_percent: float  # how often the variant's top token is the reference's
    rms_dp_percent: Optional[float]
    n_positions: int

    @classmethod
    def from_evaluation(cls, result: dict, reference_ppl_uncertainty: Optional[float] = None) -> "TierOne":
        """From quant.eval.kld.VariantQuality.as_dict(), the benchmark worker's measurement."""
        ppl = result["perplexity"]
        return cls(ppl=float(ppl["ppl"]), ppl_uncertainty=_finite(ppl.get("uncertainty")),
                   reference_ppl=float(result["reference_ppl"]),
                   reference_ppl_uncertainty=_finite(reference_ppl_uncertainty),
                   ppl_ratio=float(result["ppl_ratio"]), kld_mean=float(result["kld_mean"]),
                   kld_mean_uncertainty=_finite(result.get("kld_mean_uncertainty")),
                   kld_p99=float(result["kld_p99"]), kld_max=float(result["kld_max"]),
                   top1_percent=100.0 * float(result["top1_agreement"]),
                   rms_dp_percent=100.0 * float(result["rms_dp"]) if result.get("rms_dp") is not None else None,
                   n_positions=int(result["n_positions"]))

    @classmethod
    def of_reference(cls, ppl: float, uncertainty: Optional[float], n_positions: int) -> "TierOne":
        """The reference measured against itself: its own PPL, no divergence."""
        return cls(ppl=ppl, ppl_uncertainty=_finite(uncertainty), reference_ppl=ppl,
                   reference_ppl_uncertainty=_finite(uncertainty), ppl_ratio=1.0, kld_mean=0.0,
                   kld_mean_uncertainty=0.0, kld_p99=0.0, kld_max=0.0, top1_percent=100.0, rms_dp_percent=0.0,
                   n_positions=n_positions)


@dataclass(frozen=True)
class Score:
    """A task score in percent: mean and standard deviation over repeated runs (None: one run)."""

    mean: float
    std: Optional[float] = None
    runs: tuple[float, ...] = ()


@dataclass(frozen=True)
class Quality:
    """Variant.quality: what the benchmark jobs measured of one variant.

    ``reference`` names the variant every drop is measured against ("F16 #3"; ``reference_variant`` its
    id); ``baseline`` is true on that reference itself. ``suites`` lists the suites measured (their full
    results are the benchmark jobs'). ``scores`` are task scores by benchmark name, in percent.
    """

    version: int = QUALITY_VERSION
    reference: str = ""
    reference_variant: Optional[int] = None
    baseline: bool = False
    tier1: Optional[TierOne] = None
    scores: dict[str, Score] = field(default_factory=dict)
    suites: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.tier1 is not None or bool(self.scores)

    def to_json(self) -> dict:
        data = asdict(self)
        data["suites"] = list(self.suites)
        for s in data["scores"].values():
            s["runs"] = list(s["runs"])
        return data

    @classmethod
    def from_json(cls, data: "dict | None") -> "Quality":
        """The stored value; {} (never measured) is an empty Quality."""
        if not data:
            return cls()
        _check_version("Variant.quality", data, QUALITY_VERSION)
        try:
            tier1 = TierOne(**data["tier1"]) if data.get("tier1") else None
            scores = {name: Score(float(s["mean"]), _finite(s.get("std")), tuple(s.get("runs") or ()))
                      for name, s in (data.get("scores") or {}).items()}
            return cls(reference=data.get("reference", ""), reference_variant=data.get("reference_variant"),
                       baseline=bool(data.get("baseline")), tier1=tier1, scores=scores,
                       suites=tuple(data.get("suites") or ()))
        except (KeyError, TypeError) as exc:
            raise ShapeError(f"Variant.quality does not have the version {QUALITY_VERSION} shape: {exc}") from None


# -- Variant.plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    type: str
    shape: Optional[tuple[int, ...]]  # None on rows migrated from before shapes were stored
    bytes: Optional[int]

    @property
    def n_weights(self) -> Optional[int]:
        return math.prod(self.shape) if self.shape is not None else None


@dataclass(frozen=True)
class TypeShare:
    """One row of the tensor-type breakdown: how many tensors, weights and bytes a GGML type holds."""

    type: str
    tensors: int
    weights: Optional[int]
    bytes: Optional[int]
    weight_percent: Optional[float]


@dataclass(frozen=True)
class Plan:
    """Variant.plan: what the quantizer wrote, tensor by tensor (quant.convert.ConversionResult)."""

    version: int = PLAN_VERSION
    recipe: str = ""
    recipe_sha256: str = ""
    arch: str = ""
    n_params: int = 0
    seconds: Optional[float] = None
    tensors: tuple[PlannedTensor, ...] = ()

    @classmethod
    def from_conversion(cls, result) -> "Plan":
        return cls(recipe=result.recipe_name, recipe_sha256=result.recipe_sha256, arch=result.arch,
                   n_params=result.n_params, seconds=result.seconds,
                   tensors=tuple(PlannedTensor(t.name, t.type, tuple(t.shape), int(t.nbytes)) for t in result.tensors))

    def tensor_bytes(self) -> Optional[list[tuple[str, int]]]:
        """[(name, bytes)] for quant.fit, or None when some tensor's size was never stored."""
        if not self.tensors or any(t.bytes is None for t in self.tensors):
            return None
        return [(t.name, t.bytes) for t in self.tensors]

    def type_breakdown(self) -> list[TypeShare]:
        """Weights and bytes per GGML type, most weights first."""
        by_type: dict[str, list[PlannedTensor]] = {}
        for t in self.tensors:
            by_type.setdefault(t.type, []).append(t)
        known = all(t.n_weights is not None for t in self.tensors)
        total = sum(t.n_weights for t in self.tensors) if known else 0
        rows = []
        for name, ts in by_type.items():
            weights = sum(t.n_weights for t in ts) if known else None
            size = sum(t.bytes for t in ts) if all(t.bytes is not None for t in ts) else None
            rows.append(TypeShare(name, len(ts), weights, size,
                                  100.0 * weights / total if weights is not None and total else None))
        return sorted(rows, key=lambda r: (-(r.weights or 0), -r.tensors, r.type))

    def to_json(self) -> dict:
        data = asdict(self)
        data["tensors"] = [dict(t, shape=list(t["shape"]) if t["shape"] is not None else None) for t in data["tensors"]]
        return data

    @classmethod
    def from_json(cls, data: "dict | None") -> "Plan":
        if not data:
            return cls()
        _check_version("Variant.plan", data, PLAN_VERSION)
        try:
            tensors = tuple(PlannedTensor(t["name"], t["type"], tuple(t["shape"]) if t.get("shape") is not None else None,
                                          int(t["bytes"]) if t.get("bytes") is not None else None)
                            for t in data.get("tensors") or ())
            return cls(recipe=data.get("recipe", ""), recipe_sha256=data.get("recipe_sha256", ""),
                       arch=data.get("arch", ""), n_params=int(data.get("n_params") or 0),
                       seconds=data.get("seconds"), tensors=tensors)
        except (KeyError, TypeError, ValueError) as exc:
            raise ShapeError(f"Variant.plan does not have the version {PLAN_VERSION} shape: {exc}") from None


# -- BenchmarkJob.result -------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkResult:
    """BenchmarkJob.result: one suite's measurement of one variant.

    ``tier1`` for the "quality" suite, ``scores`` for task suites; ``detail`` is quant.eval's own full
    result (VariantQuality.as_dict() or SuiteResult.as_dict()), kept for whoever wants every figure.
    A task suite also records ``server`` (the command the evaluation server ran and what it reported,
    paths masked) and ``outputs_dir`` (each question's prompt and raw output, relative to storage).
    """

    version: int = BENCHMARK_RESULT_VERSION
    suite: str = ""
    reference: str = ""
    tier1: Optional[TierOne] = None
    scores: dict[str, Score] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    server: dict = field(default_factory=dict)
    outputs_dir: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        for s in data["scores"].values():
            s["runs"] = list(s["runs"])
        data["detail"] = _json_safe(data["detail"])
        return data

    @classmethod
    def from_json(cls, data: "dict | None") -> "BenchmarkResult":
        if not data:
            return cls()
        _check_version("BenchmarkJob.result", data, BENCHMARK_RESULT_VERSION)
        return cls(suite=data.get("suite", ""), reference=data.get("reference", ""),
                   tier1=TierOne(**data["tier1"]) if data.get("tier1") else None,
                   scores={n: Score(float(s["mean"]), s.get("std"), tuple(s.get("runs") or ()))
                           for n, s in (data.get("scores") or {}).items()},
                   detail=data.get("detail") or {}, server=data.get("server") or {},
                   outputs_dir=data.get("outputs_dir", ""))


def quality_of(variant) -> Quality:
    return Quality.from_json(variant.quality)


def plan_of(variant) -> Plan:
    return Plan.from_json(variant.plan)
