"""Q2_K in Triton: quantize_row_q2_K_ref / _impl, byte-identical to kernels.q2_k and llama.cpp.

Grid: one program per SB super-blocks (SB * 16 sub-blocks, one lane each).
One program's work:
  1. the 16 weights of each sub-block as a tuple of positions (kernels.triton.groups),
     and the (scale, min) search (kernels.triton.qkx): without an imatrix
     make_qkx2_quants(16, 3, weights |x|, -0.5, 0.1, 15, absolute error); with one the
     weights qw*sqrtf(sigma2 + x*x) and make_qkx3_quants(16, 3, -0.9, 0.05, 36, squared);
  2. per super-block: the 4-bit scales and mins. Reference: against the largest scale
     and min, d = fp16(max/15). Imatrix: make_qp_quants(16, 15) on the scales and on the
     mins, weighted by the sub-blocks' sums of weights (kernels.triton.qp);
  3. per weight [SB, 16, 16]: code nearest_int((x + dmin16*m)/(d16*sc)) clamped to 0..3,
     or the search's code where d16*sc == 0 (C skips those sub-blocks);
  4. the 84 block bytes (layout in kernels.q2_k), written once.
What bounds it: step 1, 16 trials (37 with an imatrix) x 16 positions of ~25 ops per
lane, trials in order (an accepted trial moves the min the next ones measure from);
with an imatrix also sigma2, a 256-term sum in C's order per super-block.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.common import div_rn, fp16_bits, fp16_round, launch, nearest_int, sqrt_rn, store_u16
from kernels.triton.groups import load_positions, program_superblocks, stack, sum_squares, unstack
from kernels.triton.qkx import make_qkx, qkx_codes
from kernels.triton.qp import make_qp_quants
from kernels.triton.search import qkx_numerators, qp_numerators
from kernels.types import QK_K, TYPES

BLOCK_BYTES = TYPES["Q2_K"].type_size  # 84
SB = 8  # super-blocks per program: 128 sub-blocks, one per thread of 4 warps
NUM_WARPS = 4


@triton.jit
def _q2_k_kernel(x_ptr, qw_ptr, num_ptr, qp_num_ptr, out_ptr, n_sb, sb_per_row, HAS_QW: tl.constexpr, SB: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    G: tl.constexpr = SB * 16
    sub = pid * G + tl.arange(0, G)  # global sub-block index [G]
    live = sub < n_sb * 16
    sb = pid * SB + tl.arange(0, SB)
    sb_live = sb < n_sb
    j = tl.arange(0, 16)

    # 1-2. the searches, then the packed scale bytes [SB, 16] (scale | min << 4), d and dmin [SB]
    xs = load_positions(x_ptr, sub, live, 16)
    if HAS_QW:
        sigma2 = div_rn(sum_squares(x_ptr, sb, sb_live), tl.full((SB,), 256.0, tl.float32))
        s2 = tl.reshape(tl.broadcast_to(sigma2[:, None], (SB, 16)), (G,))
        qws = load_positions(qw_ptr, sub % (sb_per_row * 16), live, 16)  # the same imatrix for every row
        ws = ()
        sw = tl.zeros(s2.shape, tl.float32)
        for i in tl.static_range(16):
            w = qws[i] * sqrt_rn(s2 + xs[i] * xs[i])
            ws = ws + (w,)
            sw = sw + w
        scale, the_min, isc, org, dead = make_qkx(xs, ws, num_ptr, 3, 36, False)
        sws = unstack(tl.reshape(sw, (SB, 16)))
        d, Ls = make_qp_quants(unstack(tl.reshape(scale, (SB, 16))), sws, qp_num_ptr, 15)
        dmin, Lm = make_qp_quants(unstack(tl.reshape(the_min, (SB, 16))), sws, qp_num_ptr, 15)
        packed = (stack(Ls) | (stack(Lm) << 4)) & 0xFF
    else:
        ws = ()
        for i in tl.static_range(16):
            ws = ws + (tl.abs(xs[i]),)
        scale, the_min, isc, org, dead = make_qkx(xs, ws, num_ptr, 3, 15, True)
        S = tl.reshape(scale, (SB, 16))
        M = tl.reshape(the_min, (SB, 16))
        # C: if (scale > max_scale) max_scale = scale, from 0 (NaN never passes)
        max_scale = tl.max(tl.where(S > 0, S, 0.0), axis=1)
        max_min = tl.max(tl.where(M > 0, M, 0.0), axis=1)
        has_s = max_scale > 0
        has_m = max_min > 0
        ls = nearest_int(div_rn(tl.full((SB,), 15.0, tl.float32), tl.where(has_s, max_scale, 1.0))[:, None] * S)
        lm = nearest_int(div_rn(tl.full((SB,), 15.0, tl.float32), tl.where(has_m, max_min, 1.0))[:, None] * M)
        ls = tl.where(has_s[:, None], ls, 0)
        lm = tl.where(has_m[:, None], lm, 0)
        packed = ((ls & 0xFF) | (lm << 4)) & 0xFF  # C stores into uint8
        d = tl.where(has_s, div_rn(max_scale, tl.full((SB,), 15.0, tl.float32)), 0.0)
        dmin = tl.where(has_m, div_rn(max_min, tl.full((SB,), 15.0, tl.float32)), 0.0)
    dq = fp16_round(d)[:, None] * (packed & 0xF).to(tl.float32)  # GGML_FP16_TO_FP32(y[i].d) * (sc & 0xF)
    mq = fp16_round(dmin)[:, None] * (packed >> 4).to(tl.float32)

    # 3. the codes, weight by weight [SB, 16, 16]
    p = tl.arange(0, 16)
    offs = sb[:, None, None] * 256 + j[None, :, None] * 16 + p[None, None, :]
    X = tl.load(x_ptr + offs, mask=sb_live[:, None, None], other=0.0)
    dq3 = dq[:, :, None]
    q = tl.minimum(tl.maximum(nearest_int(div_rn(X + mq[:, :, None], tl.where(dq3 != 0, dq3, 1.0))), 0), 3)
    searched = qkx_codes(X, tl.reshape(org, (SB, 16, 1)), tl.reshape(isc, (SB, 16, 1)), 3)
    searched = tl.where(tl.reshape(dead, (SB, 16, 1)), 0, searched)
    codes = tl.where(dq3 != 0, q, searched)

    # 4. bytes: scales[16], qs[64] (qs[32c + l]: weights 128c + 32k + l at bits 2k), d, dmin
    base = out_ptr + sb * 84
    m = sb_live[:, None]
    tl.store(base[:, None] + j[None, :], packed.to(tl.uint8), mask=m)
    c4 = tl.reshape(codes, (SB, 2, 4, 32))
    qs = tl.reshape(tl.sum(c4 << (2 * tl.arange(0, 4)[None, None, :, None]), axis=2), (SB, 64))
    c64 = tl.arange(0, 64)
    tl.store(base[:, None] + 16 + c64[None, :], qs.to(tl.uint8), mask=m)
    store_u16(base + 80, fp16_bits(d), sb_live)
    store_u16(base + 82, fp16_bits(dmin), sb_live)


def quantize_q2_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] contiguous (n a multiple of 256), imatrix float32 [n] or None ->
    uint8 [rows, n/256*84]: quantize_row_q2_K_ref without an imatrix, _impl with one."""
    rows, n = x.shape
    n_sb = rows * (n // QK_K)
    out = torch.empty((rows, n // QK_K * BLOCK_BYTES), dtype=torch.uint8, device=x.device)
    if n_sb:
        if imatrix is None:
            qw, num = x, qkx_numerators(3, -0.5, 0.1, 15, x.device)
        else:
            qw, num = imatrix, qkx_numerators(3, -0.9, 0.05, 36, x.device)
        sb = program_superblocks(n_sb, SB)
        launch(_q2_k_kernel, (triton.cdiv(n_sb, sb),), x, qw, num, qp_numerators(15, x.device), out, n_sb,
               n // QK_K, HAS_QW=imatrix is not None, SB=sb, num_warps=NUM_WARPS)
    return out
