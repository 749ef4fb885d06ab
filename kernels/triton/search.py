"""The scale searches of ggml-quants.c as Triton device functions, one group per lane.

Position loops are runtime loops (``range``), not unrolled: the search bodies are long and
unrolling 32 positions times two passes made compiling one kernel take minutes; the
order of operations is the same either way.

Each function works on a tile of groups at once (any shape: [BLOCK] blocks, or
[BLOCK, 8] sub-blocks of super-blocks); ``xp`` points at position 0 of every group,
whose n weights follow contiguously. Positions are walked one after another and
every sum runs in C's order from C's start value, so one lane does exactly what one
call of the C function does (kernels/search/ has the same searches in PyTorch).

Trial numerators that C folds in float32 (``rmin + rdelta*is + nmax``, ``0.1f*is``)
arrive as float32 tables computed on the host (:func:`qkx_numerators` and friends):
constexpr arithmetic inside a kernel would run in Python doubles.

The searches return the winning inverse scale and origin rather than codes; callers
recompute each code with the same expression, which gives C's codes (C copies Laux
into L on each acceptance).
"""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from kernels.triton.common import GROUP_MAX_EPS, div_rn, nearest_int


def _table(values: "list[np.float32]", device: torch.device) -> torch.Tensor:
    return torch.tensor(np.array(values, dtype=np.float32), device=device)


def qkx_numerators(nmax: int, rmin: float, rdelta: float, nstep: int, device: torch.device) -> torch.Tensor:
    """make_qkx2/3_quants' ``rmin + rdelta*is + nmax`` for is = 0..nstep, folded in float32."""
    f = np.float32
    return _table([f(f(rmin) + f(rdelta) * f(i)) + f(nmax) for i in range(nstep + 1)], device)


def qx_numerators(nmax: int, device: torch.device) -> torch.Tensor:
    """make_qx_quants' ``-(nmax + 0.1f*is)``: is = 0 (plain -nmax) first, then -9..9 without 0."""
    f = np.float32
    trials = [0] + [k for k in range(-9, 10) if k != 0]
    return _table([-(f(nmax) + f(f(0.1) * f(k))) if k else f(-nmax) for k in trials], device)


def qp_numerators(nmax: int, device: torch.device) -> torch.Tensor:
    """make_qp_quants' ``0.1f*is + nmax`` for is = -4..4 without 0."""
    f = np.float32
    return _table([f(f(0.1) * f(k)) + f(nmax) for k in range(-4, 5) if k != 0], device)


# --------------------------------------------------------------------------------------
# make_qx_quants (rmse_type 1, explicit weights): symmetric codes -nmax..nmax-1
# --------------------------------------------------------------------------------------


@triton.jit
def qx_sums(xp, wp, mask, iscale, N: tl.constexpr, NMAX: tl.constexpr):
    """sumlx, suml2 of one trial scale: ``l = clamp(nearest_int(iscale*x))``, from 0."""
    sumlx = tl.zeros_like(iscale)
    suml2 = tl.zeros_like(iscale)
    for i in range(N):
        x = tl.load(xp + i, mask=mask, other=0.0)
        w = tl.load(wp + i, mask=mask, other=0.0)
        v = iscale * x  # nearest_int inlined (a device-function call per step is slow to interpret)
        l = ((v + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        l = tl.where(v == v, l, 0)
        l = tl.minimum(tl.maximum(l, -NMAX), NMAX - 1).to(tl.float32)
        sumlx += (w * x) * l
        suml2 += (w * l) * l
    return sumlx, suml2


@triton.jit
def make_qx_quants(xp, wp, mask, num_ptr, N: tl.constexpr, NMAX: tl.constexpr):
    """ggml's make_qx_quants(n, nmax, x, L, 1, qw) per lane -> (scale, iscale, live).

    num_ptr: qx_numerators(nmax). The codes are ``nmax + clamp(nearest_int(iscale*x),
    -nmax, nmax-1)`` where live, 0 elsewhere (groups below GROUP_MAX_EPS).
    """
    amax = tl.zeros(xp.shape, tl.float32)
    mx = tl.zeros(xp.shape, tl.float32)
    for i in range(N):
        x = tl.load(xp + i, mask=mask, other=0.0)
        ax = tl.abs(x)
        gt = ax > amax
        amax = tl.where(gt, ax, amax)
        mx = tl.where(gt, x, mx)
    live = amax >= GROUP_MAX_EPS
    mx = tl.where(live, mx, 1.0)  # dead lanes: any finite divisor, their result is discarded
    iscale = div_rn(tl.load(num_ptr), mx)
    sumlx, suml2 = qx_sums(xp, wp, mask, iscale, N, NMAX)
    scale = tl.where(suml2 != 0, div_rn(sumlx, suml2), 0.0)
    best = scale * sumlx
    chosen = iscale
    for t in range(1, 19):
        isc = div_rn(tl.load(num_ptr + t), mx)
        slx, sl2 = qx_sums(xp, wp, mask, isc, N, NMAX)
        take = (sl2 > 0) & (slx * slx > best * sl2)
        scale = tl.where(take, div_rn(slx, sl2), scale)
        best = tl.where(take, scale * slx, best)
        chosen = tl.where(take, isc, chosen)
    return tl.where(live, scale, 0.0), chosen, live


@triton.jit
def qx_code(x, iscale, live, NMAX: tl.constexpr):
    """make_qx_quants' stored code L = nmax + clamp(l) (int32), 0 for dead groups."""
    l = tl.minimum(tl.maximum(nearest_int(iscale * x), -NMAX), NMAX - 1)
    return tl.where(live, l + NMAX, 0)


# --------------------------------------------------------------------------------------
# make_qkx2_quants / make_qkx3_quants (explicit weights): (scale, min), codes 0..nmax
# --------------------------------------------------------------------------------------


@triton.jit
def qkx_weight(xp, wp, av, i, mask, W_AV: tl.constexpr):
    """(x, w) at position i: w = av + |x| (the K-quants' reference weights) or loaded."""
    x = tl.load(xp + i, mask=mask, other=0.0)
    if W_AV:
        w = av + tl.abs(x)
    else:
        w = tl.load(wp + i, mask=mask, other=0.0)
    return x, w


@triton.jit
def qkx_code(x, origin, iscale, NMAX: tl.constexpr):
    """``MAX(0, MIN(nmax, nearest_int(iscale*(x - min))))`` as int32."""
    return tl.minimum(tl.maximum(nearest_int(iscale * (x - origin)), 0), NMAX)


@triton.jit
def qkx_error(xp, wp, av, mask, scale, origin, iscale, the_min, N: tl.constexpr, NMAX: tl.constexpr, W_AV: tl.constexpr):
    """sum_i w*(diff*diff), diff = scale*L + min - x, L the codes of (origin, iscale), from 0."""
    err = tl.zeros_like(scale)
    for i in range(N):
        x = tl.load(xp + i, mask=mask, other=0.0)
        if W_AV:
            w = av + tl.abs(x)
        else:
            w = tl.load(wp + i, mask=mask, other=0.0)
        v = iscale * (x - origin)
        l = ((v + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        l = tl.minimum(tl.maximum(tl.where(v == v, l, 0), 0), NMAX).to(tl.float32)
        diff = scale * l + the_min - x
        err += w * (diff * diff)
    return err


@triton.jit
def make_qkx(xp, wp, av, mask, num_ptr, N: tl.constexpr, NMAX: tl.constexpr, NSTEP: tl.constexpr, W_AV: tl.constexpr):
    """make_qkx2_quants / make_qkx3_quants(n, nmax, x, w, ..., use_mad=false) per lane.

    Returns (scale, the_min, iscale, origin, dead): the group decodes as scale*L - the_min;
    its codes are qkx_code(x, origin, iscale) where not dead, 0 where dead (max == min,
    which is qkx3's max <= min since min <= 0 and min <= max). num_ptr: qkx_numerators.
    W_AV: weights av + |x| (av per lane) instead of loading them from wp.
    """
    x = tl.load(xp, mask=mask, other=0.0)
    if W_AV:
        w = av + tl.abs(x)
    else:
        w = tl.load(wp, mask=mask, other=0.0)
    mn = x
    mx = x
    sum_w = w
    sum_x = sum_w * x
    for i in range(1, N):
        x = tl.load(xp + i, mask=mask, other=0.0)
        if W_AV:
            w = av + tl.abs(x)
        else:
            w = tl.load(wp + i, mask=mask, other=0.0)
        mn = tl.where(x < mn, x, mn)
        mx = tl.where(x > mx, x, mx)
        sum_w += w
        sum_x += w * x
    mn = tl.where(mn > 0, 0.0, mn)
    dead = mx == mn
    iscale = div_rn(tl.full(mx.shape, NMAX, tl.float32), mx - mn)
    scale = div_rn(1.0, iscale)
    best = qkx_error(xp, wp, av, mask, scale, mn, iscale, mn, N, NMAX, W_AV)
    best_isc = iscale
    best_org = mn
    cur_min = mn
    for t in range(NSTEP + 1):
        isc = div_rn(tl.load(num_ptr + t), mx - cur_min)
        sum_l = tl.zeros_like(isc)
        sum_l2 = tl.zeros_like(isc)
        sum_xl = tl.zeros_like(isc)
        for i in range(N):
            x = tl.load(xp + i, mask=mask, other=0.0)
            if W_AV:
                w = av + tl.abs(x)
            else:
                w = tl.load(wp + i, mask=mask, other=0.0)
            v = isc * (x - cur_min)
            l = ((v + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
            l = tl.minimum(tl.maximum(tl.where(v == v, l, 0), 0), NMAX).to(tl.float32)
            wl = w * l
            sum_l += wl
            sum_l2 += wl * l
            sum_xl += wl * x
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = div_rn(sum_w * sum_xl - sum_x * sum_l, D)
        this_min = div_rn(sum_l2 * sum_x - sum_l * sum_xl, D)
        pos = this_min > 0
        this_min = tl.where(pos, 0.0, this_min)
        this_scale = tl.where(pos, div_rn(sum_xl, sum_l2), this_scale)
        err = qkx_error(xp, wp, av, mask, this_scale, cur_min, isc, this_min, N, NMAX, W_AV)
        take = (D > 0) & (err < best)
        best = tl.where(take, err, best)
        scale = tl.where(take, this_scale, scale)
        best_isc = tl.where(take, isc, best_isc)
        best_org = tl.where(take, cur_min, best_org)
        cur_min = tl.where(take, this_min, cur_min)
    scale = tl.where(dead, 0.0, scale)
    the_min = -tl.where(dead, mn, cur_min)
    return scale, the_min, best_isc, best_org, dead


# --------------------------------------------------------------------------------------
# make_qp_quants over the 8 sub-block scales of [BLOCK, 8] super-block tiles
# --------------------------------------------------------------------------------------


@triton.jit
def col_f(v, jj, j: tl.constexpr):
    """Column j of float [B, K] as [B], exactly (signed zeros kept: a max, never a sum)."""
    return tl.max(tl.where(jj == j, v, float("-inf")), axis=1)


@triton.jit
def col_i(v, jj, j: tl.constexpr):
    """Column j of int32 [B, K] as [B] (an integer sum of one term: exact)."""
    return tl.sum(tl.where(jj == j, v, 0), axis=1)


@triton.jit
def make_qp_quants(v, qw, jj, num_ptr, K: tl.constexpr, NMAX: tl.constexpr):
    """ggml's make_qp_quants(K, nmax, x, L, qw) per row of v [B, K] -> (scale [B], L int32 [B, K]).

    L holds what C's uint8 L holds (negative codes wrap to 256 + l). num_ptr: qp_numerators.
    Column j of a tile is taken with a max over a mask (exact, signed zeros kept); the
    helpers are written inline because the interpreter pays for every device-function call.
    """
    NEG: tl.constexpr = float("-inf")
    mx = tl.zeros([v.shape[0]], tl.float32)
    for j in tl.static_range(K):
        xj = tl.max(tl.where(jj == j, v, NEG), axis=1)
        mx = tl.where(mx > xj, mx, xj)  # MAX(max, x[i])
    zero = mx < GROUP_MAX_EPS
    mx = tl.where(zero, 1.0, mx)
    iscale = div_rn(tl.full(mx.shape, NMAX, tl.float32), mx)
    scale = div_rn(1.0, iscale)
    best = tl.zeros_like(mx)
    for j in tl.static_range(K):
        xj = tl.max(tl.where(jj == j, v, NEG), axis=1)
        wj = tl.max(tl.where(jj == j, qw, NEG), axis=1)
        t = iscale * xj
        lj = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        lj = (tl.where(t == t, lj, 0) & 0xFF).to(tl.float32)  # C stores it in uint8
        diff = xj - scale * lj
        best += (wj * diff) * diff
    best_isc = iscale
    for k in range(8):  # runtime loops here and below: less code to compile, same arithmetic
        isc = div_rn(tl.load(num_ptr + k), mx)
        sc = div_rn(1.0, isc)
        mse = tl.zeros_like(mx)
        for j in tl.static_range(K):
            xj = tl.max(tl.where(jj == j, v, NEG), axis=1)
            wj = tl.max(tl.where(jj == j, qw, NEG), axis=1)
            t = isc * xj
            lj = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
            lj = tl.minimum(tl.where(t == t, lj, 0), NMAX).to(tl.float32)
            diff = xj - sc * lj
            mse += (wj * diff) * diff
        better = mse < best
        best = tl.where(better, mse, best)
        best_isc = tl.where(better, isc, best_isc)
    sumlx = tl.zeros_like(mx)
    suml2 = tl.zeros_like(mx)
    L = tl.zeros(v.shape, tl.int32)
    for j in tl.static_range(K):
        xj = tl.max(tl.where(jj == j, v, NEG), axis=1)
        wj = tl.max(tl.where(jj == j, qw, NEG), axis=1)
        t = best_isc * xj
        l = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
        l = tl.minimum(tl.where(t == t, l, 0), NMAX)
        L = tl.where(jj == j, (l & 0xFF)[:, None], L)
        lf = l.to(tl.float32)
        sumlx += (wj * xj) * lf
        suml2 += (wj * lf) * lf
    # C stops after a pass without change; a further pass would change nothing either.
    for _ in range(5):
        for j in tl.static_range(K):
            xj = tl.max(tl.where(jj == j, v, NEG), axis=1)
            wj = tl.max(tl.where(jj == j, qw, NEG), axis=1)
            Lj = tl.sum(tl.where(jj == j, L, 0), axis=1)
            Lf = Lj.to(tl.float32)
            slx = sumlx - (wj * xj) * Lf
            sl2 = suml2 - (wj * Lf) * Lf
            ok = (slx > 0) & (sl2 > 0)
            t = tl.math.div_rn(xj * sl2, slx)
            new_l = ((t + 12582912.0).to(tl.int32, bitcast=True) & 0x007FFFFF) - 0x00400000
            new_l = tl.minimum(tl.where(t == t, new_l, 0), NMAX)
            ok = ok & (new_l != Lj)
            nf = new_l.to(tl.float32)
            slx = slx + (wj * xj) * nf
            sl2 = sl2 + (wj * nf) * nf
            ok = ok & ((slx * slx) * suml2 > (sumlx * sumlx) * sl2)
            L = tl.where((jj == j) & ok[:, None], (new_l & 0xFF)[:, None], L)
            sumlx = tl.where(ok, slx, sumlx)
            suml2 = tl.where(ok, sl2, suml2)
    scale = tl.where(suml2 > 0, div_rn(sumlx, suml2), 0.0)
    scale = tl.where(zero, 0.0, scale)
    L = tl.where(zero[:, None], 0, L)
    return scale, L
