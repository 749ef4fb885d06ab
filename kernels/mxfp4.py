"""MXFP4: 32-weight blocks of e2m1 codes under one power-of-two scale, byte-identical to ggml-quants.c.

Quantizing follows ``quantize_row_mxfp4_ref``, which ``ggml_quantize_chunk`` calls for
GGML_TYPE_MXFP4 whether or not an importance matrix is given (``quantize_mxfp4`` ignores
it), and dequantizing ``dequantize_row_mxfp4``. Per block, in C::

    amax = largest |x|
    e    = amax > 0 ? (uint8_t)(floorf(log2f(amax)) - 2 + 127) : 0
    d    = GGML_E8M0_TO_FP32_HALF(e)                           // 2**(e - 128), exactly
    code = first i of 0..15 with the least fabsf(kvalues_mxfp4[i]*d - x)

Three details decide bytes:

* ``floorf(log2f(amax))`` is not always amax's binary exponent: for amax a few ulps
  below a power of two, log2f rounds up to the integer, and e is one higher. Here the
  exponent comes from the float's bits, plus one at or above a per-binade threshold:
  the smallest float whose log2, correctly rounded to float32, reaches the next integer
  (what glibc's log2f returns; tests/kernels/test_mxfp4.py checks every float near
  every power of two against ggml).
* For amax below 2**-125 the exponent is negative and the ``(uint8_t)`` cast of the
  float wraps (x86 GCC converts through int32 and keeps the low byte): e = 232..255,
  a huge d, and every code 0.
* The search scans the doubled e2m1 values ``0 1 2 3 4 6 8 12 0 -1 -2 -3 -4 -6 -8 -12``
  with a strict ``<``, so ties keep the earlier index. Negative candidates never beat
  code 0 for x >= 0, and positive ones never do for x < 0; C rounds ``-k*d - x`` to
  minus the rounding of ``k*d - |x|``, so the code of x is the scan of |x| over the
  eight non-negative values, plus 8 when x < 0 and that code is not 0 (code 8, -0,
  ties with code 0 and is never chosen).

Every product ``k*d`` is exact (d a power of two, k at most 12) unless it overflows to
inf, which only the wrapped exponents of tiny blocks reach and which loses to code 0.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.blocks import pack_nibbles
from kernels.types import TYPES

QK = TYPES["MXFP4"].block_size  # 32 weights per block
# Blocks handled per step inside a chunk: keeps the search's temporaries cache-sized.
_SUB_BLOCKS = 8192

# kvalues_mxfp4 (ggml-common.h): e2m1 values doubled; codes 8..15 are the negatives of 0..7.
KVALUES = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)

# Binary exponents of float32 values, subnormals included.
_MIN_EXP, _MAX_EXP = -149, 127


def _log2_round_up_thresholds() -> np.ndarray:
    """float32 [277]: entry K+149 is the smallest float32 a in [2**K, 2**(K+1)) whose log2,
    correctly rounded to float32, is K+1 (2**(K+1) itself where none is).

    log2(a) rounds up to the integer N = K+1 when it lies within half a float32 spacing
    below N; a >= 2**(N - half spacing) says so. The bound is computed in float64 and
    rounded up to float32 (an irrational log2 never lands on a rounding midpoint).
    """
    out = np.empty(_MAX_EXP - _MIN_EXP + 1, dtype=np.float32)
    for i, k in enumerate(range(_MIN_EXP, _MAX_EXP + 1)):
        n = np.float32(k + 1)
        below = float(n) - float(np.nextafter(n, np.float32(-np.inf)))  # spacing just below N
        bound = np.ldexp(np.exp2(-below / 2), k + 1)
        t = np.float32(bound)
        if float(t) < bound:
            t = np.nextafter(t, np.float32(np.inf))
        out[i] = t
    return out


_THRESHOLDS = torch.from_numpy(_log2_round_up_thresholds())


# ---------------------------------------------------------------- e8m0 exponent
#
#   e: uint8, d = 2**(e - 128) (GGML_E8M0_TO_FP32_HALF; half of the OCP e8m0 scale 2**(e - 127),
#   because kvalues_mxfp4 are the e2m1 values doubled). As float32 bits:
#       e >= 2: (e - 1) << 23            (normal)
#       e <  2: 0x00200000 << e          (subnormal 2**-128, 2**-127)


def e8m0_half(e: torch.Tensor) -> torch.Tensor:
    """GGML_E8M0_TO_FP32_HALF: uint8 or int [...] -> float32 [...] 2**(e - 128), bit for bit
    (e = 255 gives 2**127, as C's bit pattern does)."""
    e = e.to(torch.int32)
    bits = torch.where(e < 2, torch.full_like(e, 0x00200000) << e.clamp(max=1), (e - 1) << 23)
    return bits.view(torch.float32)


def _exponent_byte(amax: torch.Tensor) -> torch.Tensor:
    """C's ``amax > 0 ? (uint8_t)(floorf(log2f(amax)) - 2 + 127) : 0`` on float32 [nb] -> int32 [nb]."""
    sub = amax < 2.0**-126
    scaled = torch.where(sub, amax * 2.0**64, amax)  # exact: brings subnormals into the normal range
    k = ((scaled.view(torch.int32) >> 23) & 0xFF) - 127 - sub.to(torch.int32) * 64  # floor(log2(amax)), exact
    thresholds = _THRESHOLDS.to(amax.device)
    up = amax >= thresholds[(k - _MIN_EXP).clamp(0, _MAX_EXP - _MIN_EXP).long()]
    e = (k + up.to(torch.int32) + 125) & 0xFF  # the uint8 cast wraps below 2**-125
    return torch.where(amax > 0, e, 0)


# ---------------------------------------------------------------- block layout
#
#   block_mxfp4 (17 bytes)
#   +-------------+-----------------------------------------------------------+
#   | e (e8m0) u8 | qs[16]: byte j = code[j] | code[j+16] << 4                 |
#   +-------------+-----------------------------------------------------------+
#   0             1                                                           17
#   x[j] = kvalues_mxfp4[code[j]] * 2**(e - 128), code in 0..15 (bit 3: sign)


def _blocks(xb: torch.Tensor) -> torch.Tensor:
    """quantize_row_mxfp4_ref on blocks xb float32 [nb, 32] -> uint8 [nb, 17]."""
    m = xb.abs()
    e = _exponent_byte(m.amax(dim=1))
    d = e8m0_half(e).unsqueeze(1)
    # best_index_mxfp4 on |x| over the non-negative values: index 0 has error |0*d - m| = m
    best_err = m.clone()
    code = torch.zeros(m.shape, dtype=torch.uint8, device=m.device)
    for i in range(1, 8):
        err = (KVALUES[i] * d - m).abs_()  # k*d exact; one rounding in the subtraction, as in C
        better = err < best_err
        code.masked_fill_(better, i)
        best_err = torch.where(better, err, best_err)
    code |= ((xb < 0) & (code != 0)).to(torch.uint8) << 3
    qs = pack_nibbles(code[:, :16], code[:, 16:])
    return torch.cat([e.to(torch.uint8).unsqueeze(1), qs], dim=1)


def quantize_mxfp4(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """quantize_row_mxfp4_ref: float32 [rows, n] -> uint8 [rows, n/32*17]; the imatrix is
    ignored, as in llama.cpp."""
    xb = x.reshape(-1, QK)
    out = torch.empty((xb.shape[0], TYPES["MXFP4"].type_size), dtype=torch.uint8, device=x.device)
    for i in range(0, xb.shape[0], _SUB_BLOCKS):
        out[i : i + _SUB_BLOCKS] = _blocks(xb[i : i + _SUB_BLOCKS])
    return out.reshape(x.shape[0], -1)


def dequantize_mxfp4(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """dequantize_row_mxfp4: uint8 [rows, n/32*17] -> float32 [rows, n]; ``kvalue * d`` in float32."""
    b = data.reshape(-1, TYPES["MXFP4"].type_size)
    d = e8m0_half(b[:, 0])
    qs = b[:, 1:]
    codes = torch.cat([qs & 0x0F, qs >> 4], dim=1).long()
    kv = torch.tensor(KVALUES, dtype=torch.float32, device=data.device)
    return (kv[codes] * d.unsqueeze(1)).reshape(data.shape[0], n_per_row)
