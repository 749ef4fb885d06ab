"""Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: 32-weight blocks, byte-identical to ggml-quants.c.

Without an importance matrix each type follows ``quantize_row_<t>_ref``; with one,
Q4_0..Q5_1 follow ``quantize_row_<t>_impl`` (weighted scale search) and Q8_0
ignores it, exactly as ``ggml_quantize_chunk`` does.

All arithmetic is float32 in C's order. The reference paths have no in-block
sums, so they work on ``[n_blocks, 32]``; the imatrix paths use the
position-major layout of kernels.blocks (``[32, n_blocks]``) for their
sequential sums.
"""
from __future__ import annotations

import torch

from kernels import fused
from kernels.arith import (
    div, f32, f32_tensor, first_abs_max, first_min_max, fp16_byte_pair, fp16_bytes, fp16_from_bytes,
    importance_weights, reciprocal_or_zero, select, sum_squares,
)
from kernels.blocks import Workspace, bits_to_bytes_le, pack_nibbles, positions_major
from kernels.search.qkx import make_qkx_fp16_min
from kernels.search.qx import make_qx_quants
from kernels.types import TYPES

QK = TYPES["Q8_0"].block_size  # weights per block, the same for all five types
# Blocks handled per step inside a chunk: keeps temporaries cache-sized.
_SUB_BLOCKS = 8192


def _sub_chunks(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply fn to [k, 32] block slices of x viewed as [n_blocks, 32]; concatenate the byte rows."""
    xb = x.reshape(-1, QK)
    if xb.shape[0] <= _SUB_BLOCKS:
        return fn(xb)
    return torch.cat([fn(xb[i : i + _SUB_BLOCKS]) for i in range(0, xb.shape[0], _SUB_BLOCKS)])


def _trunc_to_int_low_byte(v: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """C's ``(int8_t)`` / ``(uint8_t)`` cast of a float, as x86 GCC code does it, -> int32.

    Finite in-range values truncate toward zero. Blocks flagged ``bad`` ([nb, 1])
    had ``id = 1/d`` overflow to inf (d subnormal), so every scaled value is inf
    or NaN; cvttss2si turns those into INT_MIN, whose low byte is 0.
    """
    return select(bad, torch.zeros_like(v), v).to(torch.int32)


# ---------------------------------------------------------------- Q8_0
#
#   block_q8_0 (34 bytes)
#   +--------+--------------------------------+
#   | d fp16 | qs[32] int8: x[j] ~= d * qs[j] |
#   +--------+--------------------------------+
#   0        2                                34


def _q8_0_blocks(xb: torch.Tensor, ws: Workspace, out: torch.Tensor) -> None:
    """quantize_row_q8_0_ref on blocks xb [nb, 32] -> out [nb, 34] (bytes).

    Every temporary is written into the workspace's buffers (``out=`` / in-place ops):
    fresh multi-megabyte tensors are page-faulted on first touch, which costs several
    times the arithmetic.
    """
    nb = xb.shape[0]
    v, f = ws.get("v", (nb, QK)), ws.get("f", (nb, QK))
    t, u = ws.get("t", (nb, QK), torch.int32), ws.get("u", (nb, QK), torch.int32)
    amax = torch.abs(xb, out=v).amax(dim=1)
    d = div(amax, 127.0)
    inv = reciprocal_or_zero(d)
    # id = inf (d subnormal): C's x*id is +-inf or NaN and its int8 cast gives 0;
    # an id of 0 gives the same codes without non-finite values.
    inv = select(torch.isinf(inv), torch.zeros_like(inv), inv)
    torch.mul(xb, inv.unsqueeze(1), out=v)  # x0 = x*id, |x0| <= 127.00002
    # roundf(x0) (half away from zero): t = (int)x0 truncates; x0 - t is then exact and
    # in (-1, 1), and twice it truncates to -1, 0 or 1 exactly at fractions of +-0.5
    t.copy_(v)
    f.copy_(t)
    v.sub_(f).mul_(2.0)
    u.copy_(v)
    t.add_(u)
    out[:, :2] = fp16_bytes(d)
    out[:, 2:].view(torch.int8).copy_(t)


def _fused_q8_0(xb: torch.Tensor, c127: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """quantize_row_q8_0_ref on blocks xb [nb, 32] -> bytes [nb, 34], as one compiled kernel.

    Same steps as _q8_0_blocks: amax (a max is exact in any order), d = amax/127 and
    its inverse by true divisions (the 127 is a run-time tensor, see kernels.fused),
    roundf by truncation plus twice the exact remainder.
    """
    amax = xb.abs().amax(dim=1)
    d = amax / c127
    inv = torch.where(d != 0, one / d, torch.zeros_like(d))
    v = xb * inv.unsqueeze(1)
    t = v.to(torch.int32)
    q = t + ((v - t.to(torch.float32)) * 2.0).to(torch.int32)
    return torch.cat([fp16_byte_pair(d), q & 0xFF], dim=1).to(torch.uint8)


_fused_q8_0_c = fused.compiled(_fused_q8_0)


def quantize_q8_0(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """quantize_row_q8_0_ref; the imatrix is ignored, as in llama.cpp."""
    rows = x.shape[0]
    if fused.use(x):
        xb = x.reshape(-1, QK)
        c127, one = f32_tensor(127.0), f32_tensor(1.0)
        step = fused.SLICE_GROUPS * 4
        parts = [_fused_q8_0_c(xb[a:b], c127, one) for a, b in fused.slices(xb.shape[0], step)]
        return torch.cat(parts).reshape(rows, -1)
    xb = x.reshape(-1, QK)
    out = torch.empty((xb.shape[0], TYPES["Q8_0"].type_size), dtype=torch.uint8, device=x.device)
    ws = Workspace(x.device)
    for i in range(0, xb.shape[0], _SUB_BLOCKS):
        _q8_0_blocks(xb[i : i + _SUB_BLOCKS], ws, out[i : i + _SUB_BLOCKS])
    return out.reshape(rows, -1)


def dequantize_q8_0(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    b = data.reshape(-1, TYPES["Q8_0"].type_size)
    d = fp16_from_bytes(b[:, 0:2])
    q = b[:, 2:].contiguous().view(torch.int8).to(torch.float32)
    return (q * d.unsqueeze(1)).reshape(data.shape[0], n_per_row)


# ---------------------------------------------------------------- Q4_0 / Q5_0 (symmetric)
#
#   block_q4_0 (18 bytes)
#   +--------+--------------------------------------------------+
#   | d fp16 | qs[16]: byte j = code[j] | code[j+16] << 4        |
#   +--------+--------------------------------------------------+
#   x = d * (code - 8), code in 0..15
#
#   block_q5_0 (22 bytes)
#   +--------+-------------------------------+--------------------------+
#   | d fp16 | qh: uint32 LE, bit j = bit 4   | qs[16]: low nibbles as   |
#   |        | of code[j]                     | in q4_0                  |
#   +--------+-------------------------------+--------------------------+
#   x = d * (code - 16), code in 0..31


def _pack_q4(d: torch.Tensor, codes: torch.Tensor, m: "torch.Tensor | None" = None) -> torch.Tensor:
    """codes uint8 [nb, 32] (0..15) -> block bytes [nb, 18 or 20] (d, [m,] qs)."""
    qs = codes[:, :16] | (codes[:, 16:] << 4)
    head = [fp16_bytes(d)] if m is None else [fp16_bytes(d), fp16_bytes(m)]
    return torch.cat(head + [qs], dim=1)


def _pack_q5(d: torch.Tensor, codes: torch.Tensor, m: "torch.Tensor | None" = None) -> torch.Tensor:
    """codes uint8 [nb, 32] (0..31) -> block bytes [nb, 22 or 24] (d, [m,] qh, qs)."""
    qs = pack_nibbles(codes[:, :16], codes[:, 16:])
    high = (codes & 0x10) >> 4
    qh = bits_to_bytes_le([high[:, j] for j in range(32)])
    head = [fp16_bytes(d)] if m is None else [fp16_bytes(d), fp16_bytes(m)]
    return torch.cat(head + [qh, qs], dim=1)


def _symmetric_ref(xb: torch.Tensor, nlevels: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """quantize_row_q4_0_ref / q5_0_ref body: (d [nb], codes uint8 [nb, 32])."""
    half = nlevels // 2
    _, mx = first_abs_max(xb, dim=1)
    d = div(mx, -float(half))
    inv = reciprocal_or_zero(d)
    v = xb * inv.unsqueeze(1) + (half + 0.5)
    bad = torch.isinf(inv).unsqueeze(1)
    codes = _trunc_to_int_low_byte(v, bad).clamp_max(nlevels - 1)
    return d, codes.to(torch.uint8)


def _symmetric_impl(x: torch.Tensor, imatrix: torch.Tensor, nmax: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """quantize_row_q4_0_impl / q5_0_impl body for whole rows: (d [nb], codes uint8 [nb, 32])."""
    weight = _impl_weights(x, imatrix)
    d, L = make_qx_quants(positions_major(x, QK), nmax, positions_major(weight, QK))
    return d, L.t().contiguous()


def _impl_weights(x: torch.Tensor, imatrix: torch.Tensor) -> torch.Tensor:
    """``qw[j] * sqrtf(sigma2 + x[j]*x[j])`` with sigma2 = (sequential row sum of x^2) / n."""
    sigma2 = div(sum_squares(x), float(x.shape[1]))
    return importance_weights(x, imatrix.unsqueeze(0), sigma2)


# ---------------------------------------------------------------- Q4_1 / Q5_1 (with minimum)
#
#   block_q4_1 (20 bytes)                 block_q5_1 (24 bytes)
#   +--------+--------+---------+         +--------+--------+--------+---------+
#   | d fp16 | m fp16 | qs[16]  |         | d fp16 | m fp16 | qh u32 | qs[16]  |
#   +--------+--------+---------+         +--------+--------+--------+---------+
#   x = d * code + m                       (qh / qs as in q5_0)


def _affine_ref(xb: torch.Tensor, nlevels: int) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """quantize_row_q4_1_ref / q5_1_ref body: (d, codes uint8 [nb, 32], m)."""
    mn, mx = first_min_max(xb, dim=1)
    d = div(mx - mn, float(nlevels - 1))
    inv = reciprocal_or_zero(d)
    v = (xb - mn.unsqueeze(1)) * inv.unsqueeze(1) + 0.5
    bad = torch.isinf(inv).unsqueeze(1)
    codes = _trunc_to_int_low_byte(v, bad)
    if nlevels == 16:  # q4_1 clamps with MIN(15, .); q5_1 does not need to
        codes = codes.clamp_max(15)
    return d, codes.to(torch.uint8), mn


def _affine_impl(x: torch.Tensor, imatrix: torch.Tensor, nmax: int) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """quantize_row_q4_1_impl / q5_1_impl for whole rows: (d, codes uint8 [nb, 32], m)."""
    weight = _impl_weights(x, imatrix)
    d, the_min, L = make_qkx_fp16_min(
        positions_major(x, QK), nmax, positions_major(weight, QK), f32(-0.9), f32(0.05), 36
    )
    return d, L.t().contiguous(), -the_min


def _quantizer(pack, ref, impl, levels: int, nmax: int):
    """quantize_<type> of Q4_0, Q5_0, Q4_1 or Q5_1: ref(blocks, levels) without an imatrix
    (quantize_row_<type>_ref, on cache-sized slices of blocks), impl(rows, imatrix, nmax) with
    one (quantize_row_<type>_impl, on whole rows); pack turns (d, codes[, m]) into bytes."""

    def quantize(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
        if imatrix is None:
            out = _sub_chunks(x, lambda xb: pack(*ref(xb, levels)))
        else:
            out = pack(*impl(x, imatrix, nmax))
        return out.reshape(x.shape[0], -1)

    return quantize


quantize_q4_0 = _quantizer(_pack_q4, _symmetric_ref, _symmetric_impl, levels=16, nmax=8)
quantize_q5_0 = _quantizer(_pack_q5, _symmetric_ref, _symmetric_impl, levels=32, nmax=16)
quantize_q4_1 = _quantizer(_pack_q4, _affine_ref, _affine_impl, levels=16, nmax=15)
quantize_q5_1 = _quantizer(_pack_q5, _affine_ref, _affine_impl, levels=32, nmax=31)


# ---------------------------------------------------------------- dequantization


def _unpack_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """qs uint8 [nb, 16] -> codes [nb, 32]: low nibbles are weights 0..15, high ones 16..31."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=1)


def _unpack_qh(qh: torch.Tensor) -> torch.Tensor:
    """qh uint8 [nb, 4] (uint32 LE) -> bit 4 of each code, [nb, 32] as 0 or 16."""
    shifts = torch.arange(8, device=qh.device, dtype=torch.uint8)
    bits = (qh.unsqueeze(2) >> shifts) & 1  # [nb, 4, 8]: bit j = byte j//8, bit j%8
    return bits.reshape(-1, 32) << 4


def dequantize_q4_0(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    b = data.reshape(-1, TYPES["Q4_0"].type_size)
    d = fp16_from_bytes(b[:, 0:2])
    q = _unpack_nibbles(b[:, 2:]).to(torch.float32) - 8
    return (q * d.unsqueeze(1)).reshape(data.shape[0], n_per_row)


def dequantize_q4_1(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    b = data.reshape(-1, TYPES["Q4_1"].type_size)
    d = fp16_from_bytes(b[:, 0:2])
    m = fp16_from_bytes(b[:, 2:4])
    q = _unpack_nibbles(b[:, 4:]).to(torch.float32)
    return (q * d.unsqueeze(1) + m.unsqueeze(1)).reshape(data.shape[0], n_per_row)


def dequantize_q5_0(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    b = data.reshape(-1, TYPES["Q5_0"].type_size)
    d = fp16_from_bytes(b[:, 0:2])
    q = (_unpack_nibbles(b[:, 6:]) | _unpack_qh(b[:, 2:6])).to(torch.float32) - 16
    return (q * d.unsqueeze(1)).reshape(data.shape[0], n_per_row)


def dequantize_q5_1(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    b = data.reshape(-1, TYPES["Q5_1"].type_size)
    d = fp16_from_bytes(b[:, 0:2])
    m = fp16_from_bytes(b[:, 2:4])
    q = (_unpack_nibbles(b[:, 8:]) | _unpack_qh(b[:, 4:8])).to(torch.float32)
    return (q * d.unsqueeze(1) + m.unsqueeze(1)).reshape(data.shape[0], n_per_row)
