"""Small builders for registry rows used across tests."""
from __future__ import annotations

import hashlib

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
