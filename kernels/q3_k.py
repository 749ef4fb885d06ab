"""Q3_K: 256-weight super-blocks of sixteen 16-weight sub-blocks, x ~ d*sc*q, q in -4..3.

Block layout (110 bytes):

    hmask[32]   bit k of hmask[l] = high bit of code 32k + l (set: q >= 0, i.e. stored L > 3)
    qs[64]      low 2 bits of the codes, see kernels.blocks.pack_2bit
    scales[12]  sixteen 6-bit scales (stored as sc + 32), see pack_scales
    d (fp16)    super-block scale
"""
from __future__ import annotations

import torch

from kernels import fused
from kernels.arith import (
    div, f32_tensor, first_abs_max, first_abs_max_traced, fp16_byte_pair, fp16_bytes, fp16_round,
    importance_weights, nearest_int, select, seq_sum, sum_squares,
)
from kernels.blocks import bit_planes, codes_to_blocks, imatrix_per_block, pack_2bit, positions_major, unpack_2bit
from kernels.search.q3 import make_q3_quants, q3_search
from kernels.search.qx import make_qx_quants
from kernels.types import QK_K, TYPES

SUB = 16
NSUB = QK_K // SUB
BLOCK_BYTES = TYPES["Q3_K"].type_size


# --------------------------------------------------------------------------------------
# 6-bit scales, 12 bytes.  s0..s15 are 6-bit values (scale + 32); lo = low nibble,
# hi = top two bits:
#
#   byte 0..7:   [ s(j+8).lo | s(j).lo ]          (high nibble | low nibble), j = byte
#   byte 8..11:  [ s(k+12).hi | s(k+8).hi | s(k+4).hi | s(k).hi ]   bits 7-6 .. 1-0, k = byte-8
# --------------------------------------------------------------------------------------


def pack_scales(l: torch.Tensor) -> torch.Tensor:
    """l int [nb, 16] (0..63) -> uint8 [nb, 12]."""
    lo = torch.stack([l[:, :8] & 0xF, (l[:, 8:] & 0xF) << 4], dim=0).sum(dim=0)
    hi = (l >> 4).view(-1, 4, 4)  # [nb, j//4, j%4]
    shifts = torch.tensor([0, 2, 4, 6], device=l.device).view(1, 4, 1)
    hi = (hi << shifts).sum(dim=1)  # [nb, 4]
    return (torch.cat([lo, hi], dim=1) & 0xFF).to(torch.uint8)


def unpack_scales(b: torch.Tensor) -> torch.Tensor:
    """uint8 [nb, 12] -> the signed scales int64 [nb, 16] (6-bit value - 32)."""
    b = b.long()
    lo = torch.cat([b[:, :8] & 0xF, b[:, :8] >> 4], dim=1)  # [nb, 16]
    shifts = torch.tensor([0, 2, 4, 6], device=b.device).view(1, 4, 1)
    hi = ((b[:, 8:12].view(-1, 1, 4) >> shifts) & 3).reshape(-1, 16)
    return (lo | (hi << 4)) - 32


def _ref_scales(xt: torch.Tensor, nb: int):
    """quantize_row_q3_K_ref: make_q3_quants per sub-block, 6-bit scales against the signed max.

    xt: position-major [16, nb*16].  Returns (6-bit scale codes int [nb, 16], d [nb]
    before fp16, L [16, nb*16] in 0..7).
    """
    scale, L = make_q3_quants(xt, 4)
    scales = scale.view(nb, NSUB)
    _, max_scale = first_abs_max(scales.t())
    live = max_scale != 0
    iscale = div(-32.0, max_scale)
    l = nearest_int(iscale[:, None] * scales).clamp_(-32, 31) + 32
    l = select(live[:, None], l, torch.zeros_like(l))
    d = select(live, div(1.0, iscale), torch.zeros_like(iscale))
    return l.long(), d, L


def _imatrix_scales(xb: torch.Tensor, xt: torch.Tensor, qw: torch.Tensor):
    """quantize_row_q3_K_impl: weighted make_qx_quants per sub-block, then on the scales."""
    nb = xb.shape[0]
    sigma2 = div(2.0 * sum_squares(xb), float(QK_K))
    wt = positions_major(importance_weights(xb, qw, sigma2), SUB)
    sw = seq_sum(wt)
    scale, L = make_qx_quants(xt, 4, wt)
    d_block, Ls = make_qx_quants(scale.view(nb, NSUB).t(), 32, sw.view(nb, NSUB).t())
    return Ls.t().long(), d_block, L


def _fused_scales(mx, sumlx, suml2, m32, one, eps):
    """quantize_row_q3_K_ref's 6-bit scales (int32 [nb, 16], 0..63) and d [nb] from the
    search state of the sub-blocks [nb*16] (compiled; fp16 rounding of d happens outside).
    make_q3_quants returns sumlx/suml2, or 0 for an all-zero sub-block."""
    scale = torch.where(suml2 > 0, sumlx / suml2, torch.zeros_like(sumlx))
    scale = torch.where(mx.abs() < eps, torch.zeros_like(scale), scale)
    sc = scale.view(-1, NSUB)
    max_scale = first_abs_max_traced(list(sc.unbind(1)))
    live = max_scale != 0
    iscale = m32 / max_scale
    ls = nearest_int(iscale.unsqueeze(1) * sc).clamp(-32, 31) + 32
    ls = torch.where(live.unsqueeze(1), ls, torch.zeros_like(ls))
    return ls, torch.where(live, one / iscale, torch.zeros_like(iscale))


def _fused_pack(xb, mx, ls, d, d16):
    """Final codes from the stored scales (d16 = d as re-read from fp16), packed to block
    bytes [nb, 110] (compiled), and which sub-blocks [nb, 16] _redo_blocks must redo.

    Codes are torch.round of the quotient (clamped in int32), which is C's nearest_int
    while |x/dl| < 2**22; |mx| bounds |x| in a sub-block, so the check is per sub-block.
    A sub-block whose scale is 0 keeps the search's codes in C: rare, also redone.
    """
    nb = xb.shape[0]
    dl = d16.unsqueeze(1) * (ls - 32).float()  # [nb, 16]
    redo = (dl == 0) | ~(mx.view(nb, NSUB).abs() / dl.abs() < 2097152.0)
    q = torch.round(xb.view(nb, NSUB, SUB) / dl.unsqueeze(2)).to(torch.int32).clamp(-4, 3) + 4
    # returned (and unused) so that Inductor stores the codes once rather than recomputing
    # them in each packing loop
    codes = torch.where(dl.unsqueeze(2) != 0, q, 0).to(torch.uint8).reshape(nb, QK_K)
    high = (codes >> 2).view(nb, 8, 32)  # in uint8 throughout: 64 bytes per vector
    hmask = high[:, 0]
    for k in range(1, 8):
        hmask = hmask | (high[:, k] << k)
    low = (codes & 3).view(nb, 2, 4, 32)
    qs = low[:, :, 0] | (low[:, :, 1] << 2) | (low[:, :, 2] << 4) | (low[:, :, 3] << 6)
    lo = (ls[:, :8] & 0xF) | ((ls[:, 8:] & 0xF) << 4)
    top = (ls >> 4).view(nb, 4, 4)  # [nb, j // 4, j % 4]
    hi = top[:, 0] | (top[:, 1] << 2) | (top[:, 2] << 4) | (top[:, 3] << 6)
    scales = torch.cat([lo, hi, fp16_byte_pair(d)], dim=1).to(torch.uint8)
    return torch.cat([hmask, qs.reshape(nb, 64), scales], dim=1), redo, codes


_fused_scales_c = fused.compiled(_fused_scales)
_fused_pack_c = fused.compiled(_fused_pack)


def _redo_blocks(out, xs, mx, ls, d, redo) -> None:
    """Rewrite, with the eager search and packing, the blocks of out holding a sub-block
    that _fused_pack could not code (redo [nb, 16]): rare on real weights."""
    blocks = redo.any(dim=1).nonzero().squeeze(1)
    if not blocks.numel():
        return
    xb = xs.index_select(0, blocks)
    xt = positions_major(xb, SUB)
    _, L = make_q3_quants(xt, 4)
    out[blocks] = _block_bytes(xb, xt, L, ls.index_select(0, blocks).long(), d.index_select(0, blocks))


# Super-blocks per compiled search: kernels.api's chunks (4M weights) in one.
SLICE_BLOCKS = 16384


def _quantize_ref_fused(x: torch.Tensor) -> torch.Tensor:
    """quantize_row_q3_K_ref with the compiled kernels, a slice of super-blocks at a time."""
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    m32, one, eps = f32_tensor(-32.0), f32_tensor(1.0), f32_tensor(1e-15)
    out = []
    for a, b in fused.slices(xb.shape[0], SLICE_BLOCKS):
        xs = xb[a:b]
        xt = fused.positions_major(xs, SUB)
        mx, sumlx, suml2, exact = q3_search(xt, xs.reshape(-1, SUB), 4)
        if not exact:  # a quotient beyond torch.round's exact range: the eager search
            scale, _ = make_q3_quants(xt, 4)
            mx, sumlx, suml2 = xt.abs().amax(dim=0), scale, torch.ones_like(scale)
        ls, d = _fused_scales_c(mx, sumlx, suml2, m32, one, eps)
        packed, redo, _ = _fused_pack_c(xs, mx, ls, d, fp16_round(d))
        _redo_blocks(packed, xs, mx, ls, d, redo)
        out.append(packed)
    return torch.cat(out).reshape(rows, -1)


def _block_bytes(xb: torch.Tensor, xt: torch.Tensor, L: torch.Tensor, ls: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Block bytes [nb, 110] from the sub-block searches' codes L [16, nb*16] (0..7), the
    6-bit scales ls [nb, 16] and d [nb]: final codes from the stored fp16 d and scales,
    where a scale is 0 the search's codes."""
    nb = xb.shape[0]
    packed = pack_scales(ls)
    dl = (fp16_round(d)[:, None] * unpack_scales(packed).float()).reshape(-1)  # [nb*16]
    l = nearest_int(xt / dl).clamp_(-4, 3).add_(4)
    L = select(dl != 0, l, L.to(torch.int32))
    L = codes_to_blocks(L, nb)  # [nb, 256] uint8, 0..7
    high = L >> 2  # 1 where L > 3
    hmask = bit_planes(high.view(nb, 8, 32))
    return torch.cat([hmask, pack_2bit(L & 3), packed, fp16_bytes(d)], dim=1)


def quantize_q3_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*110]."""
    if imatrix is None and fused.use(x):
        return _quantize_ref_fused(x)
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    nb = xb.shape[0]
    xt = positions_major(xb, SUB)
    if imatrix is None:
        ls, d, L = _ref_scales(xt, nb)
    else:
        ls, d, L = _imatrix_scales(xb, xt, imatrix_per_block(imatrix, rows))
    return _block_bytes(xb, xt, L, ls, d).reshape(rows, -1)


def dequantize_q3_k(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """(d*sc) * (low2 - (hbit ? 0 : 4)), as dequantize_row_q3_K and gguf-py."""
    rows = data.shape[0]
    b = data.reshape(-1, BLOCK_BYTES)
    d = b[:, 108:110].contiguous().view(torch.float16).float()
    dl = (d * unpack_scales(b[:, 96:108]).float()).unsqueeze(2)
    low = unpack_2bit(b[:, 32:96])
    shifts = torch.arange(8, device=data.device).view(1, 8, 1)
    hbit = ((b[:, :32].long().view(-1, 1, 32) >> shifts) & 1).reshape(-1, QK_K)
    q = (low - 4 * (1 - hbit)).view(-1, NSUB, SUB).float()
    return (dl * q).reshape(rows, n_per_row)
