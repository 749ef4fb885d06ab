"""Q4_K and Q5_K: 256-weight super-blocks of eight 32-weight sub-blocks, x ~ d*sc*q - dmin*m.

Both share the (scale, min) search per sub-block (make_qkx2 without imatrix, make_qkx3 +
make_qp with one) and the 6-bit packing of the eight scales and eight mins.  They differ
in the code width (4 vs 5 bits), the search parameters and the code layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import fused
from kernels.arith import (
    div, f32_tensor, fp16_byte_pair, fp16_bytes, fp16_round, importance_weights, nearest_int, select, seq_sum,
    seq_sum_traced, sqrtf, sum_squares,
)
from kernels.blocks import imatrix_per_block, positions_major
from kernels.search.qkx import make_qkx
from kernels.search.qp import make_qp_quants
from kernels.types import QK_K, TYPES

SUB = 32  # weights per sub-block
NSUB = QK_K // SUB  # sub-blocks per super-block


# --------------------------------------------------------------------------------------
# 6-bit scales and mins, 12 bytes (ggml's get_scale_min_k4).  sc0..sc7 and m0..m7 are
# 6-bit values; lowercase letters are their low bits, UPPERCASE their top two bits:
#
#   byte:   0         1         2         3         4         5         6         7
#         [S4|sc0]  [S5|sc1]  [S6|sc2]  [S7|sc3]  [M4|m0]   [M5|m1]   [M6|m2]   [M7|m3]
#          2b  6b
#   byte:   8           9           10          11
#         [m4lo|sc4lo][m5lo|sc5lo][m6lo|sc6lo][m7lo|sc7lo]     (high nibble | low nibble)
#
# i.e. sub-blocks 0-3 keep their 6 bits whole in bytes 0-7; sub-blocks 4-7 put their
# low nibbles in bytes 8-11 and their top two bits in the top of bytes 0-7.
# --------------------------------------------------------------------------------------


def pack_scale_min_k4(ls: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    """ls, lm int [nb, 8] (0..255, as C's uint8) -> uint8 [nb, 12].

    Written as C writes it (``scales[j] = ls`` then ``|=`` of top bits), so values above
    63 -- which the imatrix path of Q4_K can in principle hand over -- spill exactly as
    they do there.
    """
    lo_s, hi_s = ls[:, :4], ls[:, 4:]
    lo_m, hi_m = lm[:, :4], lm[:, 4:]
    b0 = lo_s | ((hi_s >> 4) << 6)
    b1 = lo_m | ((hi_m >> 4) << 6)
    b2 = (hi_s & 0xF) | ((hi_m & 0xF) << 4)
    return (torch.cat([b0, b1, b2], dim=1) & 0xFF).to(torch.uint8)


def unpack_scale_min_k4(b: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """uint8 [nb, 12] -> (sc, m) int64 [nb, 8], as get_scale_min_k4."""
    b = b.long()
    b0, b1, b2 = b[:, 0:4], b[:, 4:8], b[:, 8:12]
    sc = torch.cat([b0 & 63, (b2 & 0xF) | ((b0 >> 6) << 4)], dim=1)
    m = torch.cat([b1 & 63, (b2 >> 4) | ((b1 >> 6) << 4)], dim=1)
    return sc, m


# --------------------------------------------------------------------------------------
# Code layouts
#
# Q4_K qs[128]: chunk c (0..3) of 32 bytes holds sub-blocks 2c (low nibble) and 2c+1
# (high nibble), byte l of the chunk = L[64c + l] | L[64c + 32 + l] << 4.
#
# Q5_K: low 4 bits in qs[128] exactly as Q4_K; bit 4 in qh[32]: bit (2c) of qh[l] is
# the high bit of L[64c + l], bit (2c+1) that of L[64c + 32 + l].
# --------------------------------------------------------------------------------------


def _pack_nibbles(L: torch.Tensor) -> torch.Tensor:
    """L int [nb, 256] (0..15) -> uint8 [nb, 128]."""
    L = L.reshape(-1, 4, 2, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128).to(torch.uint8)


def _unpack_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """uint8 [nb, 128] -> int [nb, 256]."""
    q = qs.reshape(-1, 4, 1, 32).long()
    return torch.cat([q & 0xF, q >> 4], dim=2).reshape(-1, QK_K)


def _pack_q5_high(L: torch.Tensor) -> torch.Tensor:
    """L int [nb, 256] (0..31) -> qh uint8 [nb, 32]."""
    hi = (L >> 4).reshape(-1, 8, 32)  # [nb, sub-block, l]
    shifts = torch.arange(8, device=L.device).view(1, 8, 1)
    return (hi << shifts).sum(dim=1).to(torch.uint8)


def _unpack_q5_high(qh: torch.Tensor) -> torch.Tensor:
    """qh uint8 [nb, 32] -> the high bit of every code, int [nb, 256]."""
    shifts = torch.arange(8, device=qh.device).view(1, 8, 1)
    return ((qh.long().unsqueeze(1) >> shifts) & 1).reshape(-1, QK_K)


# --------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------


def _ref_scales(xb: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int):
    """quantize_row_q{4,5}_K_ref's per-sub-block search -> scales, mins [nb, 8], L [nb, 256]."""
    nb = xb.shape[0]
    xt = positions_major(xb, SUB)
    sum_x2 = seq_sum(xt * xt)
    av_x = sqrtf(div(sum_x2, 32.0))
    w = av_x + xt.abs()
    scale, the_min, L = make_qkx(xt, w, nmax, rmin, rdelta, nstep, use_mad=False)
    return scale.view(nb, NSUB), the_min.view(nb, NSUB), L.t().reshape(nb, QK_K)


def _ref_quantize_scales(scales: torch.Tensor, mins: torch.Tensor):
    """Scales and mins -> 6-bit codes against their block maxima; d, dmin = max/63 as fp16."""
    zero = torch.zeros(scales.shape[0], dtype=scales.dtype, device=scales.device)
    max_scale = scales.amax(dim=1)
    max_min = mins.amax(dim=1)
    # `if (v > max) max = v` from 0: never -0.0, never negative
    max_scale = select(max_scale > 0, max_scale, zero)
    max_min = select(max_min > 0, max_min, zero)
    inv_scale = select(max_scale > 0, div(63.0, max_scale), zero)
    inv_min = select(max_min > 0, div(63.0, max_min), zero)
    ls = (nearest_int(inv_scale[:, None] * scales) & 0xFF).clamp_max(63).long()
    lm = (nearest_int(inv_min[:, None] * mins) & 0xFF).clamp_max(63).long()
    return ls, lm, div(max_scale, 63.0), div(max_min, 63.0)


def _imatrix_scales(xb: torch.Tensor, qw: torch.Tensor, nmax: int):
    """quantize_row_q{4,5}_K_impl's search -> (Ls, Lm int [nb, 8], d, dmin [nb], L [nb, 256]).

    qw: the importance weights of each weight, [nb, 256].
    """
    nb = xb.shape[0]
    sigma2 = div(2.0 * sum_squares(xb), float(QK_K))
    w = importance_weights(xb, qw, sigma2)
    xt = positions_major(xb, SUB)
    wt = positions_major(w, SUB)
    sw = seq_sum(wt)
    scale, the_min, L = make_qkx(xt, wt, nmax, -0.9, 0.05, 36, use_mad=False)
    d_block, Ls = make_qp_quants(scale.view(nb, NSUB).t(), 63, sw.view(nb, NSUB).t())
    m_block, Lm = make_qp_quants(the_min.view(nb, NSUB).t(), 63, sw.view(nb, NSUB).t())
    return Ls.t(), Lm.t(), d_block, m_block, L.t().reshape(nb, QK_K)


def _requantize(xb, d16, dmin16, sc, m, L, nmax):
    """Final codes from the stored (fp16) d/dmin and 6-bit sc/m; C skips sub-blocks with d == 0."""
    d = (d16[:, None] * sc.float()).unsqueeze(2)  # [nb, 8, 1]
    dm = (dmin16[:, None] * m.float()).unsqueeze(2)
    x3 = xb.view(-1, NSUB, SUB)
    l = nearest_int((x3 + dm) / d).clamp_(0, nmax).long()
    return select(d != 0, l, L.view(-1, NSUB, SUB).long()).reshape(-1, QK_K)


def _quantize_k(x: torch.Tensor, imatrix: "torch.Tensor | None", nmax: int, rmin: float, nstep: int, clamp_impl: bool):
    """Common Q4_K/Q5_K pipeline -> (d|dmin|scales bytes [nb, 16], L int [nb, 256])."""
    rows, n = x.shape
    xb = x.reshape(-1, QK_K)
    if imatrix is None:
        scales, mins, L = _ref_scales(xb, nmax, rmin, 0.1, nstep)
        ls, lm, d, dmin = _ref_quantize_scales(scales, mins)
    else:
        qw = imatrix_per_block(imatrix, rows)
        ls, lm, d, dmin, L = _imatrix_scales(xb, qw, nmax)
        if clamp_impl:  # Q5_K's impl clamps to 63, Q4_K's does not
            ls, lm = ls.clamp_max(63), lm.clamp_max(63)
    packed = pack_scale_min_k4(ls, lm)
    sc, m = unpack_scale_min_k4(packed)
    L = _requantize(xb, fp16_round(d), fp16_round(dmin), sc, m, L, nmax)
    head = torch.cat([fp16_bytes(d), fp16_bytes(dmin), packed], dim=1)
    return head, L


# --------------------------------------------------------------------------------------
# The reference path (no imatrix) as compiled kernels, a slice of super-blocks at a time:
# weights -> make_qkx2 search -> 6-bit scales -> (fp16 re-read, eager) -> codes and bytes.
# --------------------------------------------------------------------------------------


def _fused_weights(xt, n32, zero):
    """quantize_row_q{4,5}_K_ref's weights av_x + |x| per sub-block, xt position-major [32, G]."""
    xs = xt.unbind(0)
    sum_x2 = seq_sum_traced([v * v for v in xs], zero)
    av_x = torch.sqrt((sum_x2 / n32).double()).float()  # sqrtf, correctly rounded
    return torch.stack([av_x + v.abs() for v in xs])


def _running_max(vs):
    """``float m = 0; if (v > m) m = v;`` over the list."""
    m = torch.zeros_like(vs[0])
    for v in vs:
        m = torch.where(v > m, v, m)
    return m


def _fused_scales(scales, mins, c63):
    """6-bit scale and min codes [nb, 8] against the block maxima; d, dmin [nb] before fp16."""
    sc, mn = scales.view(-1, NSUB), mins.view(-1, NSUB)
    max_scale = _running_max(list(sc.unbind(1)))
    max_min = _running_max(list(mn.unbind(1)))
    inv_scale = torch.where(max_scale > 0, c63 / max_scale, torch.zeros_like(max_scale))
    inv_min = torch.where(max_min > 0, c63 / max_min, torch.zeros_like(max_min))
    ls = (nearest_int(inv_scale.unsqueeze(1) * sc) & 0xFF).clamp_max(63)
    lm = (nearest_int(inv_min.unsqueeze(1) * mn) & 0xFF).clamp_max(63)
    return ls, lm, max_scale / c63, max_min / c63


def _fused_pack(xb, L, ls, lm, d, dmin, d16, dmin16, nmax: int, q5: bool):
    """Final codes from the stored scales (d16, dmin16: d, dmin re-read from fp16), packed."""
    nb = xb.shape[0]
    packed = pack_scale_min_k4(ls, lm)
    sc, m = unpack_scale_min_k4(packed)
    dl = (d16.unsqueeze(1) * sc.float()).unsqueeze(2)  # [nb, 8, 1]
    dm = (dmin16.unsqueeze(1) * m.float()).unsqueeze(2)
    q = nearest_int((xb.view(nb, NSUB, SUB) + dm) / dl).clamp(0, nmax)
    Lb = torch.where(dl != 0, q, L.t().reshape(nb, NSUB, SUB).int()).reshape(nb, QK_K)
    parts = [fp16_byte_pair(d), fp16_byte_pair(dmin), packed.int()]
    if q5:
        parts.append(_pack_q5_high(Lb).int())
    parts.append(_pack_nibbles(Lb & 0xF).int())
    return torch.cat(parts, dim=1).to(torch.uint8)


_fused_weights_c = fused.compiled(_fused_weights)
_fused_scales_c = fused.compiled(_fused_scales)
_fused_pack_c = fused.compiled(_fused_pack)


def _quantize_ref_fused(x: torch.Tensor, nmax: int, rmin: float, nstep: int, q5: bool) -> torch.Tensor:
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    n32, c63, zero = f32_tensor(32.0), f32_tensor(63.0), f32_tensor(0.0)
    out = []
    for a, b in fused.slices(xb.shape[0], max(1, fused.SLICE_GROUPS // NSUB)):
        xs = xb[a:b]
        xt = fused.positions_major(xs, SUB)
        w = _fused_weights_c(xt, n32, zero)
        scale, the_min, L = make_qkx(xt, w, nmax, rmin, 0.1, nstep, use_mad=False)
        ls, lm, d, dmin = _fused_scales_c(scale, the_min, c63)
        out.append(_fused_pack_c(xs, L, ls, lm, d, dmin, fp16_round(d), fp16_round(dmin), nmax, q5))
    return torch.cat(out).reshape(rows, -1)


def _fused_imatrix_weights(xb, qw, c2, c256, zero):
    """quantize_row_q{4,5}_K_impl's weights qw * sqrtf(sigma2 + x*x), sigma2 = 2*sum(x*x)/256
    per super-block, returned position-major with x: (xt, wt [32, G], their sums sw [G])."""
    rows = fused.positions_major(xb, QK_K).unbind(0)  # [256] x [nb]
    sigma2 = (c2 * seq_sum_traced([v * v for v in rows], zero)) / c256
    w = qw * torch.sqrt((sigma2.unsqueeze(1) + xb * xb).double()).float()
    wt = fused.positions_major(w, SUB)
    return fused.positions_major(xb, SUB), wt, seq_sum_traced(list(wt.unbind(0)), zero)


_fused_imatrix_weights_c = fused.compiled(_fused_imatrix_weights)


def _quantize_impl_fused(x: torch.Tensor, imatrix: torch.Tensor, nmax: int, q5: bool) -> torch.Tensor:
    """quantize_row_q{4,5}_K_impl with compiled weights, search and packing; the two small
    make_qp_quants searches over the [8, nb] scales and mins stay eager."""
    rows = x.shape[0]
    xb = x.reshape(-1, QK_K)
    qw = imatrix_per_block(imatrix, rows)
    c2, c256, zero = f32_tensor(2.0), f32_tensor(256.0), f32_tensor(0.0)
    parts = fused.slices(xb.shape[0], max(1, fused.SLICE_GROUPS // NSUB))
    searched = []
    for a, b in parts:
        xt, wt, sw = _fused_imatrix_weights_c(xb[a:b], qw[a:b].contiguous(), c2, c256, zero)
        scale, the_min, L = make_qkx(xt, wt, nmax, -0.9, 0.05, 36, use_mad=False)
        searched.append((scale, the_min, sw, L))
    # the scale searches over all super-blocks at once: they are many small eager ops
    scale, the_min, sw = (torch.cat(t).view(-1, NSUB).t() for t in list(zip(*searched))[:3])
    d, ls = make_qp_quants(scale, 63, sw)
    dmin, lm = make_qp_quants(the_min, 63, sw)
    ls, lm = ls.t().contiguous(), lm.t().contiguous()
    if q5:  # Q5_K's impl clamps to 63, Q4_K's does not
        ls, lm = ls.clamp_max(63), lm.clamp_max(63)
    d16, dmin16 = fp16_round(d), fp16_round(dmin)
    out = [
        _fused_pack_c(xb[a:b], L, ls[a:b], lm[a:b], d[a:b], dmin[a:b], d16[a:b], dmin16[a:b], nmax, q5)
        for (a, b), (_, _, _, L) in zip(parts, searched)
    ]
    return torch.cat(out).reshape(rows, -1)


@dataclass(frozen=True)
class _Params:
    nmax: int  # largest code
    rmin: float  # make_qkx2_quants' first trial offset (rdelta 0.1 for both)
    nstep: int  # its trial count
    q5: bool  # Q5_K: a fifth code bit in qh, and its imatrix path clamps the 6-bit scales to 63


_Q4_K = _Params(nmax=15, rmin=-1.0, nstep=20, q5=False)
_Q5_K = _Params(nmax=31, rmin=-0.5, nstep=15, q5=True)


def _quantize(x: torch.Tensor, imatrix: "torch.Tensor | None", p: _Params) -> torch.Tensor:
    if fused.use(x):
        if imatrix is None:
            return _quantize_ref_fused(x, p.nmax, p.rmin, p.nstep, q5=p.q5)
        return _quantize_impl_fused(x, imatrix, p.nmax, q5=p.q5)
    head, L = _quantize_k(x, imatrix, p.nmax, p.rmin, p.nstep, clamp_impl=p.q5)
    codes = [_pack_q5_high(L), _pack_nibbles(L & 0xF)] if p.q5 else [_pack_nibbles(L)]
    return torch.cat([head, *codes], dim=1).reshape(x.shape[0], -1)


def quantize_q4_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*144]: d(2) dmin(2) scales(12) qs(128) per block."""
    return _quantize(x, imatrix, _Q4_K)


def quantize_q5_k(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    """float32 [rows, n] -> uint8 [rows, n/256*176]: d(2) dmin(2) scales(12) qh(32) qs(128)."""
    return _quantize(x, imatrix, _Q5_K)


# --------------------------------------------------------------------------------------
# Dequantization: d*sc*q - dmin*m, as (d*sc)*q - (dmin*m) like ggml and gguf-py
# --------------------------------------------------------------------------------------


def _dequant(blocks: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()  # [nb, 1]
    dmin = blocks[:, 2:4].contiguous().view(torch.float16).float()
    sc, m = unpack_scale_min_k4(blocks[:, 4:16])
    dl = (d * sc.float()).unsqueeze(2)
    ml = (dmin * m.float()).unsqueeze(2)
    return (dl * q.view(-1, NSUB, SUB).float() - ml).reshape(-1, QK_K)


def dequantize_q4_k(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    rows = data.shape[0]
    blocks = data.reshape(-1, TYPES["Q4_K"].type_size)
    return _dequant(blocks, _unpack_nibbles(blocks[:, 16:])).reshape(rows, n_per_row)


def dequantize_q5_k(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    rows = data.shape[0]
    blocks = data.reshape(-1, TYPES["Q5_K"].type_size)
    q = _unpack_nibbles(blocks[:, 48:]) | (_unpack_q5_high(blocks[:, 16:48]) << 4)
    return _dequant(blocks, q).reshape(rows, n_per_row)

