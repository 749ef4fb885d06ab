"""make_q3_quants (do_rmse) in Triton: Q3_K's reference search, a coordinate-descent refinement.

The Triton twin of kernels.search.q3.make_q3_quants, one lane per group, the group a
tuple of positions (kernels.triton.groups). C's refinement walks the positions in
order and every accepted change moves the running sums the next position is tested
against, so the passes stay sequential within a lane: up to 5 passes x n positions,
each step a division and ~20 other ops. That chain is what bounds Q3_K's speed; lanes
are independent, and the program stops as soon as a pass changes no lane (C stops a
group after a pass without change; a further pass would change nothing either).
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton.common import GROUP_MAX_EPS, div_rn, first_abs_max_step, nearest_int
from kernels.triton.qx import round_clamped

Q3_PASSES = tl.constexpr(5)  # make_q3_quants' itry loop


@triton.jit
def make_q3_quants(xs, NMAX: tl.constexpr):
    """make_q3_quants(n, nmax, x, L, true) for every lane: xs a tuple of n vectors [G].

    Returns (scale, L, dead): the scale C returns, the codes as a tuple of n float
    vectors in -nmax..nmax-1 (C's L before ``L[i] += nmax``), and whether the group is
    all zeros (largest magnitude below GROUP_MAX_EPS: scale 0, stored codes 0).
    """
    amax = tl.zeros_like(xs[0])
    mx = tl.zeros_like(xs[0])
    for i in tl.static_range(len(xs)):
        amax, mx = first_abs_max_step(xs[i], amax, mx)
    dead = amax < GROUP_MAX_EPS
    mx = tl.where(dead, 1.0, mx)
    iscale = div_rn(tl.full(mx.shape, -NMAX, tl.float32), mx)
    L = ()
    sumlx = tl.zeros_like(mx)
    suml2 = tl.zeros_like(mx)
    for i in tl.static_range(len(xs)):
        l = round_clamped(iscale * xs[i], -NMAX, NMAX - 1)
        L = L + (l,)
        w = xs[i] * xs[i]
        sumlx = sumlx + w * xs[i] * l
        suml2 = suml2 + w * l * l

    itry = 0
    changed = tl.max(tl.full(mx.shape, 1, tl.int32)) > 0
    while changed & (itry < Q3_PASSES):
        moved = tl.zeros(mx.shape, tl.int32)
        nxt = ()  # this pass's codes: position i changes only at step i
        for i in tl.static_range(len(xs)):
            x = xs[i]
            w = x * x
            Li = L[i]
            slx = sumlx - w * x * Li
            sl2 = suml2 - w * Li * Li
            # x*sl2/slx is unbounded: C's nearest_int itself, garbage and all, then the clamp
            q = nearest_int(div_rn(x * sl2, tl.where(slx > 0, slx, 1.0)))
            new_l = tl.minimum(tl.maximum(q, -NMAX), NMAX - 1).to(tl.float32)
            slx_n = slx + w * x * new_l
            sl2_n = sl2 + w * new_l * new_l
            ok = (slx > 0) & (new_l != Li) & (sl2_n > 0) & (slx_n * slx_n * suml2 > sumlx * sumlx * sl2_n)
            nxt = nxt + (tl.where(ok, new_l, Li),)
            sumlx = tl.where(ok, slx_n, sumlx)
            suml2 = tl.where(ok, sl2_n, suml2)
            moved = moved | ok.to(tl.int32)
        L = nxt
        changed = tl.max(moved) > 0
        itry += 1
    scale = tl.where(suml2 > 0, div_rn(sumlx, tl.where(suml2 > 0, suml2, 1.0)), 0.0)
    return tl.where(dead, 0.0, scale), L, dead
