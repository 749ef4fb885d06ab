"""Small builders for registry rows used across tests."""
from __future__ import annotations

import hashlib
import json

from registry.models import Checkpoint, QuantizationJob, Recipe


def checkpoint(name: str = "tiny-v3", **fields) -> Checkpoint:
    defaults = dict(family="DeepSeek-V3", architecture="deepseek2", source_dtype="BF16", config={})
    defaults.update(fields)
    return Checkpoint.objects.create(name=name, **defaults)


def recipe(name: str = "Q4_K_M", version: int = 1, definition: "dict | None" = None) -> Recipe:
    definition = definition or {"name": name, "default": "Q4_K", "rules": []}
    sha = hashlib.sha256(json.dumps([definition, version], sort_keys=True).encode()).hexdigest()
    return Recipe.objects.create(name=name, version=version, sha256=sha, definition=definition)


def quantization_job(ckpt: "Checkpoint | None" = None, rcp: "Recipe | None" = None, **fields) -> QuantizationJob:
    ckpt = ckpt or checkpoint()
    rcp = rcp or recipe()
    key = fields.pop("request_key", hashlib.sha256(f"{ckpt.pk}:{rcp.pk}:{fields}".encode()).hexdigest())
    return QuantizationJob.objects.create(checkpoint=ckpt, recipe=rcp, request_key=key, **fields)
