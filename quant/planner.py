"""Plan a quantized GGUF from config.json: every tensor's type and bytes, and the file size.

Nothing is read but the config (and, optionally, tokenizer files for an exact
metadata size), so a 671B model plans in well under a second. Sizes follow
llama.cpp: a tensor's bytes are rows x row bytes of its type; every tensor is
padded to the 32-byte alignment; bits per weight is tensor bytes x 8 / weights
(as llama.cpp's loader reports it, without the metadata).

Each tensor's type and bytes are decided by :func:`plan_tensor`, the one decision
conversion (quant.convert.plan_conversion) makes too: what `dsq plan` prints is what
`dsq quantize` writes.

DQ3_K_M reconstruction against the published DeepSeek-R1 DQ3_K_M
(281 GiB, 3.59 bpw): our plan gives 299,242,532,832 bytes = 278.69 GiB and
3.568 bpw (``dsq plan --config quant/configs/DeepSeek-R1.json --recipe DQ3_K_M``),
0.82 % (2.3 GiB) under the published size, while the same planner matches
llama.cpp's published DeepSeek-V3-0324 Q8_0/Q6_K/Q5_K_M/Q4_K_M files within
0.03 %. The routed-expert split (2/12/44 layers) is the study's; the 2.3 GiB
must come from tensors the study kept above Q3_K_M that its description does
not list (for scale: each routed-expert ffn_down layer moved from Q3_K to
Q4_K adds 0.46 GiB, so five more such layers would account for it).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quant import architectures, gguf_size
from quant.gguf_file import TensorInfo, padded
from quant.recipes import ModelFacts, Recipe, get_recipe, is_quantizable, row_nbytes


@dataclass(frozen=True)
class Plan:
    recipe: str
    recipe_sha256: str
    arch: str
    n_layer: int
    tensors: list[TensorInfo]
    metadata_bytes: int

    @property
    def tensor_bytes(self) -> int:
        """Tensor data without padding (what llama.cpp's BPW is computed from)."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        """The GGUF file size: metadata plus every tensor padded to the alignment."""
        return self.metadata_bytes + sum(padded(t.nbytes) for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.tensor_bytes / self.n_params

    def type_summary(self) -> dict[str, dict[str, int]]:
        """Per GGML type: tensor count, weights and bytes."""
        out: dict[str, dict[str, int]] = {}
        for t in self.tensors:
            row = out.setdefault(t.type, {"tensors": 0, "weights": 0, "bytes": 0})
            row["tensors"] += 1
            row["weights"] += t.n_elements
            row["bytes"] += t.nbytes
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "recipe_sha256": self.recipe_sha256,
            "arch": self.arch,
            "n_layer": self.n_layer,
            "n_params": self.n_params,
            "metadata_bytes": self.metadata_bytes,
            "tensor_bytes": self.tensor_bytes,
            "total_bytes": self.total_bytes,
            "bits_per_weight": round(self.bits_per_weight, 4),
            "types": self.type_summary(),
            "tensors": [
                {"name": t.name, "shape": list(t.shape), "type": t.type, "bytes": t.nbytes} for t in self.tensors
            ],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def tensor_nbytes(qtype: str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of this shape (PyTorch order) stored as qtype."""
    return math.prod(shape[:-1]) * row_nbytes(qtype, shape[-1])


def plan_tensor(
    recipe: Recipe,
    name: str,
    shape: tuple[int, ...],
    n_layer: int,
    facts: ModelFacts,
    *,
    source_type: "str | None" = None,
) -> TensorInfo:
    """One tensor's type and bytes: the single decision `dsq plan` and conversion share.

    The recipe picks the type; a tensor llama.cpp never quantizes keeps its source type when
    the source is a GGUF (llama-quantize copies it), and the converter's F32 otherwise."""
    qtype = recipe.tensor_type(name, shape, n_layer, facts)
    if source_type is not None and not is_quantizable(name, shape):
        qtype = source_type
    return TensorInfo(name, tuple(shape), qtype, tensor_nbytes(qtype, shape))


def plan(
    config: dict[str, Any],
    recipe: "Recipe | str",
    *,
    tokenizer_json: "str | Path | None" = None,
    tokenizer_config: "str | Path | None" = None,
) -> Plan:
    """The full tensor list of config's GGUF under recipe, with types, bytes and file size."""
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    arch = architectures.gguf_arch(config)
    n_layer = architectures.n_layer(config)
    facts = architectures.model_facts(config)
    tensors = [
        plan_tensor(recipe, name, shape, n_layer, facts, source_type=architectures.kept_type(arch, name))
        for name, shape in architectures.tensor_specs(config)
    ]
    meta = gguf_size.metadata_bytes(
        arch, config, [(t.name, len(t.shape)) for t in tensors],
        tokenizer_json=tokenizer_json, tokenizer_config=tokenizer_config,
    )
    return Plan(recipe.name, recipe.sha256, arch, n_layer, tensors, meta)
