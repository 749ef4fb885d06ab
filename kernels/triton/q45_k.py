"""Q4_K and Q5_K in Triton: one program per BS super-blocks, one lane per 32-weight sub-block.

Launch grid: cdiv(super_blocks, BS) programs; a program holds a [BS, 8] tile of
sub-blocks (rows: super-blocks, columns: their eight sub-blocks), so the (scale, min)
search of every sub-block runs in its own lane, and the per-super-block steps (the
6-bit scales against the block maxima, or make_qp_quants with an imatrix) work across
the tile's columns. The codes are recomputed from the stored fp16 d/dmin and 6-bit
scales, as C does, and each byte is written once (layouts drawn in kernels/q45_k.py).

With an importance matrix a first launch computes C's weights qw*sqrtf(sigma2 + x*x)
(sigma2 = 2*sum(x^2)/256 per super-block) and their per-sub-block sums into scratch.

Every launch goes through common.launch: no FMA contraction, correctly rounded division
and square root, sums in C's order, so the GPU's bytes are C's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.triton.common import INTERPRETED, div_rn, fp16_bits, fp16_round, launch, nearest_int, sqrt_rn, store_u16
from kernels.triton.search import make_qkx, make_qp_quants, qkx_numerators, qp_numerators

QK_K = 256
# Super-blocks per program: a [BS, 8] tile of sub-block lanes on a GPU; interpreted, one
# big tile, since the interpreter's cost is per operation whatever the tile's size.
BS = 256 if INTERPRETED else 16
WBS = 1024 if INTERPRETED else 32  # super-blocks per program of the imatrix weights


@triton.jit
def _imatrix_weights_kernel(x_ptr, im_ptr, w_ptr, sw_ptr, nsb, blocks_per_row, BS: tl.constexpr):
    """quantize_row_q{4,5}_K_impl's weights and their sums per sub-block, one lane per super-block."""
    s = tl.program_id(0).to(tl.int64) * BS + tl.arange(0, BS)
    mask = s < nsb
    xp = x_ptr + s * 256
    qp = im_ptr + (s % blocks_per_row) * 256
    sum_x2 = tl.zeros([BS], tl.float32)
    for l in range(256):
        v = tl.load(xp + l, mask=mask, other=0.0)
        sum_x2 += v * v
    sigma2 = div_rn(2.0 * sum_x2, 256.0)
    for j in range(8):
        sumw = tl.zeros([BS], tl.float32)
        for l in range(32):
            v = tl.load(xp + 32 * j + l, mask=mask, other=0.0)
            w = tl.load(qp + 32 * j + l, mask=mask, other=0.0) * sqrt_rn(sigma2 + v * v)
            tl.store(w_ptr + s * 256 + 32 * j + l, w, mask=mask)
            sumw += w
        tl.store(sw_ptr + s * 8 + j, sumw, mask=mask)


@triton.jit
def _q45_k_kernel(
    x_ptr, w_ptr, sw_ptr, num_ptr, qp_num_ptr, out_ptr, nsb,
    NMAX: tl.constexpr, NSTEP: tl.constexpr, IMATRIX: tl.constexpr, Q5: tl.constexpr, TS: tl.constexpr,
    BS: tl.constexpr,
):
    s = tl.program_id(0).to(tl.int64) * BS + tl.arange(0, BS)
    smask = s < nsb
    jj = tl.arange(0, 8)[None, :]
    mask = smask[:, None] & (jj < 8)
    xp = x_ptr + (s[:, None] * 256 + jj * 32)  # [BS, 8]: position 0 of every sub-block
    op = out_ptr + s * TS

    # ---- the (scale, min) search of every sub-block
    if IMATRIX:
        av = tl.zeros([BS, 8], tl.float32)
        scale, the_min, iscale, origin, dead = make_qkx(
            xp, w_ptr + (s[:, None] * 256 + jj * 32), av, mask, num_ptr, 32, NMAX, NSTEP, False
        )
    else:
        sum_x2 = tl.zeros([BS, 8], tl.float32)
        for l in range(32):
            v = tl.load(xp + l, mask=mask, other=0.0)
            sum_x2 += v * v
        av = sqrt_rn(div_rn(sum_x2, 32.0))
        scale, the_min, iscale, origin, dead = make_qkx(xp, xp, av, mask, num_ptr, 32, NMAX, NSTEP, True)

    # ---- 6-bit scales and mins, d and dmin
    if IMATRIX:
        sw = tl.load(sw_ptr + (s[:, None] * 8 + jj), mask=mask, other=0.0)
        d, ls = make_qp_quants(scale, sw, jj, qp_num_ptr, 8, 63)
        dmin, lm = make_qp_quants(the_min, sw, jj, qp_num_ptr, 8, 63)
        if Q5:  # Q5_K's impl clamps to 63, Q4_K's does not
            ls = tl.minimum(ls, 63)
            lm = tl.minimum(lm, 63)
    else:
        # `if (v > max) max = v` from 0
        max_scale = tl.max(tl.where(scale > 0, scale, 0.0), axis=1)
        max_min = tl.max(tl.where(the_min > 0, the_min, 0.0), axis=1)
        inv_scale = tl.where(max_scale > 0, div_rn(63.0, max_scale), 0.0)
        inv_min = tl.where(max_min > 0, div_rn(63.0, max_min), 0.0)
        ls = tl.minimum(nearest_int(inv_scale[:, None] * scale) & 0xFF, 63)
        lm = tl.minimum(nearest_int(inv_min[:, None] * the_min) & 0xFF, 63)
        d = div_rn(max_scale, 63.0)
        dmin = div_rn(max_min, 63.0)
    store_u16(op, fp16_bits(d), smask)
    store_u16(op + 2, fp16_bits(dmin), smask)

    # pack as C writes it (scales[j] = ls, then |= top bits), then read back (get_scale_min_k4)
    sc = tl.zeros([BS, 8], tl.int32)
    m = tl.zeros([BS, 8], tl.int32)
    for j in tl.static_range(4):
        ls_lo = tl.sum(tl.where(jj == j, ls, 0), axis=1)
        lm_lo = tl.sum(tl.where(jj == j, lm, 0), axis=1)
        ls_hi = tl.sum(tl.where(jj == j + 4, ls, 0), axis=1)
        lm_hi = tl.sum(tl.where(jj == j + 4, lm, 0), axis=1)
        b0 = (ls_lo | ((ls_hi >> 4) << 6)) & 0xFF
        b1 = (lm_lo | ((lm_hi >> 4) << 6)) & 0xFF
        b2 = ((ls_hi & 0xF) | ((lm_hi & 0xF) << 4)) & 0xFF
        tl.store(op + 4 + j, b0.to(tl.uint8), mask=smask)
        tl.store(op + 8 + j, b1.to(tl.uint8), mask=smask)
        tl.store(op + 12 + j, b2.to(tl.uint8), mask=smask)
        sc = tl.where(jj == j, (b0 & 63)[:, None], sc)
        m = tl.where(jj == j, (b1 & 63)[:, None], m)
        sc = tl.where(jj == j + 4, ((b2 & 0xF) | ((b0 >> 6) << 4))[:, None], sc)
        m = tl.where(jj == j + 4, ((b2 >> 4) | ((b1 >> 6) << 4))[:, None], m)

    # ---- codes from the stored scales (C skips sub-blocks whose d is 0: search codes stay)
    dl = fp16_round(d)[:, None] * sc.to(tl.float32)
    dm = fp16_round(dmin)[:, None] * m.to(tl.float32)
    shift = (jj & 1) * 4  # sub-block 2c: low nibble, 2c+1: high nibble
    c = tl.arange(0, 4)[None, :]
    if Q5:
        qs = op[:, None] + 48 + 32 * c  # [BS, 4]
    else:
        qs = op[:, None] + 16 + 32 * c
    for i in range(32):
        x = tl.load(xp + i, mask=mask, other=0.0)
        # the two nearest_int calls written inline (the interpreter pays for each device call)
        t = iscale * (x - origin)
        q = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        searched = tl.where(dead, 0, tl.minimum(tl.maximum(tl.where(t == t, q, 0), 0), NMAX))
        t = tl.math.div_rn(x + dm, dl)
        q = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        requant = tl.minimum(tl.maximum(tl.where(t == t, q, 0), 0), NMAX)
        L = tl.where(dl != 0, requant, searched)
        if Q5:
            qh = tl.sum(((L >> 4) & 1) << jj, axis=1)
            tl.store(op + 16 + i, qh.to(tl.uint8), mask=smask)
        nib = tl.sum(tl.reshape((L & 0xF) << shift, [BS, 4, 2]), axis=2)
        tl.store(qs + i, nib.to(tl.uint8), mask=smask[:, None])


@dataclass(frozen=True)
class _Params:
    nmax: int  # largest code
    rmin: float  # make_qkx2_quants' first trial offset (rdelta 0.1)
    nstep: int  # its trial count
    q5: bool  # a fifth code bit in qh; the imatrix path clamps the 6-bit scales to 63
    type_size: int


_Q4_K = _Params(nmax=15, rmin=-1.0, nstep=20, q5=False, type_size=144)
_Q5_K = _Params(nmax=31, rmin=-0.5, nstep=15, q5=True, type_size=176)


def _quantize(x: torch.Tensor, imatrix: "torch.Tensor | None", p: _Params) -> torch.Tensor:
    rows, n = x.shape
    nsb = x.numel() // QK_K
    out = torch.empty((rows, n // QK_K * p.type_size), dtype=torch.uint8, device=x.device)
    grid = (triton.cdiv(nsb, BS),)
    qp_num = qp_numerators(63, x.device)
    if imatrix is None:
        num = qkx_numerators(p.nmax, p.rmin, 0.1, p.nstep, x.device)
        launch(_q45_k_kernel, grid, x, x, x, num, qp_num, out, nsb,
               NMAX=p.nmax, NSTEP=p.nstep, IMATRIX=False, Q5=p.q5, TS=p.type_size, BS=BS)
        return out
    w = torch.empty_like(x)
    sw = torch.empty(nsb * 8, dtype=torch.float32, device=x.device)
    launch(_imatrix_weights_kernel, (triton.cdiv(nsb, WBS),), x, imatrix, w, sw, nsb, n // QK_K, BS=WBS)
    num = qkx_numerators(p.nmax, -0.9, 0.05, 36, x.device)
    launch(_q45_k_kernel, grid, x, w, sw, num, qp_num, out, nsb,
           NMAX=p.nmax, NSTEP=36, IMATRIX=True, Q5=p.q5, TS=p.type_size, BS=BS)
    return out


def quantize_q4_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*144]: d, dmin, scales(12), qs(128) per block."""
    return _quantize(x, imatrix, _Q4_K)


def quantize_q5_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*176]: d, dmin, scales(12), qh(32), qs(128)."""
    return _quantize(x, imatrix, _Q5_K)
