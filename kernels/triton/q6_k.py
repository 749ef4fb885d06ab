"""Q6_K in Triton: quantize_row_q6_K_ref / _impl, byte-identical to kernels.q6_k and llama.cpp.

Grid: one program per SB super-blocks (SB * 16 sub-blocks, one lane each).
One program's work:
  1. the 16 weights of each sub-block as a tuple of positions (kernels.triton.groups),
     and make_qx_quants(16, 32) on them (kernels.triton.qx): scale and accepted iscale;
  2. per super-block [SB, 16]: the first scale of largest magnitude, d = fp16(1/iscale),
     int8 scales MIN(127, nearest_int(iscale*scale));
  3. per weight [SB, 16, 16]: code nearest_int(x/(d16*sc)) clamped to -32..31, or the
     search's code where d16*sc == 0 (C skips those sub-blocks);
  4. the 210 block bytes (layout in kernels.q6_k), written once.
Step 1 is nearly all the work (19 trials x 16 positions per lane); steps 2-4 run once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.common import GROUP_MAX_EPS, div_rn, fp16_bits, fp16_round, launch, nearest_int, store_u16
from kernels.triton.groups import load_positions, program_superblocks
from kernels.triton.qx import make_qx_quants, qx_codes
from kernels.types import QK_K, TYPES

BLOCK_BYTES = TYPES["Q6_K"].type_size  # 210
SB = 8  # super-blocks per program: 128 sub-blocks, one per thread of 4 warps
NUM_WARPS = 4


@triton.jit
def _q6_k_kernel(x_ptr, qw_ptr, out_ptr, n_sb, sb_per_row, HAS_QW: tl.constexpr, SB: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    G: tl.constexpr = SB * 16
    sub = pid * G + tl.arange(0, G)  # global sub-block index [G]
    live = sub < n_sb * 16

    # 1. make_qx_quants(16, 32, x, L, 1, qw or NULL) per sub-block
    xs = load_positions(x_ptr, sub, live, 16)
    if HAS_QW:
        ws = load_positions(qw_ptr, sub % (sb_per_row * 16), live, 16)  # the same imatrix for every row
    else:
        ws = ()
        for i in tl.static_range(16):
            ws = ws + (xs[i] * xs[i],)
    scale, chosen, dead = make_qx_quants(xs, ws, 32)

    # 2. the super-block's scales: first of largest magnitude (C's strict >, NaN never wins)
    S = tl.reshape(scale, (SB, 16))
    j = tl.arange(0, 16)
    A = tl.where(S == S, tl.abs(S), 0.0)
    amax = tl.max(A, axis=1)
    first = tl.min(tl.where(A == amax[:, None], j[None, :], 16), axis=1)
    max_scale = tl.sum(tl.where(j[None, :] == first[:, None], S, 0.0), axis=1)
    sb_dead = amax < GROUP_MAX_EPS  # C: memset(&y[i], 0, sizeof(block_q6_K))
    max_scale = tl.where(sb_dead, 1.0, max_scale)
    iscale = div_rn(tl.full((SB,), -128.0, tl.float32), max_scale)
    d = div_rn(tl.full((SB,), 1.0, tl.float32), iscale)
    sc = tl.minimum(nearest_int(iscale[:, None] * S), 127)  # int8 scales [SB, 16]
    sc = tl.where(sb_dead[:, None], 0, sc)
    dq = fp16_round(d)[:, None] * sc.to(tl.float32)  # C: GGML_FP16_TO_FP32(y[i].d) * y[i].scales[j]

    # 3. the codes, weight by weight [SB, 16, 16]
    sb = pid * SB + tl.arange(0, SB)
    sb_live = sb < n_sb
    p = tl.arange(0, 16)
    offs = sb[:, None, None] * 256 + j[None, :, None] * 16 + p[None, None, :]
    X = tl.load(x_ptr + offs, mask=sb_live[:, None, None], other=0.0)
    dq3 = dq[:, :, None]
    q = tl.minimum(tl.maximum(nearest_int(div_rn(X, tl.where(dq3 != 0, dq3, 1.0))), -32), 31) + 32
    searched = qx_codes(tl.reshape(chosen, (SB, 16, 1)), X, 32) + 32
    searched = tl.where(tl.reshape(dead, (SB, 16, 1)), 0, searched)
    L = tl.where(dq3 != 0, q, searched)
    L = tl.where(sb_dead[:, None, None], 0, L)

    # 4. bytes: weight w = 128h + 32k + l; ql[64h + 32(k%2) + l] nibble k//2, qh[32h + l] bits 2k..2k+1
    base = out_ptr + sb * 210
    L5 = tl.reshape(L, (SB, 2, 2, 2, 32))  # [sb, h, k//2, k%2, l]
    kh = tl.arange(0, 2)[None, None, :, None, None]
    ql = tl.reshape(tl.sum((L5 & 0xF) << (4 * kh), axis=2), (SB, 128))
    L4 = tl.reshape(L, (SB, 2, 4, 32))  # [sb, h, k, l]
    k4 = tl.arange(0, 4)[None, None, :, None]
    qh = tl.reshape(tl.sum((L4 >> 4) << (2 * k4), axis=2), (SB, 64))
    c128 = tl.arange(0, 128)
    tl.store(base[:, None] + c128[None, :], ql.to(tl.uint8), mask=sb_live[:, None])
    c64 = tl.arange(0, 64)
    tl.store(base[:, None] + 128 + c64[None, :], qh.to(tl.uint8), mask=sb_live[:, None])
    tl.store(base[:, None] + 192 + j[None, :], (sc & 0xFF).to(tl.uint8), mask=sb_live[:, None])
    store_u16(base + 208, tl.where(sb_dead, 0, fp16_bits(d)), sb_live)


def quantize_q6_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] contiguous (n a multiple of 256), imatrix float32 [n] or None ->
    uint8 [rows, n/256*210]: quantize_row_q6_K_ref without an imatrix, _impl with one."""
    rows, n = x.shape
    n_sb = rows * (n // QK_K)
    out = torch.empty((rows, n // QK_K * BLOCK_BYTES), dtype=torch.uint8, device=x.device)
    if n_sb:
        qw = imatrix if imatrix is not None else x
        sb = program_superblocks(n_sb, SB)
        launch(_q6_k_kernel, (triton.cdiv(n_sb, sb),), x, qw, out, n_sb, n // QK_K,
               HAS_QW=imatrix is not None, SB=sb, num_warps=NUM_WARPS)
    return out
