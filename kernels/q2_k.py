"""Q2_K: 256-weight super-blocks of sixteen 16-weight sub-blocks, x ~ d*sc*q - dmin*m.

Block layout (84 bytes):

    scales[16]  byte j = sc_j | m_j << 4      (4-bit scale and 4-bit min of sub-block j)
    qs[64]      2-bit codes, see kernels.blocks.pack_2bit
    d (fp16)    super-block scale of the scales
    dmin (fp16) super-block scale of the mins
"""
from __future__ import annotations

import torch

from kernels.arith import div, fp16_bytes, fp16_round, importance_weights, nearest_int, select, seq_sum, sum_squares
from kernels.blocks import imatrix_per_block, pack_2bit, positions_major, unpack_2bit
from kernels.search.qkx import make_qkx
from kernels.search.qp import make_qp_quants
from kernels.types import QK_K, TYPES

SUB = 16
NSUB = QK_K // SUB
BLOCK_BYTES = TYPES["Q2_K"].type_size


def _ref_scales(xb: torch.Tensor):
    """quantize_row_q2_K_ref: (scale, min) per sub-block, then 4-bit codes against the maxima.

    Returns (scale bytes int [nb, 16], d, dmin [nb] before fp16, L [nb, 256]).
    """
    nb = xb.shape[0]
    xt = positions_major(xb, SUB)
    scale, the_min, L = make_qkx(xt, xt.abs(), 3, -0.5, 0.1, 15, use_mad=True)
    scales, mins = scale.view(nb, NSUB), the_min.view(nb, NSUB)
    zero = torch.zeros(nb, dtype=scales.dtype, device=scales.device)
    max_scale = scales.amax(dim=1)
    max_min = mins.amax(dim=1)
    has_scale = max_scale > 0  # `if (scale > max_scale)` from 0: never negative
    has_min = max_min > 0
    max_scale = select(has_scale, max_scale, zero)
    max_min = select(has_min, max_min, zero)
    ls = nearest_int(div(15.0, max_scale)[:, None] * scales)
    lm = nearest_int(div(15.0, max_min)[:, None] * mins)
    ls = select(has_scale[:, None], ls, torch.zeros_like(ls))
    lm = select(has_min[:, None], lm, torch.zeros_like(lm))
    packed = ((ls & 0xFF) | (lm << 4)) & 0xFF
    return packed.long(), div(max_scale, 15.0), div(max_min, 15.0), L.t().reshape(nb, QK_K)


def _imatrix_scales(xb: torch.Tensor, qw: torch.Tensor):
    """quantize_row_q2_K_impl: make_qkx3 per sub-block, make_qp for the scales and the mins."""
    nb = xb.shape[0]
    sigma2 = div(sum_squares(xb), float(QK_K))  # Q2_K: no factor 2 here
    w = importance_weights(xb, qw, sigma2)
    xt, wt = positions_major(xb, SUB), positions_major(w, SUB)
    sw = seq_sum(wt)
    scale, the_min, L = make_qkx(xt, wt, 3, -0.9, 0.05, 36, use_mad=False)
    sw = sw.view(nb, NSUB).t()
    dm, Ls = make_qp_quants(scale.view(nb, NSUB).t(), 15, sw)
    mm, Lm = make_qp_quants(the_min.view(nb, NSUB).t(), 15, sw)
    packed = (Ls.t() | (Lm.t() << 4)) & 0xFF
    return packed, dm, mm, L.t().reshape(nb, QK_K)


def quantize_q2_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*84]."""
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    if imatrix is None:
        packed, d, dmin, L = _ref_scales(xb)
    else:
        packed, d, dmin, L = _imatrix_scales(xb, imatrix_per_block(imatrix, rows))
    # final codes from the stored fp16 scales; sub-blocks whose scale is 0 keep the search's codes
    dl = (fp16_round(d)[:, None] * (packed & 0xF).float()).unsqueeze(2)
    ml = (fp16_round(dmin)[:, None] * (packed >> 4).float()).unsqueeze(2)
    l = nearest_int((xb.view(-1, NSUB, SUB) + ml) / dl).clamp_(0, 3).to(torch.uint8)
    L = select(dl != 0, l, L.view(-1, NSUB, SUB).to(torch.uint8)).reshape(-1, QK_K)
    out = torch.cat([packed.to(torch.uint8), pack_2bit(L), fp16_bytes(d), fp16_bytes(dmin)], dim=1)
    return out.reshape(rows, -1)


def dequantize_q2_k(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """(d*sc)*q - (dmin*m), as dequantize_row_q2_K and gguf-py."""
    rows = data.shape[0]
    b = data.reshape(-1, BLOCK_BYTES)
    sc = b[:, :16].long()
    d = b[:, 80:82].contiguous().view(torch.float16).float()
    dmin = b[:, 82:84].contiguous().view(torch.float16).float()
    dl = (d * (sc & 0xF).float()).unsqueeze(2)
    ml = (dmin * (sc >> 4).float()).unsqueeze(2)
    q = unpack_2bit(b[:, 16:80]).view(-1, NSUB, SUB).float()
    return (dl * q - ml).reshape(rows, n_per_row)
