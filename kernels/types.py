"""GGML tensor types: block geometry as data.

Byte counts are written as the sum of a block's fields so the layout can be
checked against ggml-common.h by reading, not by running.
"""
from __future__ import annotations

from dataclasses import dataclass

import gguf

QK_K = 256  # super-block size of the K-quants


@dataclass(frozen=True)
class QType:
    name: str
    block_size: int  # weights per block
    type_size: int  # bytes per block

    @property
    def ggml_type(self) -> gguf.GGMLQuantizationType:
        return gguf.GGMLQuantizationType[self.name]


TYPES: dict[str, QType] = {
    t.name: t
    for t in (
        QType("F32", 1, 4),
        QType("F16", 1, 2),
        QType("BF16", 1, 2),
        QType("Q4_0", 32, 2 + 32 // 2),  # d, 4-bit codes
        QType("Q4_1", 32, 2 + 2 + 32 // 2),  # d, m, 4-bit codes
        QType("Q5_0", 32, 2 + 4 + 32 // 2),  # d, high bits, low nibbles
        QType("Q5_1", 32, 2 + 2 + 4 + 32 // 2),  # d, m, high bits, low nibbles
        QType("Q8_0", 32, 2 + 32),  # d, int8 codes
        QType("MXFP4", 32, 1 + 32 // 2),  # e8m0 exponent e, 4-bit e2m1 codes
        QType("Q2_K", QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),  # scales, codes, d, dmin
        QType("Q3_K", QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),  # hmask, codes, scales, d
        QType("Q4_K", QK_K, 2 + 2 + 12 + QK_K // 2),  # d, dmin, scales, codes
        QType("Q5_K", QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),  # d, dmin, scales, qh, qs
        QType("Q6_K", QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),  # ql, qh, scales, d
    )
}


def qtype(q: "str | gguf.GGMLQuantizationType | QType") -> QType:
    """Resolve a type name, a gguf enum value or a QType; ValueError when unsupported."""
    if isinstance(q, QType):
        return q
    if isinstance(q, gguf.GGMLQuantizationType):
        name = q.name
    elif isinstance(q, str):
        name = q.upper()
    else:
        raise ValueError(f"qtype must be a type name or gguf.GGMLQuantizationType, got {q!r}")
    try:
        return TYPES[name]
    except KeyError:
        raise ValueError(f"unsupported GGML type {name!r}; supported: {', '.join(TYPES)}") from None


def block_size(q: "str | gguf.GGMLQuantizationType") -> int:
    """Weights per block of type q."""
    return qtype(q).block_size


def row_bytes(q: "str | gguf.GGMLQuantizationType", n_per_row: int) -> int:
    """Bytes one row of n_per_row weights takes in type q; ValueError if blocks do not divide it."""
    t = qtype(q)
    if n_per_row <= 0 or n_per_row % t.block_size:
        raise ValueError(f"row length {n_per_row} is not a positive multiple of {t.name}'s block size {t.block_size}")
    return n_per_row // t.block_size * t.type_size
