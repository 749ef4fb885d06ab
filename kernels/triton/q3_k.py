"""Q3_K in Triton: quantize_row_q3_K_ref / _impl, byte-identical to kernels.q3_k and llama.cpp.

Grid: one program per SB super-blocks (SB * 16 sub-blocks, one lane each).
One program's work:
  1. the 16 weights of each sub-block as a tuple of positions (kernels.triton.groups);
     without an imatrix make_q3_quants(16, 4) on them (kernels.triton.q3), with one the
     weights qw*sqrtf(sigma2 + x*x) and make_qx_quants(16, 4) (kernels.triton.qx);
  2. per super-block: the 6-bit scales. Reference: against the first scale of largest
     magnitude, d = fp16(1/iscale). Imatrix: make_qx_quants(16, 32) over the 16 scales
     weighted by their sums of weights, d = fp16(its scale);
  3. per weight [SB, 16, 16]: code nearest_int(x/(d16*sc)) clamped to -4..3, or the
     search's code where d16*sc == 0 (C skips those sub-blocks);
  4. the 110 block bytes (layout in kernels.q3_k), written once.
What bounds it: step 1. The reference search's refinement is sequential within a lane
(kernels.triton.q3); the imatrix path's sigma2 is a 256-term sum in C's order, one
chain per super-block, next to the 19 trials of make_qx_quants per sub-block.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.common import div_rn, fp16_bits, fp16_round, launch, nearest_int, sqrt_rn, store_u16
from kernels.triton.groups import load_positions, program_superblocks, stack, sum_squares, unstack
from kernels.triton.q3 import make_q3_quants
from kernels.triton.qx import make_qx_quants, qx_codes
from kernels.types import QK_K, TYPES

BLOCK_BYTES = TYPES["Q3_K"].type_size  # 110
SB = 8  # super-blocks per program: 128 sub-blocks, one per thread of 4 warps
NUM_WARPS = 4


@triton.jit
def _q3_k_kernel(x_ptr, qw_ptr, out_ptr, n_sb, sb_per_row, HAS_QW: tl.constexpr, SB: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    G: tl.constexpr = SB * 16
    sub = pid * G + tl.arange(0, G)  # global sub-block index [G]
    live = sub < n_sb * 16
    sb = pid * SB + tl.arange(0, SB)
    sb_live = sb < n_sb
    j = tl.arange(0, 16)

    # 1-2. the searches and the 6-bit scales ls (0..63) [SB, 16], d [SB]
    xs = load_positions(x_ptr, sub, live, 16)
    if HAS_QW:
        sigma2 = div_rn(2.0 * sum_squares(x_ptr, sb, sb_live), tl.full((SB,), 256.0, tl.float32))
        s2 = tl.reshape(tl.broadcast_to(sigma2[:, None], (SB, 16)), (G,))
        qws = load_positions(qw_ptr, sub % (sb_per_row * 16), live, 16)  # the same imatrix for every row
        ws = ()
        sw = tl.zeros(s2.shape, tl.float32)
        for i in tl.static_range(16):
            w = qws[i] * sqrt_rn(s2 + xs[i] * xs[i])
            ws = ws + (w,)
            sw = sw + w
        scale, chosen, dead = make_qx_quants(xs, ws, 4)
        S = tl.reshape(scale, (SB, 16))
        d, d_isc, d_dead = make_qx_quants(unstack(S), unstack(tl.reshape(sw, (SB, 16))), 32)
        ls = qx_codes(d_isc[:, None], S, 32) + 32
        ls = tl.where(d_dead[:, None], 0, ls)
    else:
        scale, L, dead = make_q3_quants(xs, 4)
        S = tl.reshape(scale, (SB, 16))
        # the first scale of largest magnitude (C's strict >, NaN never wins)
        A = tl.where(S == S, tl.abs(S), 0.0)
        amax = tl.max(A, axis=1)
        first = tl.min(tl.where(A == amax[:, None], j[None, :], 16), axis=1)
        max_scale = tl.sum(tl.where(j[None, :] == first[:, None], S, 0.0), axis=1)
        has = max_scale != 0  # C: if (max_scale)
        iscale = div_rn(tl.full((SB,), -32.0, tl.float32), tl.where(has, max_scale, 1.0))
        ls = tl.minimum(tl.maximum(nearest_int(iscale[:, None] * S), -32), 31) + 32
        ls = tl.where(has[:, None], ls, 0)  # memset(y[i].scales, 0, 12)
        d = tl.where(has, div_rn(tl.full((SB,), 1.0, tl.float32), iscale), 0.0)
    dq = fp16_round(d)[:, None] * (ls - 32).to(tl.float32)  # GGML_FP16_TO_FP32(y[i].d) * sc

    # 3. the codes, weight by weight [SB, 16, 16], stored as 0..7
    p = tl.arange(0, 16)
    offs = sb[:, None, None] * 256 + j[None, :, None] * 16 + p[None, None, :]
    X = tl.load(x_ptr + offs, mask=sb_live[:, None, None], other=0.0)
    dq3 = dq[:, :, None]
    q = tl.minimum(tl.maximum(nearest_int(div_rn(X, tl.where(dq3 != 0, dq3, 1.0))), -4), 3) + 4
    if HAS_QW:
        searched = qx_codes(tl.reshape(chosen, (SB, 16, 1)), X, 4) + 4
    else:
        searched = tl.reshape(stack(L), (SB, 16, 16)).to(tl.int32) + 4
    searched = tl.where(tl.reshape(dead, (SB, 16, 1)), 0, searched)
    codes = tl.where(dq3 != 0, q, searched)

    # 4. bytes: hmask[32], qs[64], scales[12], d
    base = out_ptr + sb * 110
    hi = tl.reshape(codes >> 2, (SB, 8, 32))  # bit k of hmask[l]: code of weight 32k + l > 3
    hmask = tl.sum(hi << tl.arange(0, 8)[None, :, None], axis=1)
    lo = tl.reshape(codes & 3, (SB, 2, 4, 32))  # qs[32c + l]: weights 128c + 32k + l at bits 2k
    qs = tl.reshape(tl.sum(lo << (2 * tl.arange(0, 4)[None, None, :, None]), axis=2), (SB, 64))
    ls_lo = tl.reshape(ls & 0xF, (SB, 2, 8))  # byte j < 8: ls[j] | ls[j + 8] << 4 (low nibbles)
    sc_lo = tl.sum(ls_lo << (4 * tl.arange(0, 2)[None, :, None]), axis=1)
    ls_hi = tl.reshape(ls >> 4, (SB, 4, 4))  # byte 8 + m: top bits of ls[4q + m] at bits 2q
    sc_hi = tl.sum(ls_hi << (2 * tl.arange(0, 4)[None, :, None]), axis=1)
    m = sb_live[:, None]
    c32 = tl.arange(0, 32)
    tl.store(base[:, None] + c32[None, :], hmask.to(tl.uint8), mask=m)
    c64 = tl.arange(0, 64)
    tl.store(base[:, None] + 32 + c64[None, :], qs.to(tl.uint8), mask=m)
    c8 = tl.arange(0, 8)
    tl.store(base[:, None] + 96 + c8[None, :], sc_lo.to(tl.uint8), mask=m)
    c4 = tl.arange(0, 4)
    tl.store(base[:, None] + 104 + c4[None, :], sc_hi.to(tl.uint8), mask=m)
    store_u16(base + 108, fp16_bits(d), sb_live)


def quantize_q3_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] contiguous (n a multiple of 256), imatrix float32 [n] or None ->
    uint8 [rows, n/256*110]: quantize_row_q3_K_ref without an imatrix, _impl with one."""
    rows, n = x.shape
    n_sb = rows * (n // QK_K)
    out = torch.empty((rows, n // QK_K * BLOCK_BYTES), dtype=torch.uint8, device=x.device)
    if n_sb:
        qw = imatrix if imatrix is not None else x
        sb = program_superblocks(n_sb, SB)
        launch(_q3_k_kernel, (triton.cdiv(n_sb, sb),), x, qw, out, n_sb, n // QK_K,
               HAS_QW=imatrix is not None, SB=sb, num_warps=NUM_WARPS)
    return out
