"""Small builders for registry rows used across tests."""
from __future__ import annotations

import hashlib
import math

from pathlib import Path

from quant import configs
from quant.builtin_recipes import RECIPES
from quant.recipes import load_recipe
from registry.models import ArtifactFile, Checkpoint, QuantizationJob, Recipe, Release, Variant


def checkpoint(name: str = "tiny-v3", **fields) -> Checkpoint:
    defaults = dict(family="DeepSeek-V3", architecture="deepseek2", source_dtype="BF16", config={})
    defaults.update(fields)
    return Checkpoint.objects.create(name=name, **defaults)


def recipe(name: str = "Q4_K_M", version: int = 1, definition: "dict | None" = None) -> Recipe:
    """A recipe row as Recipe.register stores one (the definition with its version, the parsed recipe's
    hash), at the version asked for: the built-in of that name, else every quantizable tensor Q4_K."""
    definition = definition or next((r for r in RECIPES if r["name"] == name), {"name": name, "default_type": "Q4_K"})
    stored = dict(definition, version=version)
    return Recipe.objects.create(name=name, version=version, sha256=load_recipe(stored).sha256, definition=stored)


def quantization_job(ckpt: "Checkpoint | None" = None, rcp: "Recipe | None" = None, **fields) -> QuantizationJob:
    ckpt = ckpt or checkpoint()
    rcp = rcp or recipe()
    key = fields.pop("request_key", hashlib.sha256(f"{ckpt.pk}:{rcp.pk}:{fields}".encode()).hexdigest())
    return QuantizationJob.objects.create(checkpoint=ckpt, recipe=rcp, request_key=key, **fields)


def builtin_recipe(name: str) -> Recipe:
    """A built-in recipe (from quant.builtin_recipes) registered as the registry does it."""
    definition = next(r for r in RECIPES if r["name"] == name)
    return Recipe.register(definition, builtin=True)[0]


def deepseek_checkpoint(name: str = "deepseek-r1", config_name: str = "DeepSeek-R1") -> Checkpoint:
    return Checkpoint.register(name=name, family="DeepSeek-R1", config=configs.load_config(config_name),
                               hf_repo=f"deepseek-ai/{config_name}", source_dtype="FP8")


def variant(ckpt: "Checkpoint | None" = None, rcp: "Recipe | None" = None, *, storage: "Path | None" = None,
            files: "dict[str, bytes] | None" = None, **fields) -> Variant:
    """A ready variant; with `storage`, its files are written there and recorded with sizes and hashes."""
    ckpt = ckpt or checkpoint()
    rcp = rcp or recipe()
    defaults = dict(status=Variant.Status.READY, total_bytes=1000, bits_per_weight=4.5,
                    storage_path=f"variants/{ckpt.name}/{rcp.name}-{rcp.version}")
    defaults.update(fields)
    v = Variant.objects.create(checkpoint=ckpt, recipe=rcp, **defaults)
    for name, data in (files or {}).items():
        if storage is not None:
            path = Path(storage) / v.storage_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        ArtifactFile.objects.create(variant=v, name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return v


def release(v: "Variant | None" = None, *, by, **fields) -> Release:
    return Release.request(v or variant(), by, **fields)


def measured(v: Variant, reference: Variant, *, ppl: float = 5.4, reference_ppl: float = 5.1,
             ppl_uncertainty: float = 0.12, reference_ppl_uncertainty: float = 0.11, kld_mean: float = 0.05,
             kld_p99: float = 0.42, top1: float = 0.91, n_positions: int = 2032) -> Variant:
    """Tier-1 evidence as the benchmark worker records it: quant.eval's VariantQuality of `v` against
    `reference`, through registry.benchmarks.record_tier1 (the one writer of Variant.quality)."""
    from quant.eval.kld import VariantQuality
    from quant.eval.perplexity import PerplexityResult
    from registry.benchmarks import record_tier1

    result = VariantQuality(
        perplexity=PerplexityResult(ppl, ppl_uncertainty, math.log(ppl), n_positions, 8, []),
        reference_ppl=reference_ppl, ppl_ratio=ppl / reference_ppl, kld_mean=kld_mean,
        kld_mean_uncertainty=kld_mean / 20, kld_median=kld_mean / 2, kld_p99=kld_p99, kld_max=2 * kld_p99,
        top1_agreement=top1, rms_dp=0.04, n_positions=n_positions)
    record_tier1(v, reference, result.as_dict(), reference_ppl_uncertainty=reference_ppl_uncertainty)
    v.refresh_from_db()
    reference.refresh_from_db()
    return v


def scored(v: Variant, runs: "dict[str, list[float]]", suite: str = "deepseek-paper") -> Variant:
    """Task-suite scores as the benchmark worker records them: quant.eval.harness's SuiteResult (runs in
    percent, one per repeat) through registry.benchmarks.record_scores."""
    from quant.eval.harness import BenchmarkScore, SuiteResult
    from registry.benchmarks import record_scores

    result = SuiteResult(suite, [BenchmarkScore(name, None, "acc", tuple(r)) for name, r in runs.items()])
    record_scores(v, suite, result.as_dict())
    v.refresh_from_db()
    return v


def reference_and_candidate(ckpt: "Checkpoint | None" = None, quant: str = "DQ3_K_M", **measures) -> "tuple[Variant, Variant]":
    """The checkpoint's F16 reference and a variant of `quant` measured against it (within the default policy
    unless `measures` say otherwise)."""
    ckpt = ckpt or checkpoint()
    ref = variant(ckpt, recipe("F16"), bits_per_weight=16.0, total_bytes=4000)
    v = variant(ckpt, recipe(quant), bits_per_weight=3.59, total_bytes=900)
    measured(v, ref, **measures)
    return ref, v


def plan_of_conversion(tensors: "list[tuple[str, tuple[int, ...], str, int]]", recipe_name: str = "custom") -> dict:
    """Variant.plan as the quantize worker stores it: registry.evidence.Plan of a quant.convert.ConversionResult
    with these (name, shape, type, bytes) tensors."""
    from quant.convert import ConversionResult, TensorResult
    from registry.evidence import Plan

    result = ConversionResult(files=[], tensors=[TensorResult(n, s, t, b, 0) for n, s, t, b in tensors],
                              recipe_name=recipe_name, recipe_sha256="0" * 64, arch="deepseek2",
                              n_params=sum(math.prod(s) for _, s, _, _ in tensors),
                              total_bytes=sum(b for *_, b in tensors), seconds=0.0)
    return Plan.from_conversion(result).to_json()
