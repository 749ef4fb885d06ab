"""make_qp_quants in Triton, groups held in registers: positive codes 0..nmax for the
sub-block scales and mins of Q2_K's imatrix path.

The same C function as kernels.triton.search.make_qp_quants (which reads each position
out of a [B, K] tile whenever it needs it), here on tuples of positions
(kernels.triton.groups): one lane per super-block walks its 16 scales in C's order,
the refinement passes stopping once a pass changes no lane (C stops a group after a
pass without change; a further pass would change nothing either).
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton.common import GROUP_MAX_EPS, div_rn, nearest_int

QP_PASSES = tl.constexpr(5)


@triton.jit
def make_qp_quants(xs, ws, num_ptr, NMAX: tl.constexpr):
    """make_qp_quants(n, nmax, x, L, qw) per lane: xs, ws tuples of n vectors [G].

    num_ptr: kernels.triton.search.qp_numerators(nmax) (``0.1f*is + nmax``, is = -4..4
    without 0). Returns (scale [G], L): L a tuple of n int32 vectors holding what C's
    uint8 L holds (a negative code wraps to 256 + l, and C goes on computing with that).
    """
    mx = tl.zeros_like(xs[0])
    for i in tl.static_range(len(xs)):
        mx = tl.where(mx > xs[i], mx, xs[i])  # MAX(max, x[i])
    zero = mx < GROUP_MAX_EPS
    mx = tl.where(zero, 1.0, mx)
    iscale = div_rn(tl.full(mx.shape, NMAX, tl.float32), mx)
    scale = div_rn(tl.full(mx.shape, 1.0, tl.float32), iscale)
    best = tl.zeros_like(mx)
    for i in tl.static_range(len(xs)):
        l = (nearest_int(iscale * xs[i]) & 0xFF).to(tl.float32)
        diff = xs[i] - scale * l
        best = best + ws[i] * diff * diff
    best_isc = iscale
    for k in range(8):
        isc = div_rn(tl.load(num_ptr + k) + tl.zeros_like(mx), mx)
        sc = div_rn(tl.full(mx.shape, 1.0, tl.float32), isc)
        mse = tl.zeros_like(mx)
        for i in tl.static_range(len(xs)):
            l = tl.minimum(nearest_int(isc * xs[i]), NMAX).to(tl.float32)
            diff = xs[i] - sc * l
            mse = mse + ws[i] * diff * diff
        better = mse < best
        best = tl.where(better, mse, best)
        best_isc = tl.where(better, isc, best_isc)
    L = ()
    sumlx = tl.zeros_like(mx)
    suml2 = tl.zeros_like(mx)
    for i in tl.static_range(len(xs)):
        l = tl.minimum(nearest_int(best_isc * xs[i]), NMAX)
        L = L + (l & 0xFF,)
        lf = l.to(tl.float32)
        sumlx = sumlx + ws[i] * xs[i] * lf
        suml2 = suml2 + ws[i] * lf * lf

    itry = 0
    changed = tl.max(tl.full(mx.shape, 1, tl.int32)) > 0
    while changed & (itry < QP_PASSES):
        moved = tl.zeros(mx.shape, tl.int32)
        nxt = ()  # this pass's codes: position i changes only at step i
        for i in tl.static_range(len(xs)):
            x = xs[i]
            w = ws[i]
            Li = L[i]
            Lf = Li.to(tl.float32)
            slx = sumlx - w * x * Lf
            sl2 = suml2 - w * Lf * Lf
            ok = (slx > 0) & (sl2 > 0)
            new_l = tl.minimum(nearest_int(div_rn(x * sl2, tl.where(ok, slx, 1.0))), NMAX)
            nf = new_l.to(tl.float32)
            slx_n = slx + w * x * nf
            sl2_n = sl2 + w * nf * nf
            ok = ok & (new_l != Li) & (slx_n * slx_n * suml2 > sumlx * sumlx * sl2_n)
            nxt = nxt + (tl.where(ok, new_l & 0xFF, Li),)
            sumlx = tl.where(ok, slx_n, sumlx)
            suml2 = tl.where(ok, sl2_n, suml2)
            moved = moved | ok.to(tl.int32)
        L = nxt
        changed = tl.max(moved) > 0
        itry += 1
    scale = tl.where(suml2 > 0, div_rn(sumlx, tl.where(suml2 > 0, suml2, 1.0)), 0.0)
    out = ()
    for i in tl.static_range(len(xs)):
        out = out + (tl.where(zero, 0, L[i]),)
    return tl.where(zero, 0.0, scale), out
