"""Triton codecs: the GPU backend beside the PyTorch reference, byte-identical to it.

Imported lazily: kernels.api reaches this package only for CUDA tensors (or when
DSQ_KERNELS_BACKEND=triton forces it, e.g. under TRITON_INTERPRET=1 in the tests), so
CPU-only machines without triton never import it. The codecs themselves load on first use.

Every codec has the reference codecs' signature (kernels.codecs):
    fn(x: float32 [rows, n_per_row] contiguous, imatrix: float32 [n_per_row] | None)
        -> uint8 [rows, row_bytes]
with x and imatrix on one device (CUDA, or CPU under the interpreter), already validated.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

# GGML type -> "module:function". Data, not discovery: a type is here once its kernel exists.
TRITON_CODECS: dict[str, str] = {
    "Q8_0": "kernels.triton.legacy:quantize_q8_0",
    "Q4_0": "kernels.triton.legacy:quantize_q4_0",
    "Q4_1": "kernels.triton.legacy:quantize_q4_1",
    "Q5_0": "kernels.triton.legacy:quantize_q5_0",
    "Q5_1": "kernels.triton.legacy:quantize_q5_1",
    "Q4_K": "kernels.triton.q45_k:quantize_q4_k",
    "Q5_K": "kernels.triton.q45_k:quantize_q5_k",
    "Q6_K": "kernels.triton.q6_k:quantize_q6_k",
    "Q3_K": "kernels.triton.q3_k:quantize_q3_k",
    "Q2_K": "kernels.triton.q2_k:quantize_q2_k",
}

Codec = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
_LOADED: dict[str, Codec] = {}


def available() -> bool:
    """Whether triton can be imported here (it may still lack a GPU: see kernels.api)."""
    try:
        importlib.import_module("triton")
    except Exception:  # ImportError, or a broken install raising at import
        return False
    return True


def codec(name: str) -> Codec:
    """The Triton quantizer of GGML type name (a key of TRITON_CODECS), imported on first use."""
    fn = _LOADED.get(name)
    if fn is None:
        module, func = TRITON_CODECS[name].split(":")
        fn = getattr(importlib.import_module(module), func)
        _LOADED[name] = fn
    return fn
