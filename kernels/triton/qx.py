"""make_qx_quants (rmse_type 1) in Triton: symmetric codes -nmax..nmax-1 from 19 trial scales.

The Triton twin of kernels.search.qx, for Q6_K (its sub-blocks) and Q3_K's imatrix path
(its sub-blocks, then the 16 sub-block scales of each super-block). Groups are tuples
of positions (kernels.triton.groups): one lane per group runs C's loops as written.

What bounds it: 19 trials x n positions of ~8 float/int ops per lane, all independent
across lanes; the trials run one after another (C's acceptance rule is sequential) and
each trial's two sums are chains of n dependent adds, hidden by the other lanes.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton.common import GROUP_MAX_EPS, div_rn, first_abs_max_step


@triton.jit
def round_clamped(v, LO: tl.constexpr, HI: tl.constexpr):
    """MAX(LO, MIN(HI, nearest_int(v))) as a float, for finite v.

    Clamping first is the same (rounding is monotonic and the bounds are integers), and
    then |v| < 2**22, where ``(v + 1.5*2**23) - 1.5*2**23`` is v rounded half to even:
    four float ops, no int conversion.
    """
    v = tl.minimum(tl.maximum(v, LO), HI)
    return (v + 12582912.0) - 12582912.0


@triton.jit
def qx_codes(iscale, x, NMAX: tl.constexpr):
    """MAX(-nmax, MIN(nmax-1, nearest_int(iscale*x))) as int32."""
    return round_clamped(iscale * x, -NMAX, NMAX - 1).to(tl.int32)


@triton.jit
def _trial_sums(xs, ws, wxs, iscale, NMAX: tl.constexpr):
    """C's ``sumlx += w*x[i]*l; suml2 += w*l*l`` over the positions, from 0, in order.

    round_clamped is written out here: under the interpreter every call of a jit helper
    costs more than the arithmetic (it re-patches triton.language).
    """
    sumlx = tl.zeros_like(iscale)
    suml2 = tl.zeros_like(iscale)
    for i in tl.static_range(len(xs)):
        v = tl.minimum(tl.maximum(iscale * xs[i], -NMAX), NMAX - 1)
        l = (v + 12582912.0) - 12582912.0
        sumlx = sumlx + wxs[i] * l
        suml2 = suml2 + ws[i] * l * l
    return sumlx, suml2


@triton.jit
def make_qx_quants(xs, ws, NMAX: tl.constexpr):
    """make_qx_quants(n, nmax, x, L, 1, w) for every lane: xs, ws tuples of n vectors [G].

    Returns (scale, iscale, dead) [G]: the scale C returns; the inverse scale of the
    accepted trial, whose codes C keeps (``nmax + qx_codes(iscale, x)``); and whether the
    group is all zeros (largest magnitude below GROUP_MAX_EPS: scale 0 and codes 0).
    """
    amax = tl.zeros_like(xs[0])
    mx = tl.zeros_like(xs[0])
    for i in tl.static_range(len(xs)):
        amax, mx = first_abs_max_step(xs[i], amax, mx)
    dead = amax < GROUP_MAX_EPS
    mx = tl.where(dead, 1.0, mx)
    wxs = ()
    for i in tl.static_range(len(xs)):
        wxs = wxs + (ws[i] * xs[i],)

    # is = 0 first: iscale = -nmax/max, scale = suml2 ? sumlx/suml2 : 0
    iscale = div_rn(tl.full(mx.shape, -NMAX, tl.float32), mx)
    sumlx, suml2 = _trial_sums(xs, ws, wxs, iscale, NMAX)
    scale = tl.where(suml2 != 0, div_rn(sumlx, tl.where(suml2 != 0, suml2, 1.0)), 0.0)
    best = scale * sumlx
    chosen = iscale
    # is = -9..-1, 1..9: iscale = -(nmax + 0.1f*is)/max, accepted when it beats best
    for t in range(18):
        k = tl.where(t < 9, t - 9, t - 8).to(tl.float32)
        num = -(NMAX + 0.1 * k)
        isc = div_rn(tl.full(mx.shape, 0.0, tl.float32) + num, mx)
        slx, sl2 = _trial_sums(xs, ws, wxs, isc, NMAX)
        take = (sl2 > 0) & (slx * slx > best * sl2)
        scale = tl.where(take, div_rn(slx, tl.where(take, sl2, 1.0)), scale)
        best = tl.where(take, scale * slx, best)
        chosen = tl.where(take, isc, chosen)
    return tl.where(dead, 0.0, scale), chosen, dead
