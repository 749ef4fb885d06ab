"""Q6_K: 256-weight super-blocks of 16 sub-blocks, byte-identical to ggml-quants.c.

Without an importance matrix this is ``quantize_row_q6_K_ref``; with one,
``quantize_row_q6_K_impl``, whose only difference is the weights given to
``make_qx_quants`` (imatrix values instead of x*x).

Work is done on position-major sub-blocks ``[16, n_subblocks]`` (see
kernels.blocks): the 19-trial scale search of make_qx_quants runs once over all
sub-blocks of a slice, with its sequential sums in C's order.
"""
from __future__ import annotations

import torch

from kernels import fused
from kernels.arith import (
    GROUP_MAX_EPS, div, first_abs_max, fp16_bytes, fp16_from_bytes, fp16_round, nearest_int, select,
)
from kernels.blocks import Workspace, imatrix_per_block, positions_major
from kernels.search.qx import make_qx_quants
from kernels.types import QK_K, TYPES

BLOCK_BYTES = TYPES["Q6_K"].type_size
# Super-blocks per slice of a chunk: bounds the trial-search temporaries
# (a few [16, 16 * _SUB_SUPERBLOCKS] float32 tensors) and keeps them cache-sized.
_SUB_SUPERBLOCKS = 1024


def _scales_and_codes(
    x: torch.Tensor, weights: "torch.Tensor | None", ws: "Workspace | None" = None
) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """One slice of super-blocks: x [nsb, 256] (and weights alike) -> (d, scales int8 [nsb, 16], L [nsb, 256]).

    Mirrors the body of quantize_row_q6_K_ref/_impl up to, not including, packing.
    L holds codes 0..63 (stored value + 32).
    """
    nsb = x.shape[0]
    transpose = fused.positions_major if fused.use(x) else positions_major
    xs = transpose(x, 16)  # [16, nsb*16]
    wts = None if weights is None else transpose(weights, 16)
    scale, L = make_qx_quants(xs, 32, wts, ws)
    scales = scale.view(nsb, 16)
    L = L.t().reshape(nsb, QK_K)

    max_abs_scale, max_scale = first_abs_max(scales, dim=1)
    dead = max_abs_scale < GROUP_MAX_EPS
    max_scale = select(dead, torch.ones_like(max_scale), max_scale)
    iscale = div(-128.0, max_scale)
    d = div(1.0, iscale)  # stored as fp16(1/iscale)
    sc = nearest_int(iscale.unsqueeze(1) * scales, nan_zero=True).clamp_max(127)  # MIN(127, nearest_int(.))
    # d re-read from fp16, times the int8 scale, as C does before re-quantizing
    dsub = fp16_round(d).unsqueeze(1) * sc.to(torch.int8).to(torch.float32)  # [nsb, 16]
    live_sub = (dsub != 0).unsqueeze(2)
    # x/d per sub-block; where d == 0 the quotient is garbage and C keeps make_qx_quants' L
    q = nearest_int(x.view(nsb, 16, 16) / dsub.unsqueeze(2)).clamp_(-32, 31).add_(32)
    L = select(live_sub, q.to(torch.uint8), L.view(nsb, 16, 16)).view(nsb, QK_K)

    if bool(dead.any()):  # memset(&y[i], 0, ...) for all-zero super-blocks
        d = select(dead, torch.zeros_like(d), d)
        sc = select(dead.unsqueeze(1), torch.zeros_like(sc), sc)
        L = select(dead.unsqueeze(1), torch.zeros_like(L), L)
    return d, sc.to(torch.int8), L


#   block_q6_K (210 bytes)
#   +-----------+----------+-------------+--------+
#   | ql[128]   | qh[64]   | scales[16]  | d fp16 |
#   +-----------+----------+-------------+--------+
#   0           128        192           208      210
#
#   Code L (0..63, value = d * scales[sub] * (L - 32)) of weight w = 128*h + 32*k + l
#   (half h in 0..1, quarter k in 0..3, lane l in 0..31):
#     low 4 bits  -> ql[64*h + 32*(k % 2) + l], low nibble for k < 2, high nibble for k >= 2
#     high 2 bits -> qh[32*h + l], bits 2k..2k+1
#   scales[j] (int8) scales weights 16j..16j+15.


def _pack(d: torch.Tensor, sc: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """(d [nsb], scales int8 [nsb, 16], L uint8 [nsb, 256]) -> block bytes [nsb, 210]."""
    nsb = L.shape[0]
    Lq = L.view(nsb, 2, 4, 32)
    lo = Lq & 0x0F
    ql = lo[:, :, 0:2] | (lo[:, :, 2:4] << 4)  # [nsb, 2, 2, 32]
    hi = Lq >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)  # [nsb, 2, 32]
    return torch.cat(
        [ql.reshape(nsb, 128), qh.reshape(nsb, 64), sc.view(torch.uint8), fp16_bytes(d)], dim=1
    )


def quantize_q6_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """quantize_row_q6_K_ref (imatrix None) or quantize_row_q6_K_impl, row by row."""
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    wb = None if imatrix is None else imatrix_per_block(imatrix, rows)
    out = []
    ws = Workspace(x.device)
    for i in range(0, xb.shape[0], _SUB_SUPERBLOCKS):
        w = None if wb is None else wb[i : i + _SUB_SUPERBLOCKS]
        out.append(_pack(*_scales_and_codes(xb[i : i + _SUB_SUPERBLOCKS], w, ws)))
    return torch.cat(out).reshape(rows, -1)


def dequantize_q6_k(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """Inverse of the layout above; (d * scale) * q in float32, as gguf and ggml compute it."""
    b = data.reshape(-1, BLOCK_BYTES)
    nsb = b.shape[0]
    ql = b[:, :128].reshape(nsb, 2, 1, 64)
    qh = b[:, 128:192].reshape(nsb, 2, 1, 32)
    sc = b[:, 192:208].contiguous().view(torch.int8).to(torch.float32)
    d = fp16_from_bytes(b[:, 208:210])
    shifts4 = torch.tensor([0, 4], dtype=torch.uint8, device=b.device).view(1, 1, 2, 1)
    shifts2 = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=b.device).view(1, 1, 4, 1)
    lo = ((ql >> shifts4) & 0x0F).reshape(nsb, 2, 4, 32)
    hi = ((qh >> shifts2) & 0x03).reshape(nsb, 2, 4, 32)
    q = ((lo | (hi << 4)).to(torch.float32) - 32).reshape(nsb, 16, 16)
    dl = (d.unsqueeze(1) * sc).unsqueeze(2)
    return (dl * q).reshape(data.shape[0], n_per_row)
