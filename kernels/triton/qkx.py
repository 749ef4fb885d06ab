"""make_qkx2_quants / make_qkx3_quants in Triton, groups held in registers: Q2_K's searches.

The same C functions as kernels.triton.search.make_qkx (which reads each group from
memory at every trial, weights |x| + av, squared error), here on tuples of positions
(kernels.triton.groups) with explicit weights and either error: Q2_K's reference path
needs make_qkx2_quants with weights |x| and the absolute error (use_mad), its imatrix
path make_qkx3_quants with the squared error. One lane per group; an accepted trial
moves ``min``, which the next trials measure from, so the trials run in order.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton.common import div_rn, nearest_int


@triton.jit
def _codes(xs, origin, iscale, NMAX: tl.constexpr):
    """MAX(0, MIN(nmax, nearest_int(iscale*(x - min)))) per position, as floats.

    C's nearest_int itself (common.nearest_int, written out: a jit call per position
    costs the interpreter more than the arithmetic): once a trial has moved ``min`` above
    the smallest weight, iscale*(x - min) is not bounded, and C's out-of-range garbage
    then decides the code.
    """
    out = ()
    for i in tl.static_range(len(xs)):
        v = iscale * (xs[i] - origin)
        q = ((v + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        q = tl.where(v != v, 0, q)
        out = out + (tl.minimum(tl.maximum(q, 0), NMAX).to(tl.float32),)
    return out


@triton.jit
def _error(xs, ws, L, scale, the_min, USE_MAD: tl.constexpr):
    """``sum_i w * f(scale*L[i] + min - x[i])`` from 0 in C's order, f = fabsf or square."""
    err = tl.zeros_like(scale)
    for i in tl.static_range(len(xs)):
        diff = scale * L[i] + the_min - xs[i]
        if USE_MAD:
            diff = tl.abs(diff)
        else:
            diff = diff * diff
        err = err + ws[i] * diff
    return err


@triton.jit
def make_qkx(xs, ws, num_ptr, NMAX: tl.constexpr, NSTEP: tl.constexpr, USE_MAD: tl.constexpr):
    """make_qkx2_quants / make_qkx3_quants(n, nmax, x, w, ..., nstep, use_mad) per lane.

    xs, ws: tuples of n vectors [G]; num_ptr: kernels.triton.search.qkx_numerators
    (``rmin + rdelta*is + nmax`` folded in float32). Returns (scale, the_min, iscale,
    origin, dead): the group decodes as scale*L - the_min, its codes are
    ``MAX(0, MIN(nmax, nearest_int(iscale*(x - origin))))``, all 0 where dead (max ==
    min; qkx3's max <= min is the same test, since min <= 0 and min <= max).
    """
    mn = xs[0]
    mx = xs[0]
    sum_w = ws[0]
    sum_x = sum_w * xs[0]
    for i in tl.static_range(1, len(xs)):
        mn = tl.where(xs[i] < mn, xs[i], mn)
        mx = tl.where(xs[i] > mx, xs[i], mx)
        sum_w = sum_w + ws[i]
        sum_x = sum_x + ws[i] * xs[i]
    mn = tl.where(mn > 0, 0.0, mn)
    dead = mx == mn
    iscale = div_rn(tl.full(mx.shape, NMAX, tl.float32), tl.where(dead, 1.0, mx - mn))
    scale = div_rn(tl.full(mx.shape, 1.0, tl.float32), iscale)
    best = _error(xs, ws, _codes(xs, mn, iscale, NMAX), scale, mn, USE_MAD)
    best_isc = iscale
    best_org = mn
    cur_min = mn
    for t in range(NSTEP + 1):
        span = mx - cur_min
        isc = div_rn(tl.load(num_ptr + t) + tl.zeros_like(mx), tl.where(span != 0, span, 1.0))
        L = _codes(xs, cur_min, isc, NMAX)
        sum_l = tl.zeros_like(mx)
        sum_l2 = tl.zeros_like(mx)
        sum_xl = tl.zeros_like(mx)
        for i in tl.static_range(len(xs)):
            wl = ws[i] * L[i]
            sum_l = sum_l + wl
            sum_l2 = sum_l2 + wl * L[i]
            sum_xl = sum_xl + wl * xs[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        Dd = tl.where(D > 0, D, 1.0)
        this_scale = div_rn(sum_w * sum_xl - sum_x * sum_l, Dd)
        this_min = div_rn(sum_l2 * sum_x - sum_l * sum_xl, Dd)
        pos = this_min > 0
        this_min = tl.where(pos, 0.0, this_min)
        this_scale = tl.where(pos, div_rn(sum_xl, tl.where(sum_l2 != 0, sum_l2, 1.0)), this_scale)
        err = _error(xs, ws, L, this_scale, this_min, USE_MAD)
        take = (D > 0) & (err < best)
        best = tl.where(take, err, best)
        scale = tl.where(take, this_scale, scale)
        best_isc = tl.where(take, isc, best_isc)
        best_org = tl.where(take, cur_min, best_org)
        cur_min = tl.where(take, this_min, cur_min)
    scale = tl.where(dead, 0.0, scale)
    the_min = -tl.where(dead, mn, cur_min)
    return scale, the_min, best_isc, best_org, dead


@triton.jit
def qkx_codes(x, origin, iscale, NMAX: tl.constexpr):
    """The codes of make_qkx's result, as int32 (the same expression as in the search)."""
    return tl.minimum(tl.maximum(nearest_int(iscale * (x - origin)), 0), NMAX)
