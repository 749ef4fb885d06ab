"""The hot scale searches as compiled, fused CPU kernels (torch.compile / Inductor).

Why: in eager PyTorch every step of a K-quant search costs several whole-tensor
passes (each op reads and writes all groups), where llama.cpp's scalar loop
touches a group once. The functions here are the same searches written as plain
per-position tensor expressions over ``[G]`` vectors (position-major, as in
kernels.kquant_search); Inductor fuses each one into a single C++ loop over the
groups, vectorised across groups, with the sequential in-group sums kept in C's
order inside the loop body.

Exactness under compilation rests on a few rules, each checked by the byte-exact
tests against llama.cpp (tests/kernels run every codec on both paths):

* Inductor rewrites a division by a *constant* into a multiply by its reciprocal,
  so every divisor here is a tensor computed at run time (constants that divide
  are passed in as 0-dim tensors).
* Inductor compiles with ``-fno-signed-zeros`` and drops ``x + 0.0`` from graphs,
  so C's ``float s = 0; s += t`` (which turns -0.0 into +0.0) adds a run-time
  zero tensor (``seq_sum``).
* Bit casts (``tensor.view(torch.int32)``) compile to a scalar loop, so the hot
  loops round with torch.round on arguments known to be below 2**22 and flag
  groups where that does not hold; callers redo those with the eager codec.
* Inductor drops float32 -> float16 -> float32 round trips as pointless (even with
  bit casts in between), so C's re-read of a stored fp16 scale happens between two
  kernels, in eager mode.
* ``-ffp-contract=off`` is Inductor's default: no fused multiply-adds, as in the
  reference library. Division, sqrt and rounding are IEEE-exact vector ops.

The kernels are built with Inductor's C++ wrapper, which releases the GIL while they
run, so kernels.api can quantize row ranges on several Python threads (one torch
thread each) as it does for the eager codecs; with more torch threads Inductor
parallelises each loop over groups with OpenMP instead.
Compiling needs a C++ compiler; without one, or with DSQ_KERNELS_COMPILE=0, or on
CUDA tensors, the eager codecs run instead (same bytes, slower on CPU).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from typing import Callable, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

# Groups per compiled call: big enough for OpenMP threads to share, small enough that
# a step's inputs (x and w of all groups of the slice) stay in the L2/L3 caches.
SLICE_GROUPS = 16384

_MAGIC = 12582912.0  # 1.5 * 2**23, see kquant_search.nearest_int

_state = {"enabled": os.environ.get("DSQ_KERNELS_COMPILE", "1") != "0", "checked": False}
_lock = threading.Lock()


def set_enabled(on: bool) -> None:
    """Switch the compiled path on or off for this process (tests run both)."""
    _state["enabled"] = on


# Smaller tensors run eagerly: they take milliseconds either way, while a process pays
# for loading (or first compiling) the kernels. (Never below 512: group counts of 0 or 1
# would make torch.compile build special-cased kernels.)
MIN_WEIGHTS = 1 << 20


def active(x: torch.Tensor) -> bool:
    """True when the compiled kernels should handle x: a big enough CPU tensor, compiling on and working."""
    if not _state["enabled"] or x.device.type != "cpu" or x.numel() < MIN_WEIGHTS:
        return False
    if not _state["checked"]:
        with _lock:
            if not _state["checked"]:
                _state["enabled"] = _compiler_works()
                _state["checked"] = True
    return _state["enabled"]


_scope = threading.local()


@contextlib.contextmanager
def decided_for(x: torch.Tensor, wanted: bool = True) -> Iterator[bool]:
    """Decide once for a whole tensor (kernels.api does), so that the slices and
    sub-tensors the codecs hand to their helpers follow that decision (see use).
    wanted False (a type without compiled kernels) decides eager without touching
    torch.compile, whose machinery costs a process a few hundred MiB once loaded."""
    prev = getattr(_scope, "on", None)
    _scope.on = wanted and active(x)
    try:
        yield _scope.on
    finally:
        _scope.on = prev


def use(x: torch.Tensor) -> bool:
    """Whether a codec or helper should run its compiled form on x, a part of the tensor
    being quantized: the decision made for that tensor, or active(x) outside one."""
    on = getattr(_scope, "on", None)
    if on is None:
        return active(x)
    return on and x.device.type == "cpu" and x.numel() >= 512 and x.shape[-1] >= 2


def _compiler_works() -> bool:
    """Compile and run a one-line kernel; False (with a warning) if Inductor cannot build it."""
    try:
        probe = _compile(lambda t: t * 2 + 1)
        return bool(probe(torch.ones(4)).eq(3).all())
    except Exception as exc:  # no compiler, missing headers, ...: fall back to eager codecs
        log.warning("kernels: torch.compile unavailable (%s); using the eager CPU codecs", exc)
        return False


def _compile(fn: Callable, **options) -> Callable:
    # dynamic: one kernel for every group count; dynamic_threads: the same kernel
    # whatever torch.get_num_threads() is when it runs; cpp_wrapper: the call runs in
    # C++ and releases the GIL (kernels.api runs row ranges on Python threads).
    return torch.compile(fn, dynamic=True, options={"cpp.dynamic_threads": True, "cpp_wrapper": True, **options})


def compiled(fn: Callable, **options) -> Callable:
    """fn compiled on first call (lazily, so importing kernels never compiles anything),
    with Inductor config ``options`` on top of ours.

    If Inductor fails to build it, fn runs uncompiled from then on (the expressions are
    exact eagerly too, only slower), with a warning.
    """
    holder: list = []

    @functools.wraps(fn)
    def call(*args):
        if not holder:
            log.info("kernels: compiling %s on first use (cached on disk afterwards)", fn.__qualname__)
            holder.append(_compile(fn, **options))
        if holder[0] is fn:
            return fn(*args)
        try:
            return holder[0](*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            log.warning("kernels: could not compile %s (%s); running it uncompiled", fn.__qualname__, exc)
            holder[0] = fn
            return fn(*args)

    return call


def slices(total: int, step: int) -> "list[tuple[int, int]]":
    """[a, b) ranges of at most ~step covering total, none shorter than 2 (see MIN_WEIGHTS)."""
    bounds = list(range(0, total, step)) + [total]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def at_least_two(idx: torch.Tensor) -> torch.Tensor:
    """A single index doubled: a gathered subset of one would need its own compiled kernel.
    (Duplicates are harmless: both copies compute and write back the same values.)"""
    return idx.repeat(2) if idx.numel() == 1 else idx


def _positions_major(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.reshape(-1, n).t().contiguous()


_positions_major_c = compiled(_positions_major)


def positions_major(x: torch.Tensor, n: int) -> torch.Tensor:
    """[rows, k*n] -> [n, groups]: the layout of the searches. Inductor's tiled transpose
    is several times faster than torch's strided copy for this shape."""
    return _positions_major_c(x, n)


# --------------------------------------------------------------------------------------
# C idioms as fusable expressions
# --------------------------------------------------------------------------------------


def seq_sum(terms: "list[torch.Tensor]", zero: "torch.Tensor | None") -> torch.Tensor:
    """C's ``for (...) s += t[i]`` in order, from ``float s = 0`` (zero: a 0-dim +0.0
    tensor) or, with zero None, from ``float s = t[0]``.

    ``0.0f + t[0]`` turns -0.0 into +0.0. The zero comes in as a run-time tensor:
    a literal ``+ 0.0`` would be dropped by Inductor and by -fno-signed-zeros.
    """
    acc = terms[0] if zero is None else zero + terms[0]
    for t in terms[1:]:
        acc = acc + t
    return acc


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """ggml's nearest_int bit for bit, any float32 input (int32 out)."""
    bits = (v + _MAGIC).view(torch.int32)
    return (bits & 0x007FFFFF) - 0x00400000


def fp16_byte_pair(v: torch.Tensor) -> torch.Tensor:
    """float32 [nb] -> int32 [nb, 2]: the little-endian bytes of each value's fp16
    (round to nearest even), for torch.cat into block bytes inside a kernel."""
    bits = v.to(torch.float16).view(torch.int16).to(torch.int32).unsqueeze(1)
    return torch.cat([bits & 0xFF, (bits >> 8) & 0xFF], dim=1)


def f32_const(v: float) -> torch.Tensor:
    """A 0-dim float32 tensor: how constants that divide (or get divided) enter a kernel."""
    return torch.tensor(float(np.float32(v)), dtype=torch.float32)


def round_clamped(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """torch.round(v) clamped to lo..hi (0-dim int32 tensors), as float32.

    The clamp runs on int32, where min and max compile to one instruction each (float
    min and max propagate NaN: four each). A NaN or out-of-range v converts to INT_MIN
    and comes out as lo: callers only use results where v is finite and below 2**22.
    (Python ints as bounds would make torch.compile break the graph here.)"""
    return torch.minimum(torch.maximum(torch.round(v).to(torch.int32), lo), hi).float()


# --------------------------------------------------------------------------------------
# make_qkx2_quants / make_qkx3_quants (kquant_search.make_qkx): one kernel per search step
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
    return seq_sum(terms, zero)


def _qkx_unsafe(isc, origin, mx, xmin):
    """Groups where some |isc*(x - origin)| may reach 2**22 (where torch.round differs from C)."""
    reach = torch.maximum((mx - origin).abs(), (xmin - origin).abs())
    return ~((isc.abs() * reach) < 4.0e6)


def _qkx_start(x, w, nmax, top, one, zero, use_mad: bool):
    """Min/max scan, weight sums, the first (plain nmax/(max-min)) scale and its error."""
    xs, ws = x.unbind(0), w.unbind(0)
    xmin = torch.amin(x, dim=0)
    mx = torch.amax(x, dim=0)
    mn = torch.where(xmin > 0, torch.zeros_like(xmin), xmin)
    sum_w = seq_sum(list(ws), None)
    sum_x = seq_sum([ws[i] * xs[i] for i in range(len(xs))], None)
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
    sum_l = seq_sum(wl, zero)
    sum_l2 = seq_sum([wl[i] * L[i] for i in range(len(xs))], zero)
    sum_xl = seq_sum([wl[i] * xs[i] for i in range(len(xs))], zero)
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


_qkx_start_c = compiled(_qkx_start)
_qkx_step_c = compiled(_qkx_step)
_qkx_finish_c = compiled(_qkx_finish)


def make_qkx(x, w, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool):
    """kquant_search.make_qkx's search, compiled: (scale, the_min, L float32 [n, G], unsafe [G]).

    ``unsafe`` flags groups where a code's argument may reach 2**22; the caller then
    redoes those with the exact eager path (never seen on real weights).
    """
    n, G = x.shape
    nm, one, zero = f32_const(nmax), f32_const(1.0), f32_const(0.0)
    top = torch.tensor(nmax, dtype=torch.int32)
    numerators = [
        f32_const(np.float32(rmin) + np.float32(rdelta) * np.float32(step) + np.float32(nmax))
        for step in range(nstep + 1)
    ]
    parts = []
    for a, b in slices(G, SLICE_GROUPS):
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
# make_qx_quants (rmse_type 1): all 19 trial scales in one kernel over [19, G]
# --------------------------------------------------------------------------------------


def first_abs_max(xs: "list[torch.Tensor]") -> torch.Tensor:
    """C's ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from 0: the signed max."""
    amax = torch.zeros_like(xs[0])
    mx = torch.zeros_like(xs[0])
    for v in xs:
        av = v.abs()
        gt = av > amax
        amax = torch.where(gt, av, amax)
        mx = torch.where(gt, v, mx)
    return mx


def _qx_search(x, w, num, lo, hi, nmax, eps, zero):
    """(scale [G], codes + nmax float32 [n, G]) of make_qx_quants over groups x [n, G].

    num [T] holds the numerators -(nmax + 0.1f*is) of the trials, trial 0 first (is = 0).
    """
    xs, ws = x.unbind(0), w.unbind(0)
    mx = first_abs_max(list(xs))
    iscale = num.unsqueeze(1) / mx.unsqueeze(0)  # [T, G]
    lx, l2 = [], []
    for i in range(len(xs)):
        l = round_clamped(iscale * xs[i], lo, hi)
        lx.append((ws[i] * xs[i]) * l)
        l2.append(ws[i] * l * l)
    sumlx, suml2 = seq_sum(lx, zero), seq_sum(l2, zero)  # [T, G]
    scale = torch.where(suml2[0] != 0, sumlx[0] / suml2[0], torch.zeros_like(mx))
    best = scale * sumlx[0]
    chosen = iscale[0]
    for k in range(1, num.shape[0]):
        take = (suml2[k] > 0) & (sumlx[k] * sumlx[k] > best * suml2[k])
        scale = torch.where(take, sumlx[k] / suml2[k], scale)
        best = torch.where(take, scale * sumlx[k], best)
        chosen = torch.where(take, iscale[k], chosen)
    dead = mx.abs() < eps
    L = round_clamped(chosen * x, lo, hi) + nmax
    L = torch.where(dead, torch.zeros_like(L), L)
    scale = torch.where(dead, torch.zeros_like(scale), scale)
    return scale, L


_qx_search_c = compiled(_qx_search)

QX_TRIALS = [0] + [k for k in range(-9, 10) if k != 0]


def make_qx(x: torch.Tensor, nmax: int, w: "torch.Tensor | None") -> "tuple[torch.Tensor, torch.Tensor]":
    """make_qx_quants(n, nmax, x, L, rmse_type=1, w) over groups x [n, G], compiled.

    w None means C's default weights x*x. Returns (scale [G], L float32 [n, G]) with
    L = code + nmax (0 for groups below GROUP_MAX_EPS).
    """
    n, G = x.shape
    num = torch.tensor(
        [-float(np.float32(nmax) + np.float32(0.1) * np.float32(k)) if k else float(-nmax) for k in QX_TRIALS],
        dtype=torch.float32,
    )
    lo, hi = torch.tensor(-nmax, dtype=torch.int32), torch.tensor(nmax - 1, dtype=torch.int32)
    nm, eps = f32_const(nmax), f32_const(1e-15)
    zero = f32_const(0.0)
    step = max(1, SLICE_GROUPS // 2)  # [19, G] sums: keep them cache-sized
    parts = []
    for a, b in slices(G, step):
        xs = x[:, a:b].contiguous()
        ws = xs * xs if w is None else w[:, a:b].contiguous()
        parts.append(_qx_search_c(xs, ws, num, lo, hi, nm, eps, zero))
    return tuple(torch.cat(p, dim=-1) for p in zip(*parts))


# --------------------------------------------------------------------------------------
# make_q3_quants (do_rmse): the refinement passes as rounds of independent tests
# --------------------------------------------------------------------------------------


def _q3_start(x, num, lo, hi, zero):
    """Signed max, codes from -nmax/max, and the weighted sums (w = x*x) of those codes."""
    xs = x.unbind(0)
    mx = first_abs_max(list(xs))
    iscale = num / mx
    L = [round_clamped(iscale * v, lo, hi) for v in xs]
    w = [v * v for v in xs]
    sumlx = seq_sum([(w[i] * xs[i]) * L[i] for i in range(len(xs))], zero)
    suml2 = seq_sum([w[i] * L[i] * L[i] for i in range(len(xs))], zero)
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
_q3_probe_c = compiled(_q3_start_and_probe, **_Q3_OPTIONS)
_q3_from_start_c = compiled(_q3_from_start, **_Q3_OPTIONS)
_q3_more_c = compiled(_q3_more, **_Q3_OPTIONS)


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
    num, zero = f32_const(-nmax), f32_const(0.0)
    lo, hi = torch.tensor(-nmax, dtype=torch.int32), torch.tensor(nmax - 1, dtype=torch.int32)
    mx, sumlx, suml2, first, unsafe = _q3_probe_c(x, num, lo, hi, zero)
    if bool(unsafe.any()):
        return mx, sumlx, suml2, False
    idx = (first < n).nonzero().squeeze(1)
    if idx.numel():
        idx = at_least_two(idx)
        S, bad = _q3_refine(positions_major(groups.index_select(0, idx), n), first.index_select(0, idx), num, lo, hi, zero)
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
        part = at_least_two(keep if part is None else part.index_select(0, keep))
        Sp, moved, unsafe = _q3_more_c(x.index_select(1, part), S.index_select(1, part), lo, hi)
        S.index_copy_(1, part, Sp)
    return S, True
