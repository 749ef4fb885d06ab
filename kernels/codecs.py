"""Which module implements each GGML type: a table, imported lazily.

Every codec module provides, for each type it declares here:
    quantize_<name>(x: float32 [rows, n], imatrix: float32 [n] | None) -> uint8 [rows, row_bytes]
    dequantize_<name>(data: uint8 [rows, row_bytes], n_per_row: int) -> float32 [rows, n]
The callers (kernels.api) have already validated shapes, dtypes and finiteness.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

CODEC_MODULES: dict[str, str] = {
    "F32": "kernels.floats",
    "F16": "kernels.floats",
    "BF16": "kernels.floats",
    "Q4_0": "kernels.legacy",
    "Q4_1": "kernels.legacy",
    "Q5_0": "kernels.legacy",
    "Q5_1": "kernels.legacy",
    "Q8_0": "kernels.legacy",
    "Q2_K": "kernels.q2_k",
    "Q3_K": "kernels.q3_k",
    "Q4_K": "kernels.q45_k",
    "Q5_K": "kernels.q45_k",
    "Q6_K": "kernels.q6_k",
}

# Types whose searches run as compiled kernels on CPU (kernels.fused); the others never
# load torch.compile (its machinery costs a process a few hundred MiB).
COMPILED = frozenset({"Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})

Quantizer = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Dequantizer = Callable[[torch.Tensor, int], torch.Tensor]


def quantizer(name: str) -> Quantizer:
    return getattr(importlib.import_module(CODEC_MODULES[name]), f"quantize_{name.lower()}")


def dequantizer(name: str) -> Dequantizer:
    return getattr(importlib.import_module(CODEC_MODULES[name]), f"dequantize_{name.lower()}")
