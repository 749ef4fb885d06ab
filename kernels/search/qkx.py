"""make_qkx2_quants / make_qkx3_quants: the asymmetric (scale, min) search, codes 0..nmax.

make_qkx serves the K-quants (Q2_K, Q4_K, Q5_K): its eager form, its compiled twin
(kernels.fused, CPU) and, where a C compiler builds it, kernels.native's C search (CPU, the
compiled path's first choice) behind one name. make_qkx_fp16_min serves Q4_1/Q5_1, which store
the minimum itself, so the sign of a zero minimum reaches the bytes (see its docstring).
"""
from __future__ import annotations

import numpy as np
import torch

from kernels import fused, native
from kernels.arith import (
    div, f32, f32_tensor, first_min_max, nearest_int, round_clamped, select, seq_sum, seq_sum_traced,
)

def make_qkx(
    x: torch.Tensor,
    w: torch.Tensor,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """make_qkx2_quants (and make_qkx3_quants with explicit weights) across groups.

    x, w: float32 [n, G].  Returns (scale [G], the_min [G], L float32 [n, G]) where the
    group decodes as ``scale*L - the_min``.  The two C functions only differ in the
    degenerate test (``max == min`` vs ``max <= min``), which is the same thing because
    min is clamped to <= 0 <= ... <= max; and qkx3's default weights are never used here.

    Codes are rounded with torch.round, valid while |iscale*(x - min)| < 2**22.  That
    bound is checked per group on the fly; a group that breaks it (a range so small
    that ``nmax/(max - min)`` overflows, e.g. subnormal weights) makes its slice rerun
    with C's bit-exact nearest_int, so the result is exact either way.

    Groups are independent, so they are processed in slices of about SLICE_WEIGHTS
    weights: the ~15 full passes per search step then stay in cache.
    """
    if fused.use(x) and not torch.compiler.is_compiling():
        got = native.make_qkx2(x, w, nmax, rmin, rdelta, nstep, use_mad)  # the fastest, where it builds
        if got is not None:
            return got
    n, G = x.shape
    # On CPU, slices keep the working set in cache (SLICE_WEIGHTS per thread, so that the
    # per-group ops stay large enough for torch's intra-op threads); on a GPU they would
    # only add launches.
    step_g = G if x.device.type != "cpu" else max(1, SLICE_WEIGHTS * torch.get_num_threads() // n)
    if G <= step_g:
        return _make_qkx_checked(x, w, nmax, rmin, rdelta, nstep, use_mad)
    parts = [
        _make_qkx_checked(x[:, a : a + step_g], w[:, a : a + step_g], nmax, rmin, rdelta, nstep, use_mad)
        for a in range(0, G, step_g)
    ]
    return tuple(torch.cat(p, dim=-1) for p in zip(*parts))  # type: ignore[return-value]


SLICE_WEIGHTS = 1 << 19


def _make_qkx_checked(x, w, nmax, rmin, rdelta, nstep, use_mad):
    if fused.use(x):
        scale, the_min, L, suspicious = _make_qkx_compiled(x, w, nmax, rmin, rdelta, nstep, use_mad)
    else:
        scale, the_min, L, suspicious = _make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad, exact=False)
    if bool(suspicious.any()):
        scale, the_min, L, _ = _make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad, exact=True)
    return scale, the_min, L


_SAFE_CODE = 4.0e6  # below 2**22 = 4194304 with room for the rounding of the bound itself


def _make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad, exact):
    n, G = x.shape
    fmax = float(nmax)
    x = x.contiguous()
    w = w.contiguous()
    buf = torch.empty((n, G), dtype=x.dtype, device=x.device)
    terms = torch.empty((n, 3, G), dtype=x.dtype, device=x.device)

    def codes(origin: torch.Tensor, isc: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """nearest_int(isc*(x - origin)) clamped to 0..nmax, as float32 in `out`."""
        torch.sub(x, origin, out=out)
        out.mul_(isc)
        if exact:
            out.copy_(nearest_int(out).clamp_(0, nmax))
            return out
        return out.round_().clamp_(0.0, fmax)

    def error(sc: torch.Tensor, mn_: torch.Tensor, L_: torch.Tensor) -> torch.Tensor:
        """sum_i w[i] * f(sc*L[i] + mn - x[i]) in C's order, f = |.| or square."""
        torch.mul(L_, sc, out=buf)
        buf.add_(mn_).sub_(x)
        if use_mad:
            buf.abs_()
        else:
            buf.mul_(buf)
        return seq_sum(buf.mul_(w))

    xmin = x.amin(dim=0)
    mx = x.amax(dim=0)
    mn = select(xmin > 0, 0.0, xmin)  # if (min > 0) min = 0
    sum_w = seq_sum(w, from_zero=False)
    sum_x = seq_sum(torch.mul(w, x, out=buf), from_zero=False)
    degenerate = mx == mn

    # C updates `min` whenever a step wins and later steps measure from the new min,
    # so the (iscale, min) pair behind the winning codes is what we remember.
    iscale = div(fmax, mx - mn)
    scale = div(1.0, iscale)
    L = codes(mn, iscale, torch.empty_like(x))
    suspicious = _qkx_unsafe(iscale, mn, mx, xmin)
    best_err = error(scale, mn, L)
    best_iscale, best_origin, cur_min = iscale, mn, mn
    if nstep >= 1:
        laux = L  # reuse: L is recomputed from the winner at the end
        wl, wl2, wlx = terms[:, 0], terms[:, 1], terms[:, 2]
        for step in range(nstep + 1):
            f = np.float32(rmin) + np.float32(rdelta) * np.float32(step)
            cand_iscale = div(float(f + np.float32(nmax)), mx - cur_min)
            suspicious |= _qkx_unsafe(cand_iscale, cur_min, mx, xmin)
            codes(cur_min, cand_iscale, laux)
            torch.mul(w, laux, out=wl)
            torch.mul(wl, laux, out=wl2)
            torch.mul(wl, x, out=wlx)
            sums = seq_sum(terms)
            sum_l, sum_l2, sum_xl = sums[0], sums[1], sums[2]
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            pos = this_min > 0
            this_min = select(pos, 0.0, this_min)
            this_scale = select(pos, sum_xl / sum_l2, this_scale)
            cur_err = error(this_scale, this_min, laux)
            better = (D > 0) & (cur_err < best_err)
            # one select over the stacked state instead of five: [G] ops cost mostly overhead
            state = select(
                better,
                torch.stack([cur_err, this_scale, cand_iscale, cur_min, this_min]),
                torch.stack([best_err, scale, best_iscale, best_origin, cur_min]),
            )
            best_err, scale, best_iscale, best_origin, cur_min = state.unbind(0)
        L = codes(best_origin, best_iscale, laux)
    zero = torch.zeros_like(scale)
    L = select(degenerate, 0.0, L)
    scale = select(degenerate, zero, scale)
    the_min = -select(degenerate, mn, cur_min)
    return scale, the_min, L, suspicious & ~degenerate

# --------------------------------------------------------------------------------------
# The compiled twin: one kernel per search step
# --------------------------------------------------------------------------------------


def _qkx_codes(x_i, origin, isc, top):
    """nearest_int(isc*(x - origin)) clamped to 0..top (int32), as float32 (bounded input;
    groups where it is not are flagged by _qkx_unsafe)."""
    return round_clamped((x_i - origin) * isc, torch.zeros_like(top), top)


def _qkx_error(x, w, scale, mn, L, zero, use_mad: bool):
    """sum_i w[i] * f(scale*L[i] + mn - x[i]) from zero, f = |.| or square."""
    terms = []
    for i in range(len(x)):
        diff = scale * L[i] + mn - x[i]
        terms.append(w[i] * (diff.abs() if use_mad else diff * diff))
    return seq_sum_traced(terms, zero)


def _qkx_unsafe(isc, origin, mx, xmin):
    """Groups where some |isc*(x - origin)| may reach 2**22 (where torch.round differs from
    C), or is NaN: the eager and the compiled search both flag them with this."""
    reach = torch.maximum((mx - origin).abs(), (xmin - origin).abs())
    return ~((isc.abs() * reach) < _SAFE_CODE)


def _qkx_start(x, w, nmax, top, one, zero, use_mad: bool):
    """Min/max scan, weight sums, the first (plain nmax/(max-min)) scale and its error."""
    xs, ws = x.unbind(0), w.unbind(0)
    xmin = torch.amin(x, dim=0)
    mx = torch.amax(x, dim=0)
    mn = torch.where(xmin > 0, torch.zeros_like(xmin), xmin)
    sum_w = seq_sum_traced(list(ws), None)
    sum_x = seq_sum_traced([ws[i] * xs[i] for i in range(len(xs))], None)
    iscale = nmax / (mx - mn)
    scale = one / iscale
    L = [_qkx_codes(xs[i], mn, iscale, top) for i in range(len(xs))]
    best = _qkx_error(xs, ws, scale, mn, L, zero, use_mad)
    return xmin, mx, mn, sum_w, sum_x, iscale, scale, best, _qkx_unsafe(iscale, mn, mx, xmin)


def _qkx_step(x, w, xmin, mx, sum_w, sum_x, fn, top, zero, best, scale, best_iscale, best_origin, cur_min, use_mad: bool):
    """One trial ``iscale = (rmin + rdelta*is + nmax)/(max - min)`` with C's acceptance rule.

    fn is the float32 numerator; the state (best error, scale, the winning iscale and
    the min it measured from, the current min) comes back updated.
    """
    xs, ws = x.unbind(0), w.unbind(0)
    isc = fn / (mx - cur_min)
    L = [_qkx_codes(xs[i], cur_min, isc, top) for i in range(len(xs))]
    wl = [ws[i] * L[i] for i in range(len(xs))]
    sum_l = seq_sum_traced(wl, zero)
    sum_l2 = seq_sum_traced([wl[i] * L[i] for i in range(len(xs))], zero)
    sum_xl = seq_sum_traced([wl[i] * xs[i] for i in range(len(xs))], zero)
    D = sum_w * sum_l2 - sum_l * sum_l
    this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
    this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
    pos = this_min > 0
    this_min = torch.where(pos, torch.zeros_like(this_min), this_min)
    this_scale = torch.where(pos, sum_xl / sum_l2, this_scale)
    err = _qkx_error(xs, ws, this_scale, this_min, L, zero, use_mad)
    better = (D > 0) & (err < best)
    return (
        torch.where(better, err, best),
        torch.where(better, this_scale, scale),
        torch.where(better, isc, best_iscale),
        torch.where(better, cur_min, best_origin),
        torch.where(better, this_min, cur_min),
        _qkx_unsafe(isc, cur_min, mx, xmin),
    )


def _qkx_finish(x, mx, mn, scale, best_iscale, best_origin, cur_min, top):
    """Codes of the winning trial; degenerate groups (max == min) get zeros."""
    deg = mx == mn
    L = round_clamped((x - best_origin) * best_iscale, torch.zeros_like(top), top)
    L = torch.where(deg, torch.zeros_like(L), L)
    scale = torch.where(deg, torch.zeros_like(scale), scale)
    the_min = torch.neg(torch.where(deg, mn, cur_min))
    return scale, the_min, L


_qkx_start_c = fused.compiled(_qkx_start)
_qkx_step_c = fused.compiled(_qkx_step)
_qkx_finish_c = fused.compiled(_qkx_finish)


def _make_qkx_compiled(x, w, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool):
    """make_qkx's search, compiled: (scale, the_min, L float32 [n, G], unsafe [G]).

    ``unsafe`` flags groups where a code's argument may reach 2**22; the caller then
    redoes those with the exact eager path (never seen on real weights).
    """
    n, G = x.shape
    nm, one, zero = f32_tensor(nmax), f32_tensor(1.0), f32_tensor(0.0)
    top = torch.tensor(nmax, dtype=torch.int32)
    numerators = [
        f32_tensor(np.float32(rmin) + np.float32(rdelta) * np.float32(step) + np.float32(nmax))
        for step in range(nstep + 1)
    ]
    parts = []
    for a, b in fused.slices(G, fused.SLICE_GROUPS):
        xs = x[:, a:b].contiguous()
        ws = w[:, a:b].contiguous()
        xmin, mx, mn, sum_w, sum_x, iscale, scale, best, unsafe = _qkx_start_c(xs, ws, nm, top, one, zero, use_mad)
        best_iscale, best_origin, cur_min = iscale, mn, mn
        if nstep >= 1:
            for fn in numerators:
                best, scale, best_iscale, best_origin, cur_min, bad = _qkx_step_c(
                    xs, ws, xmin, mx, sum_w, sum_x, fn, top, zero, best, scale, best_iscale, best_origin, cur_min, use_mad
                )
                unsafe = unsafe | bad
        deg = mx == mn
        parts.append((*_qkx_finish_c(xs, mx, mn, scale, best_iscale, best_origin, cur_min, top), unsafe & ~deg))
    return tuple(torch.cat(p, dim=-1) for p in zip(*parts))


# --------------------------------------------------------------------------------------
# Q4_1 / Q5_1 (quantize_row_q{4,5}_1_impl)
# --------------------------------------------------------------------------------------


def make_qkx_fp16_min(
    x: torch.Tensor,
    nmax: int,
    weights: "torch.Tensor | None",
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool = False,
) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """ggml's ``make_qkx3_quants`` for many groups at once (affine: x ~= scale*L - the_min),
    as Q4_1/Q5_1's imatrix paths call it.

    x, weights: float32 position-major [n, n_groups] (weights None: w = x*x).
    rmin, rdelta: float32 values (use f32()). Returns (scale, the_min, L uint8 [n, n_groups]).
    The trial loop is sequential per group: an accepted trial moves ``min``,
    which the next trials' rounding uses, exactly as in C.

    Why not make_qkx: Q4_1/Q5_1 store the minimum itself as fp16, so when it is a zero
    its sign reaches the bytes; this search finds min with C's strict scan
    (first_min_max: the first zero, +0.0 or -0.0), where make_qkx's amin (enough for the
    K-quants, which store 6-bit codes of the mins) may return either zero. It also rounds
    every code with the exact nearest_int (NaN as x86 gives it) and has no compiled twin.
    """
    n, nb = x.shape
    w = x * x if weights is None else weights
    wx = w * x
    mn, mx = first_min_max(x, 0)
    sum_w = seq_sum(w, from_zero=False)
    sum_x = seq_sum(wx, from_zero=False)
    mn = select(mn > 0, torch.zeros_like(mn), mn)
    dead = mx <= mn
    span = select(dead, torch.ones_like(mx), mx - mn)

    def err(scale_: torch.Tensor, min_: torch.Tensor, L_: torch.Tensor) -> torch.Tensor:
        diff = scale_ * L_ + min_ - x
        diff = diff.abs() if use_mad else diff * diff
        return seq_sum(w * diff)

    iscale = div(float(nmax), span)
    scale = div(1.0, iscale)
    L = nearest_int(iscale * (x - mn), nan_zero=True).clamp_(0, nmax).to(torch.float32)
    best_mad = err(scale, mn, L)
    if nstep >= 1:
        for step in range(nstep + 1):
            # C: iscale = (rmin + rdelta*is + nmax)/(max - min), with the current min
            iscale = div(f32(f32(rmin + f32(rdelta * step)) + nmax), mx - mn)
            l = nearest_int(iscale * (x - mn), nan_zero=True).clamp_(0, nmax).to(torch.float32)
            wl = w * l
            sums = seq_sum(torch.stack([wl, wl * l, wl * x], dim=1))
            sum_l, sum_l2, sum_xl = sums[0], sums[1], sums[2]
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = div(sum_w * sum_xl - sum_x * sum_l, D)
            this_min = div(sum_l2 * sum_x - sum_l * sum_xl, D)
            pos = this_min > 0
            this_min = select(pos, torch.zeros_like(this_min), this_min)
            this_scale = select(pos, div(sum_xl, sum_l2), this_scale)
            mad = err(this_scale, this_min, l)
            take = (D > 0) & (mad < best_mad) & ~dead
            L = select(take, l, L)
            best_mad = select(take, mad, best_mad)
            scale = select(take, this_scale, scale)
            mn = select(take, this_min, mn)
    L = select(dead, torch.zeros_like(L), L).to(torch.uint8)
    scale = select(dead, torch.zeros_like(scale), scale)
    return scale, -mn, L
