"""make_q3_quants (do_rmse): Q3_K's reference search, a coordinate-descent refinement.

make_q3_quants is the eager search (codes and scales); q3_search is its compiled twin
(kernels.fused, CPU), which returns the search's sums instead of codes because Q3_K
recomputes the codes from its stored scales anyway, and says when its result is not
exact so that the caller runs make_q3_quants instead.
"""
from __future__ import annotations

import torch

from kernels import fused
from kernels.arith import (
    GROUP_MAX_EPS, div, f32_tensor, first_abs_max, first_abs_max_traced, nearest_int, round_bounded, round_clamped,
    select, seq_sum, seq_sum_traced,
)


def make_q3_quants(x: torch.Tensor, nmax: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """make_q3_quants(n, nmax, x, L, do_rmse=true) across groups.

    x: float32 [n, G] -> (scale [G], L float32 [n, G] holding l + nmax, or 0 for an
    all-zero group).  The refinement visits positions in order and each accepted change
    moves the running sums, so it stays a loop over positions (and passes); groups that
    stopped changing are dropped from later passes, which C's early exit makes exact.
    """
    _, mx = first_abs_max(x)
    zero = mx.abs() < GROUP_MAX_EPS
    iscale = div(float(-nmax), mx)
    L = round_bounded(iscale * x).clamp_(float(-nmax), float(nmax - 1))
    w = x * x
    wx = w * x
    sumlx = seq_sum(wx * L)
    suml2 = seq_sum(w * L * L)

    # Only groups whose signed max is negative can move.  With max > 0, iscale < 0 gives
    # every code the opposite sign of its weight, so every term w*x*l is <= 0; a float
    # sum of non-positive terms is <= each of them, hence slx = sumlx - w*x*L[i] <= 0
    # and C's `if (slx > 0)` never fires.  (Zero groups are overwritten below.)
    active = (mx < 0).nonzero().squeeze(1)
    xa = x.index_select(1, active)
    La, slxa, sl2a = L.index_select(1, active), sumlx.index_select(0, active), suml2.index_select(0, active)
    for _ in range(5):
        if active.numel() == 0:
            break
        wa = xa * xa  # the same values as w, wx: recomputing beats gathering
        changed = _q3_pass(xa, wa, wa * xa, La, slxa, sl2a, nmax)
        # write back, then keep only the groups that moved (the others are final:
        # a pass that changes nothing would change nothing again, and C stops there)
        L.index_copy_(1, active, La)
        sumlx.index_copy_(0, active, slxa)
        suml2.index_copy_(0, active, sl2a)
        keep = changed.nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        active = active.index_select(0, keep)
        xa, La = xa.index_select(1, keep), La.index_select(1, keep)
        slxa, sl2a = slxa.index_select(0, keep), sl2a.index_select(0, keep)

    L = L + float(nmax)
    scale = select(suml2 > 0, sumlx / suml2, 0.0)
    L = select(zero, 0.0, L)
    scale = select(zero, 0.0, scale)
    return scale, L


def _q3_pass(x, w, wx, L, sumlx, suml2, nmax) -> torch.Tensor:
    """One refinement pass of make_q3_quants over all given groups, in place.

    Per position, C does ``if (slx > 0) { new_l = ...; if (new_l != L[i]) { ...accept? } }``.
    The first two tests are evaluated for every group; they rarely both hold, so the
    acceptance test and the updates run only on those few groups (gathered by index).
    Returns the mask of groups that changed.
    """
    changed = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    wxL = wx * L  # position i's own terms change only at position i
    wL2 = w * L * L
    for i in range(x.shape[0]):
        slx = sumlx - wxL[i]
        sl2 = suml2 - wL2[i]
        new_l = nearest_int((x[i] * sl2).div_(slx)).clamp_(-nmax, nmax - 1)  # unbounded input: exact
        cand = slx > 0
        cand &= new_l != L[i]
        idx = cand.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        nl = new_l[idx].float()
        slx_c = slx[idx] + wx[i, idx] * nl
        sl2_c = sl2[idx] + w[i, idx] * nl * nl
        s_lx, s_l2 = sumlx[idx], suml2[idx]
        ok = (sl2_c > 0) & (slx_c * slx_c * s_l2 > s_lx * s_lx * sl2_c)
        idx = idx[ok]
        L[i, idx] = nl[ok]
        sumlx[idx] = slx_c[ok]
        suml2[idx] = sl2_c[ok]
        changed[idx] = True
    return changed


# --------------------------------------------------------------------------------------
# The compiled twin: the refinement passes as rounds of independent tests
# --------------------------------------------------------------------------------------


def _q3_start(x, num, lo, hi, zero):
    """Signed max, codes from -nmax/max, and the weighted sums (w = x*x) of those codes."""
    xs = x.unbind(0)
    mx = first_abs_max_traced(list(xs))
    iscale = num / mx
    L = [round_clamped(iscale * v, lo, hi) for v in xs]
    w = [v * v for v in xs]
    sumlx = seq_sum_traced([(w[i] * xs[i]) * L[i] for i in range(len(xs))], zero)
    suml2 = seq_sum_traced([w[i] * L[i] * L[i] for i in range(len(xs))], zero)
    return mx, L, sumlx, suml2


def _q3_try(x_i, L_i, sumlx, suml2, lo, hi):
    """make_q3_quants' refinement test at one position: (ok, new_l, its sums, quotient size).

    C rounds ``x*sl2/slx`` with nearest_int before clamping to -nmax..nmax-1; that is
    torch.round while |x*sl2/slx| < 2**22. The last value is the rounded quotient's size
    (_magnitude) where C evaluates it (slx > 0), else 0: callers keep its maximum and
    hand groups where it reached 2**22 (huge or infinite quotients) to the exact eager
    path (_q3_unsafe).
    """
    w = x_i * x_i
    wx = w * x_i
    slx = sumlx - wx * L_i
    sl2 = suml2 - w * L_i * L_i
    q = torch.round(x_i * sl2 / slx).to(torch.int32)
    new_l = torch.minimum(torch.maximum(q, lo), hi).float()
    slx_n = slx + wx * new_l
    sl2_n = sl2 + w * new_l * new_l
    live = slx > 0
    ok = live & (sl2_n > 0) & (new_l != L_i) & (slx_n * slx_n * suml2 > sumlx * sumlx * sl2_n)
    return ok, new_l, slx_n, sl2_n, torch.where(live, _magnitude(q), 0)


def _magnitude(q):
    """|q| for int32 q >= 0, |q| - 1 below 0, INT_MAX for INT_MIN (a NaN or huge quotient
    converted): no overflow, and enough to compare with 2**22."""
    return q ^ (q >> 31)


def _q3_unsafe(qmax):
    return qmax >= 4194303


Q3_PASSES = 5  # make_q3_quants' itry loop


def _q3_find(xs, L, sumlx, suml2, pos, npass, qmax, lo, hi):
    """Where C's refinement makes its next change, found by testing every position at once.

    Between two accepted changes C's passes test positions against the same sums and
    codes. So the next change is the first position after ``pos`` (the last change,
    -1 before any) whose test passes against the current state, or else, in C's next
    pass, the first position at all; with neither (or with all passes used) the group
    has converged and every further round leaves it as it is. Returns (at, the pass it
    is in, moved, qmax): the position (n where none), its pass, whether the change is
    made, and ``qmax`` raised to the largest quotient seen (tests that C would not run
    only make it more cautious).
    """
    n = len(xs)
    none = torch.full_like(sumlx, float(n))
    first_after, first_any = none, none
    for i in reversed(range(n)):
        ok, _, _, _, q = _q3_try(xs[i], L[i], sumlx, suml2, lo, hi)
        first_after = torch.where(ok & (pos < i), float(i), first_after)
        first_any = torch.where(ok, float(i), first_any)
        qmax = torch.maximum(qmax, q)
    wrap = first_after == n
    at = torch.where(wrap, first_any, first_after)
    next_pass = torch.where(wrap, npass + 1.0, npass)
    return at, next_pass, (at < n) & (next_pass < Q3_PASSES), qmax


def _q3_apply(xs, L, sumlx, suml2, pos, npass, at, next_pass, moved, lo, hi):
    """The state after the change at ``at`` (where ``moved``): the chosen position's test
    again, which is cheaper than keeping all n results live."""
    n = len(xs)
    x_at, L_at = torch.zeros_like(sumlx), torch.zeros_like(sumlx)
    for i in range(n):
        x_at = torch.where(at == i, xs[i], x_at)
        L_at = torch.where(at == i, L[i], L_at)
    _, new_l, slx_n, sl2_n, _ = _q3_try(x_at, L_at, sumlx, suml2, lo, hi)
    L = [torch.where(moved & (at == i), new_l, L[i]) for i in range(n)]
    sumlx = torch.where(moved, slx_n, sumlx)
    suml2 = torch.where(moved, sl2_n, suml2)
    pos = torch.where(moved, at, pos)
    npass = torch.where(moved, next_pass, npass)
    return L, sumlx, suml2, pos, npass


def _q3_rounds(x, S, lo, hi, rounds: int):
    """``rounds`` rounds (_q3_find, _q3_apply) on the state S [n + 4, G] (codes, sumlx, suml2, pos,
    npass): (S after them, moved in the last round, unsafe).

    The state is stacked into one tensor after each round: Inductor then stores it
    rather than recomputing a round's expressions inside every test of the next.
    """
    xs, n = x.unbind(0), x.shape[0]
    qmax = torch.zeros_like(S[0], dtype=torch.int32)
    for _ in range(rounds):
        v = S.unbind(0)
        at, next_pass, moved, qmax = _q3_find(xs, v[:n], *v[n:], qmax, lo, hi)
        L, sumlx, suml2, pos, npass = _q3_apply(xs, v[:n], *v[n:], at, next_pass, moved, lo, hi)
        S = torch.stack([*L, sumlx, suml2, pos, npass])
    return S, moved, _q3_unsafe(qmax)


def _q3_start_and_probe(x, num, lo, hi, zero):
    """Over all groups: the start, and where C's first pass would make its first change
    (the first position whose test passes against the starting state, n where none):
    (mx, sumlx, suml2, first, unsafe). For most groups the start is final."""
    xs, n = x.unbind(0), x.shape[0]
    mx, L, sumlx, suml2 = _q3_start(x, num, lo, hi, zero)
    first = torch.full_like(sumlx, float(n))
    qmax = torch.zeros_like(sumlx, dtype=torch.int32)
    for i in reversed(range(n)):
        ok, _, _, _, q = _q3_try(xs[i], L[i], sumlx, suml2, lo, hi)
        first = torch.where(ok, float(i), first)
        qmax = torch.maximum(qmax, q)
    return mx, sumlx, suml2, first, _q3_unsafe(qmax)


# Rounds per refinement call. The first call (the probe's first change, then
# Q3_FIRST_ROUNDS rounds) settles about 60 % of the moving groups (real weights: 2.5
# changes each on average, up to ~10); fewer rounds per call cost more calls, more gain
# nothing measurable (2/3 against 3/3, 4/3 and 3/5, timed side by side).
Q3_FIRST_ROUNDS = 2
Q3_ROUNDS = 3


def _q3_from_start(x, first, num, lo, hi, zero):
    """For the groups that move: the start again (cheaper than gathering it), the first
    change (at ``first``, found by the probe), then Q3_FIRST_ROUNDS rounds: (state S,
    moved in the last round, unsafe)."""
    xs = x.unbind(0)
    _, L, sumlx, suml2 = _q3_start(x, num, lo, hi, zero)
    zeros, yes = torch.zeros_like(sumlx), torch.ones_like(sumlx, dtype=torch.bool)
    L, sumlx, suml2, pos, npass = _q3_apply(xs, L, sumlx, suml2, zeros - 1.0, zeros, first, zeros, yes, lo, hi)
    S = torch.stack([*L, sumlx, suml2, pos, npass])
    return _q3_rounds(x, S, lo, hi, Q3_FIRST_ROUNDS)


def _q3_more(x, S, lo, hi):
    return _q3_rounds(x, S, lo, hi, Q3_ROUNDS)


# Inductor's default limit of 64 nodes per fused kernel cuts a round into several loops
# that recompute its tests (2-4x slower calls), hence no limit here.
_Q3_OPTIONS = {"max_fusion_size": 100000}
_q3_probe_c = fused.compiled(_q3_start_and_probe, **_Q3_OPTIONS)
_q3_from_start_c = fused.compiled(_q3_from_start, **_Q3_OPTIONS)
_q3_more_c = fused.compiled(_q3_more, **_Q3_OPTIONS)


def q3_search(x: torch.Tensor, groups: torch.Tensor, nmax: int):
    """make_q3_quants' search over position-major groups x [n, G]; groups [G, n] holds the
    same weights group by group (a view of the input rows).

    Returns (mx, sumlx, suml2, exact): the signed max and final sums of each group (its
    scale is sumlx/suml2; the codes are not kept: Q3_K recomputes them from its stored
    scales). ``exact`` is False when some quotient left torch.round's exact range: the
    caller must then use the eager search instead.

    C's refinement makes one change at a time; each round (_q3_find) finds the next one
    for every group with independent tests. A probe over all groups finds where the
    first pass would make its first change (in about one group in seven on real weights;
    only groups whose signed max is negative can change at all); those groups are
    gathered by rows and refined, Q3_ROUNDS rounds per call, the ones still moving
    again, until none moves.
    """
    n = x.shape[0]
    num, zero = f32_tensor(-nmax), f32_tensor(0.0)
    lo, hi = torch.tensor(-nmax, dtype=torch.int32), torch.tensor(nmax - 1, dtype=torch.int32)
    mx, sumlx, suml2, first, unsafe = _q3_probe_c(x, num, lo, hi, zero)
    if bool(unsafe.any()):
        return mx, sumlx, suml2, False
    idx = (first < n).nonzero().squeeze(1)
    if idx.numel():
        idx = fused.at_least_two(idx)
        S, bad = _q3_refine(fused.positions_major(groups.index_select(0, idx), n), first.index_select(0, idx), num, lo, hi, zero)
        if bad:
            return mx, sumlx, suml2, False
        sumlx.index_copy_(0, idx, S[n])
        suml2.index_copy_(0, idx, S[n + 1])
    return mx, sumlx, suml2, True


def _q3_refine(x: torch.Tensor, first: torch.Tensor, num, lo, hi, zero) -> "tuple[torch.Tensor, bool]":
    """The refined state S of the moving groups x [n, A] (A >= 2) whose first change is
    at ``first`` [A], and whether some quotient was out of torch.round's exact range."""
    S, moved, unsafe = _q3_from_start_c(x, first, num, lo, hi, zero)
    part = None  # the columns still moving
    while not bool(unsafe.any()):
        keep = moved.nonzero().squeeze(1)
        if not keep.numel():
            return S, False
        part = fused.at_least_two(keep if part is None else part.index_select(0, keep))
        Sp, moved, unsafe = _q3_more_c(x.index_select(1, part), S.index_select(1, part), lo, hi)
        S.index_copy_(1, part, Sp)
    return S, True
