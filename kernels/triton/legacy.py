"""Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 in Triton: one lane per 32-weight block.

Launch grid: cdiv(blocks, BLOCK) programs of BLOCK blocks each; a lane walks its block's
32 positions in C's order and writes the block's bytes once (layouts drawn in
kernels/legacy.py). Without an importance matrix each type is quantize_row_<t>_ref; with
one, Q4_0..Q5_1 are quantize_row_<t>_impl, in three launches: the per-row sigma2 (a
sequential sum over the whole row, as C), the weights qw*sqrtf(sigma2 + x*x), then the
scale search per block; Q8_0 ignores the imatrix, as llama.cpp does.

Every launch goes through common.launch: no FMA contraction, correctly rounded division
and square root (div_rn, sqrt_rn), so the GPU's bytes are C's.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.common import (
    INTERPRETED,
    div_rn, first_abs_max_step, fp16_bits, launch, roundf_small, sqrt_rn, store_u16, trunc_i32,
)
from kernels.triton.search import make_qkx, make_qx_quants, qkx_code, qkx_numerators, qx_code, qx_numerators

QK = 32
# Blocks per program (one lane each) on a GPU; interpreted, one big tile, since the
# interpreter's cost is per operation whatever the tile's size.
BLOCK = 4096 if INTERPRETED else 128
ROWS_PER_PROGRAM = 256 if INTERPRETED else 32  # rows per program of the sigma2 sum
WEIGHTS_PER_PROGRAM = 1 << 16 if INTERPRETED else 1024


@triton.jit
def _low_byte_signed(t):
    """C's (int8_t) of an int32: its low byte, sign-extended."""
    return ((t & 0xFF) ^ 0x80) - 0x80


@triton.jit
def _store_qh(ptr, qh, mask):
    """uint32 qh (int32 bits) as 4 little-endian bytes, memcpy(&y.qh, &qh, 4) on x86."""
    for k in tl.static_range(4):
        tl.store(ptr + k, ((qh >> (8 * k)) & 0xFF).to(tl.uint8), mask=mask)


# --------------------------------------------------------------------------------------
# Reference paths (no imatrix)
# --------------------------------------------------------------------------------------


@triton.jit
def _q8_0_kernel(x_ptr, out_ptr, nblocks, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = b < nblocks
    xp = x_ptr + b * 32
    op = out_ptr + b * 34
    amax = tl.zeros([BLOCK], tl.float32)
    for j in tl.static_range(32):
        ax = tl.abs(tl.load(xp + j, mask=mask, other=0.0))
        amax = tl.where(amax > ax, amax, ax)  # MAX(amax, fabsf(v))
    d = div_rn(amax, 127.0)
    inv = tl.where(d != 0, div_rn(1.0, d), 0.0)
    # id = inf (d subnormal): C's roundf(+-inf or NaN) cast to int8 is 0
    bad = inv == float("inf")
    store_u16(op, fp16_bits(d), mask)
    for j in tl.static_range(32):
        x0 = tl.load(xp + j, mask=mask, other=0.0) * tl.where(bad, 0.0, inv)
        q = roundf_small(x0)  # |x0| <= 127.00002
        tl.store(op + 2 + j, (q & 0xFF).to(tl.uint8), mask=mask)


@triton.jit
def _symmetric_ref_kernel(x_ptr, out_ptr, nblocks, HALF: tl.constexpr, Q5: tl.constexpr, TS: tl.constexpr, BLOCK: tl.constexpr):
    """quantize_row_q4_0_ref (HALF 8) / q5_0_ref (HALF 16)."""
    b = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = b < nblocks
    xp = x_ptr + b * 32
    op = out_ptr + b * TS
    amax = tl.zeros([BLOCK], tl.float32)
    mx = tl.zeros([BLOCK], tl.float32)
    for j in tl.static_range(32):
        amax, mx = first_abs_max_step(tl.load(xp + j, mask=mask, other=0.0), amax, mx)
    d = div_rn(mx, -1.0 * HALF)
    inv = tl.where(d != 0, div_rn(1.0, d), 0.0)
    store_u16(op, fp16_bits(d), mask)
    qh = tl.zeros([BLOCK], tl.int32)
    for j in tl.static_range(16):
        x0 = tl.load(xp + j, mask=mask, other=0.0) * inv
        x1 = tl.load(xp + 16 + j, mask=mask, other=0.0) * inv
        # MIN(2*HALF-1, (int8_t)(x + HALF + 0.5f)) stored as uint8
        xi0 = tl.minimum(2 * HALF - 1, _low_byte_signed(trunc_i32(x0 + (HALF + 0.5)))) & 0xFF
        xi1 = tl.minimum(2 * HALF - 1, _low_byte_signed(trunc_i32(x1 + (HALF + 0.5)))) & 0xFF
        if Q5:
            tl.store(op + 6 + j, ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4)).to(tl.uint8), mask=mask)
            qh = qh | (((xi0 & 0x10) >> 4) << j) | (((xi1 & 0x10) >> 4) << (j + 16))
        else:
            tl.store(op + 2 + j, ((xi0 | (xi1 << 4)) & 0xFF).to(tl.uint8), mask=mask)
    if Q5:
        _store_qh(op + 2, qh, mask)


@triton.jit
def _affine_ref_kernel(x_ptr, out_ptr, nblocks, NMAX: tl.constexpr, Q5: tl.constexpr, TS: tl.constexpr, BLOCK: tl.constexpr):
    """quantize_row_q4_1_ref (NMAX 15) / q5_1_ref (NMAX 31)."""
    b = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = b < nblocks
    xp = x_ptr + b * 32
    op = out_ptr + b * TS
    mn = tl.full([BLOCK], 3.4028234663852886e38, tl.float32)
    mx = tl.full([BLOCK], -3.4028234663852886e38, tl.float32)
    for j in tl.static_range(32):
        v = tl.load(xp + j, mask=mask, other=0.0)
        mn = tl.where(v < mn, v, mn)
        mx = tl.where(v > mx, v, mx)
    d = div_rn(mx - mn, 1.0 * NMAX)
    inv = tl.where(d != 0, div_rn(1.0, d), 0.0)
    store_u16(op, fp16_bits(d), mask)
    store_u16(op + 2, fp16_bits(mn), mask)
    qh = tl.zeros([BLOCK], tl.int32)
    for j in tl.static_range(16):
        x0 = (tl.load(xp + j, mask=mask, other=0.0) - mn) * inv
        x1 = (tl.load(xp + 16 + j, mask=mask, other=0.0) - mn) * inv
        if Q5:  # (uint8_t)(x + 0.5f)
            xi0 = trunc_i32(x0 + 0.5) & 0xFF
            xi1 = trunc_i32(x1 + 0.5) & 0xFF
            tl.store(op + 8 + j, ((xi0 & 0x0F) | ((xi1 & 0x0F) << 4)).to(tl.uint8), mask=mask)
            qh = qh | (((xi0 & 0x10) >> 4) << j) | (((xi1 & 0x10) >> 4) << (j + 16))
        else:  # MIN(15, (int8_t)(x + 0.5f))
            xi0 = tl.minimum(15, _low_byte_signed(trunc_i32(x0 + 0.5))) & 0xFF
            xi1 = tl.minimum(15, _low_byte_signed(trunc_i32(x1 + 0.5))) & 0xFF
            tl.store(op + 4 + j, ((xi0 | (xi1 << 4)) & 0xFF).to(tl.uint8), mask=mask)
    if Q5:
        _store_qh(op + 4, qh, mask)


# --------------------------------------------------------------------------------------
# Importance-matrix paths (quantize_row_<t>_impl)
# --------------------------------------------------------------------------------------


@triton.jit
def _row_sigma2_kernel(x_ptr, sigma2_ptr, rows, n, ROWS: tl.constexpr):
    """sigma2 = (float s = 0; s += x[j]*x[j] over the whole row) / n_per_row, one lane per row."""
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    mask = r < rows
    xp = x_ptr + r * n
    s = tl.zeros([ROWS], tl.float32)
    for j in range(n):
        v = tl.load(xp + j, mask=mask, other=0.0)
        s += v * v
    tl.store(sigma2_ptr + r, div_rn(s, tl.full([ROWS], n, tl.float32)), mask=mask)


@triton.jit
def _impl_weights_kernel(x_ptr, im_ptr, sigma2_ptr, w_ptr, total, n, BLOCK: tl.constexpr):
    """w = qw[col] * sqrtf(sigma2[row] + x*x) for every weight."""
    k = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = k < total
    x = tl.load(x_ptr + k, mask=mask, other=0.0)
    qw = tl.load(im_ptr + k % n, mask=mask, other=0.0)
    s2 = tl.load(sigma2_ptr + k // n, mask=mask, other=0.0)
    tl.store(w_ptr + k, qw * sqrt_rn(s2 + x * x), mask=mask)


@triton.jit
def _symmetric_impl_kernel(x_ptr, w_ptr, num_ptr, out_ptr, nblocks, NMAX: tl.constexpr, Q5: tl.constexpr, TS: tl.constexpr, BLOCK: tl.constexpr):
    """quantize_row_q4_0_impl (NMAX 8) / q5_0_impl (NMAX 16): make_qx_quants per block."""
    b = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = b < nblocks
    xp = x_ptr + b * 32
    op = out_ptr + b * TS
    scale, iscale, live = make_qx_quants(xp, w_ptr + b * 32, mask, num_ptr, 32, NMAX)
    store_u16(op, fp16_bits(scale), mask)
    qh = tl.zeros([BLOCK], tl.int32)
    for j in tl.static_range(16):
        l0 = qx_code(tl.load(xp + j, mask=mask, other=0.0), iscale, live, NMAX)
        l1 = qx_code(tl.load(xp + 16 + j, mask=mask, other=0.0), iscale, live, NMAX)
        if Q5:
            tl.store(op + 6 + j, ((l0 & 0x0F) | ((l1 & 0x0F) << 4)).to(tl.uint8), mask=mask)
            qh = qh | (((l0 & 0x10) >> 4) << j) | (((l1 & 0x10) >> 4) << (j + 16))
        else:
            tl.store(op + 2 + j, ((l0 | (l1 << 4)) & 0xFF).to(tl.uint8), mask=mask)
    if Q5:
        _store_qh(op + 2, qh, mask)


@triton.jit
def _affine_impl_kernel(x_ptr, w_ptr, num_ptr, out_ptr, nblocks, NMAX: tl.constexpr, Q5: tl.constexpr, TS: tl.constexpr, BLOCK: tl.constexpr):
    """quantize_row_q4_1_impl (NMAX 15) / q5_1_impl (NMAX 31): make_qkx3_quants per block."""
    b = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = b < nblocks
    xp = x_ptr + b * 32
    op = out_ptr + b * TS
    av = tl.zeros([BLOCK], tl.float32)
    scale, the_min, iscale, origin, dead = make_qkx(xp, w_ptr + b * 32, av, mask, num_ptr, 32, NMAX, 36, False)
    store_u16(op, fp16_bits(scale), mask)
    store_u16(op + 2, fp16_bits(-the_min), mask)
    qh = tl.zeros([BLOCK], tl.int32)
    for j in tl.static_range(16):
        l0 = tl.where(dead, 0, qkx_code(tl.load(xp + j, mask=mask, other=0.0), origin, iscale, NMAX))
        l1 = tl.where(dead, 0, qkx_code(tl.load(xp + 16 + j, mask=mask, other=0.0), origin, iscale, NMAX))
        if Q5:
            tl.store(op + 8 + j, ((l0 & 0x0F) | ((l1 & 0x0F) << 4)).to(tl.uint8), mask=mask)
            qh = qh | (((l0 & 0x10) >> 4) << j) | (((l1 & 0x10) >> 4) << (j + 16))
        else:
            tl.store(op + 4 + j, ((l0 | (l1 << 4)) & 0xFF).to(tl.uint8), mask=mask)
    if Q5:
        _store_qh(op + 4, qh, mask)


def impl_weights(x: torch.Tensor, imatrix: torch.Tensor) -> torch.Tensor:
    """float32 [rows, n]: qw[j] * sqrtf(sigma2 + x[j]^2), sigma2 = sum of the row's x^2 / n (C's order)."""
    rows, n = x.shape
    sigma2 = torch.empty(rows, dtype=torch.float32, device=x.device)
    launch(_row_sigma2_kernel, (triton.cdiv(rows, ROWS_PER_PROGRAM),), x, sigma2, rows, n, ROWS=ROWS_PER_PROGRAM)
    w = torch.empty_like(x)
    total = rows * n
    launch(_impl_weights_kernel, (triton.cdiv(total, WEIGHTS_PER_PROGRAM),), x, imatrix, sigma2, w, total, n, BLOCK=WEIGHTS_PER_PROGRAM)
    return w


# --------------------------------------------------------------------------------------
# Python wrappers: shapes in, one launch (or three with an imatrix), bytes out
# --------------------------------------------------------------------------------------


def _out(x: torch.Tensor, type_size: int) -> torch.Tensor:
    rows, n = x.shape
    return torch.empty((rows, n // QK * type_size), dtype=torch.uint8, device=x.device)


def quantize_q8_0(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """quantize_row_q8_0_ref: float32 [rows, n] -> uint8 [rows, n/32*34]; the imatrix is ignored."""
    out = _out(x, 34)
    nb = x.numel() // QK
    launch(_q8_0_kernel, (triton.cdiv(nb, BLOCK),), x, out, nb, BLOCK=BLOCK)
    return out


def _symmetric(x: torch.Tensor, imatrix: "torch.Tensor | None", half: int, q5: bool) -> torch.Tensor:
    ts = 22 if q5 else 18
    out = _out(x, ts)
    nb = x.numel() // QK
    grid = (triton.cdiv(nb, BLOCK),)
    if imatrix is None:
        launch(_symmetric_ref_kernel, grid, x, out, nb, HALF=half, Q5=q5, TS=ts, BLOCK=BLOCK)
    else:
        w = impl_weights(x, imatrix)
        num = qx_numerators(half, x.device)
        launch(_symmetric_impl_kernel, grid, x, w, num, out, nb, NMAX=half, Q5=q5, TS=ts, BLOCK=BLOCK)
    return out


def _affine(x: torch.Tensor, imatrix: "torch.Tensor | None", nmax: int, q5: bool) -> torch.Tensor:
    ts = 24 if q5 else 20
    out = _out(x, ts)
    nb = x.numel() // QK
    grid = (triton.cdiv(nb, BLOCK),)
    if imatrix is None:
        launch(_affine_ref_kernel, grid, x, out, nb, NMAX=nmax, Q5=q5, TS=ts, BLOCK=BLOCK)
    else:
        w = impl_weights(x, imatrix)
        num = qkx_numerators(nmax, -0.9, 0.05, 36, x.device)
        launch(_affine_impl_kernel, grid, x, w, num, out, nb, NMAX=nmax, Q5=q5, TS=ts, BLOCK=BLOCK)
    return out


def quantize_q4_0(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/32*18] (ref, or impl with an imatrix)."""
    return _symmetric(x, imatrix, 8, q5=False)


def quantize_q5_0(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/32*22]."""
    return _symmetric(x, imatrix, 16, q5=True)


def quantize_q4_1(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/32*20]."""
    return _affine(x, imatrix, 15, q5=False)


def quantize_q5_1(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/32*24]."""
    return _affine(x, imatrix, 31, q5=True)
