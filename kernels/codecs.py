"""Which functions implement each GGML type of kernels.types: the codec table, as data.

Every codec provides, for its type:
    quantize(x: float32 [rows, n], imatrix: float32 [n] | None) -> uint8 [rows, row_bytes]
    dequantize(data: uint8 [rows, row_bytes], n_per_row: int) -> float32 [rows, n]
The callers (kernels.api) have already validated shapes, dtypes and finiteness.
A new type is a row in kernels.types.TYPES and a row here (tests/kernels/test_codecs.py
checks that the two tables list the same types).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from kernels import floats, legacy, mxfp4, q2_k, q3_k, q45_k, q6_k

Quantizer = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Dequantizer = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Codec:
    quantize: Quantizer
    dequantize: Dequantizer
    # Whether the type's CPU codec runs compiled kernels (kernels.fused). The others never
    # load torch.compile, whose machinery costs a process a few hundred MiB.
    compiled: bool = False


CODECS: dict[str, Codec] = {
    "F32": Codec(floats.quantize_f32, floats.dequantize_f32),
    "F16": Codec(floats.quantize_f16, floats.dequantize_f16),
    "BF16": Codec(floats.quantize_bf16, floats.dequantize_bf16),
    "Q4_0": Codec(legacy.quantize_q4_0, legacy.dequantize_q4_0),
    "Q4_1": Codec(legacy.quantize_q4_1, legacy.dequantize_q4_1),
    "Q5_0": Codec(legacy.quantize_q5_0, legacy.dequantize_q5_0),
    "Q5_1": Codec(legacy.quantize_q5_1, legacy.dequantize_q5_1),
    "Q8_0": Codec(legacy.quantize_q8_0, legacy.dequantize_q8_0, compiled=True),
    "MXFP4": Codec(mxfp4.quantize_mxfp4, mxfp4.dequantize_mxfp4),
    "Q2_K": Codec(q2_k.quantize_q2_k, q2_k.dequantize_q2_k, compiled=True),
    "Q3_K": Codec(q3_k.quantize_q3_k, q3_k.dequantize_q3_k, compiled=True),
    "Q4_K": Codec(q45_k.quantize_q4_k, q45_k.dequantize_q4_k, compiled=True),
    "Q5_K": Codec(q45_k.quantize_q5_k, q45_k.dequantize_q5_k, compiled=True),
    "Q6_K": Codec(q6_k.quantize_q6_k, q6_k.dequantize_q6_k, compiled=True),
}
