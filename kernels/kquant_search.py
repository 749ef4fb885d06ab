"""Scale searches shared by the K-quants (Q2_K .. Q5_K), vectorised across groups.

These mirror the helpers of llama.cpp's ggml-quants.c (make_qx_quants, make_q3_quants,
make_qkx2_quants, make_qkx3_quants, make_qp_quants) so that our codes and scales are
bit-identical to theirs.  The rules that make that possible:

* Every tensor is laid out position-major: ``x[i, g]`` is position ``i`` of group ``g``.
  A group is one run of weights that C handles in one call (16 or 32 weights, or the
  8/16 sub-block scales of a super-block).  Whole-tensor ops run across all groups at
  once; only the positions inside a group are walked in Python, because C sums them
  one after the other in float32 and a tree reduction would round differently.
* float32 everywhere, one rounding per C operator, in C's order of evaluation
  (``w*x*l`` is ``(w*x)*l``).  The reference library is built for plain x86-64 (SSE2,
  no FMA), so no fused multiply-adds: torch's separate mul/add kernels match it.
* C's ``nearest_int`` is round-half-to-even for |v| < 2**22.  Where the argument is
  bounded by the construction (``iscale*x`` with iscale derived from the group's max)
  we use ``torch.round``; where it is not (``x*sl2/slx`` in the iterative refinements,
  the final re-quantisation) we reproduce the magic-number trick bit for bit.
* Comparisons keep C's strictness, so the first best candidate wins ties.
* Search loops track the winning inverse scale per group instead of the codes; the
  codes are recomputed once at the end with the very same expression, which gives the
  same integers and saves a full-size select per step.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels import fused

GROUP_MAX_EPS = float(np.float32(1e-15))
_MAGIC = 12582912.0  # 1.5 * 2**23: adding it leaves the rounded integer in the low mantissa bits


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """C's nearest_int bit for bit, for any float32 input (int32 result).

    ``(v + 1.5*2**23)`` rounded to float32, then the low 23 mantissa bits minus 2**22.
    For |v| < 2**22 this is round-half-to-even; beyond it C returns wrapped garbage that
    the callers then clamp, and so do we.
    """
    t = v + _MAGIC
    return (t.view(torch.int32) & 0x007FFFFF) - 0x00400000


def const(v: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim float32 tensor on like's device.

    Dividing by (or into) a tensor rather than a Python number matters: ``c / t`` on a
    Python float becomes ``t.reciprocal() * c``, and CUDA turns ``t / c`` into
    ``t * (1/c)``; both round twice where C rounds once.
    """
    return torch.full((), v, dtype=torch.float32, device=like.device)


def rdiv(c: float, t: torch.Tensor) -> torch.Tensor:
    """``c / t`` with a single IEEE division, c a float32-representable number."""
    return torch.div(const(c, t), t)


def div(t: torch.Tensor, c: float) -> torch.Tensor:
    """``t / c`` with a single IEEE division, c a float32-representable number."""
    return torch.div(t, const(c, t))


def fp16_round(t: torch.Tensor) -> torch.Tensor:
    """GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(t)): round to nearest even fp16, back to float32."""
    return t.to(torch.float16).to(torch.float32)


def fp16_bytes(t: torch.Tensor) -> torch.Tensor:
    """float32 [G] -> uint8 [G, 2]: the little-endian fp16 (round to nearest even) of each value."""
    return t.to(torch.float16).contiguous().view(torch.uint8).reshape(t.shape[0], 2)


_BITS = {
    torch.float32: torch.int32,
    torch.int32: torch.int32,
    torch.float64: torch.int64,
    torch.int64: torch.int64,
    torch.uint8: torch.uint8,
}


def where(m: torch.Tensor, a: "torch.Tensor | float", b: "torch.Tensor | float") -> torch.Tensor:
    """where(m, a, b), bit for bit, built from bitwise ops.

    Why: on this CPU build torch.where (and masked_fill) runs some 10-40x slower than a
    multiply, and the searches select state for every group at every step.  Selecting
    through the integer view, ``b ^ ((a ^ b) & -m)``, moves exact bit patterns (NaN,
    -0.0 and inf included) at the speed of plain elementwise ops, on any device.
    a and b are tensors of one dtype, or one of them is the number 0.
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.dtype != b.dtype or a.dtype not in _BITS:
            return torch.where(m, a, b)
        it = _BITS[a.dtype]
        ai, bi = a.view(it), b.view(it)
        return (bi ^ ((ai ^ bi) & m.to(it).neg_())).view(a.dtype)
    if isinstance(a, torch.Tensor) and b == 0 and a.dtype in _BITS:
        it = _BITS[a.dtype]
        return (a.view(it) & m.to(it).neg_()).view(a.dtype)
    if isinstance(b, torch.Tensor) and a == 0 and b.dtype in _BITS:
        it = _BITS[b.dtype]
        return (b.view(it) & m.logical_not().to(it).neg_()).view(b.dtype)
    return torch.where(m, a, b)


def sqrtf(t: torch.Tensor) -> torch.Tensor:
    """C's sqrtf (correctly rounded).  torch.sqrt on CPU is not: its AVX-512 kernel is off by
    one ulp for about a fifth of float32 inputs.  sqrt in float64 rounded once to float32
    is exact (53 >= 2*24 + 2 bits), on every device."""
    return torch.sqrt(t.double()).float()


def round_bounded(v: torch.Tensor) -> torch.Tensor:
    """nearest_int for arguments known to stay well inside +-2**22, as float32 (faster)."""
    return torch.round(v)


def seq_sum(t: torch.Tensor, from_zero: bool = True) -> torch.Tensor:
    """Sum over dim 0 one position after the other, like C's ``for (...) s += t[i]``.

    ``from_zero`` mirrors ``float s = 0; s += t[0]`` (which turns -0.0 into +0.0);
    without it the sum starts from ``t[0]`` itself, as in ``float s = t[0];``.
    """
    acc = t[0] + 0.0 if from_zero else t[0].clone()
    for i in range(1, t.shape[0]):
        acc.add_(t[i])
    return acc


def first_absmax(x: torch.Tensor) -> torch.Tensor:
    """The signed value of largest magnitude per group, first one on ties, +0.0 if all zero.

    C: ``if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }`` from 0.  The
    largest and the smallest value decide it unless they are opposite (+a and -a):
    only then does "first" matter, and only those groups are scanned position by
    position (argmax is slow across dim 0 and does not promise the first index).
    """
    if x.dtype.is_floating_point and bool(torch.isnan(x).any()):
        x = where(torch.isnan(x), 0.0, x)  # NaN never passes `>`: it acts like a zero
    hi = x.amax(dim=0)
    lo = x.amin(dim=0)
    mx = where(hi > -lo, hi, lo)
    mx = where((hi == 0) & (lo == 0), 0.0, mx)  # all zeros: C keeps its +0.0
    tie = ((hi == -lo) & (hi != 0)).nonzero().squeeze(1)
    if tie.numel():
        mx[tie] = _first_absmax_scan(x.index_select(1, tie))
    return mx


def _first_absmax_scan(x: torch.Tensor) -> torch.Tensor:
    """first_absmax by a backwards scan over the positions (first position wins)."""
    ax = x.abs()
    amax = ax.amax(dim=0)
    mx = torch.zeros_like(amax)
    for i in reversed(range(x.shape[0])):
        mx = where(ax[i] == amax, x[i], mx)
    return where(amax > 0, mx, 0.0)


# --------------------------------------------------------------------------------------
# make_qkx2_quants / make_qkx3_quants: asymmetric (scale, min) search, codes 0..nmax
# --------------------------------------------------------------------------------------


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
        scale, the_min, L, suspicious = fused.make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad)
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
    mn = where(xmin > 0, 0.0, xmin)  # if (min > 0) min = 0
    sum_w = seq_sum(w, from_zero=False)
    sum_x = seq_sum(torch.mul(w, x, out=buf), from_zero=False)
    degenerate = mx == mn

    def unsafe(isc: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """Groups where some |isc*(x - origin)| may reach 2**22 (or is NaN)."""
        reach = torch.maximum((mx - origin).abs(), (xmin - origin).abs())
        return ~((isc.abs() * reach) < _SAFE_CODE)

    # C updates `min` whenever a step wins and later steps measure from the new min,
    # so the (iscale, min) pair behind the winning codes is what we remember.
    iscale = rdiv(fmax, mx - mn)
    scale = rdiv(1.0, iscale)
    L = codes(mn, iscale, torch.empty_like(x))
    suspicious = unsafe(iscale, mn)
    best_err = error(scale, mn, L)
    best_iscale, best_origin, cur_min = iscale, mn, mn
    if nstep >= 1:
        laux = L  # reuse: L is recomputed from the winner at the end
        wl, wl2, wlx = terms[:, 0], terms[:, 1], terms[:, 2]
        for step in range(nstep + 1):
            f = np.float32(rmin) + np.float32(rdelta) * np.float32(step)
            cand_iscale = rdiv(float(f + np.float32(nmax)), mx - cur_min)
            suspicious |= unsafe(cand_iscale, cur_min)
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
            this_min = where(pos, 0.0, this_min)
            this_scale = where(pos, sum_xl / sum_l2, this_scale)
            cur_err = error(this_scale, this_min, laux)
            better = (D > 0) & (cur_err < best_err)
            # one select over the stacked state instead of five: [G] ops cost mostly overhead
            state = where(
                better,
                torch.stack([cur_err, this_scale, cand_iscale, cur_min, this_min]),
                torch.stack([best_err, scale, best_iscale, best_origin, cur_min]),
            )
            best_err, scale, best_iscale, best_origin, cur_min = state.unbind(0)
        L = codes(best_origin, best_iscale, laux)
    zero = torch.zeros_like(scale)
    L = where(degenerate, 0.0, L)
    scale = where(degenerate, zero, scale)
    the_min = -where(degenerate, mn, cur_min)
    return scale, the_min, L, suspicious & ~degenerate


# --------------------------------------------------------------------------------------
# make_qp_quants: positive codes 0..nmax for the sub-block scales (imatrix paths)
# --------------------------------------------------------------------------------------


def make_qp_quants(x: torch.Tensor, nmax: int, qw: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """make_qp_quants across groups: x, qw float32 [n, G] -> (scale [G], L int64 [n, G]).

    C keeps L in uint8, so a negative code (possible only for a negative input scale)
    wraps to 256+l there; we mirror that with ``& 0xFF`` wherever L is stored.
    """
    n = x.shape[0]
    mx = x.amax(dim=0).clamp_min(0.0)
    zero = mx < GROUP_MAX_EPS
    iscale = rdiv(float(nmax), mx)
    L0 = (nearest_int(iscale * x) & 0xFF).float()
    scale = rdiv(1.0, iscale)
    d0 = x - scale * L0
    best_mse = seq_sum(qw * d0 * d0)
    best_iscale = iscale
    for is_ in (-4, -3, -2, -1, 1, 2, 3, 4):
        f = np.float32(0.1) * np.float32(is_) + np.float32(nmax)
        iscale_is = rdiv(float(f), mx)
        scale_is = rdiv(1.0, iscale_is)
        l = nearest_int(iscale_is * x).clamp_max(nmax).float()
        diff = x - scale_is * l
        mse = seq_sum(qw * diff * diff)
        better = mse < best_mse
        best_mse = where(better, mse, best_mse)
        best_iscale = where(better, iscale_is, best_iscale)
    l = nearest_int(best_iscale * x).clamp_max(nmax)
    lf = l.float()
    wx = qw * x
    sumlx = seq_sum(wx * lf)
    suml2 = seq_sum(qw * lf * lf)
    L = (l & 0xFF).float()  # what C's uint8 L holds
    for _ in range(5):
        changed = torch.zeros_like(zero)
        for i in range(n):
            w_i, x_i, L_i = qw[i], x[i], L[i]
            slx = sumlx - wx[i] * L_i
            sl2 = suml2 - w_i * L_i * L_i
            ok = (slx > 0) & (sl2 > 0)
            new_l = nearest_int(x_i * sl2 / slx).clamp_max(nmax).float()
            ok &= new_l != L_i
            slx = slx + wx[i] * new_l
            sl2 = sl2 + w_i * new_l * new_l
            ok &= slx * slx * suml2 > sumlx * sumlx * sl2
            L[i] = where(ok, torch.remainder(new_l, 256.0), L_i)
            sumlx = where(ok, slx, sumlx)
            suml2 = where(ok, sl2, suml2)
            changed |= ok
        # A pass without changes leaves the state as it was, so the next pass would
        # change nothing either: C's per-group early exit equals running on.
        if not bool(changed.any()):
            break
    scale = where(suml2 > 0, sumlx / suml2, 0.0)
    scale = where(zero, 0.0, scale)
    L = where(zero, 0.0, L)
    return scale, L.long()


# --------------------------------------------------------------------------------------
# make_qx_quants (rmse_type 1, explicit weights): symmetric codes -nmax..nmax-1
# --------------------------------------------------------------------------------------


def make_qx_quants(x: torch.Tensor, nmax: int, qw: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw) across groups.

    x, qw: float32 [n, G] -> (scale [G], L float32 [n, G] holding l + nmax, or 0 for
    an all-zero group as in C).
    """
    if fused.use(x):
        return fused.make_qx(x, nmax, qw)
    mx = first_absmax(x)
    zero = mx.abs() < GROUP_MAX_EPS
    iscale = rdiv(float(-nmax), mx)
    wx = qw * x

    def codes(isc: torch.Tensor) -> torch.Tensor:
        return round_bounded(isc * x).clamp_(float(-nmax), float(nmax - 1))

    def sums(l: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        return seq_sum(wx * l), seq_sum(qw * l * l)

    sumlx, suml2 = sums(codes(iscale))
    scale = where(suml2 != 0, sumlx / suml2, 0.0)
    best = scale * sumlx
    best_iscale = iscale
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        f = np.float32(nmax) + np.float32(0.1) * np.float32(is_)
        cand = rdiv(float(-f), mx)
        sumlx, suml2 = sums(codes(cand))
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        scale = where(better, sumlx / suml2, scale)
        best = where(better, scale * sumlx, best)
        best_iscale = where(better, cand, best_iscale)
    L = codes(best_iscale) + float(nmax)
    L = where(zero, 0.0, L)
    scale = where(zero, 0.0, scale)
    return scale, L


# --------------------------------------------------------------------------------------
# make_q3_quants (do_rmse): Q3_K's reference search with coordinate-descent refinement
# --------------------------------------------------------------------------------------


def make_q3_quants(x: torch.Tensor, nmax: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """make_q3_quants(n, nmax, x, L, do_rmse=true) across groups.

    x: float32 [n, G] -> (scale [G], L float32 [n, G] holding l + nmax, or 0 for an
    all-zero group).  The refinement visits positions in order and each accepted change
    moves the running sums, so it stays a loop over positions (and passes); groups that
    stopped changing are dropped from later passes, which C's early exit makes exact.
    """
    mx = first_absmax(x)
    zero = mx.abs() < GROUP_MAX_EPS
    iscale = rdiv(float(-nmax), mx)
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
    scale = where(suml2 > 0, sumlx / suml2, 0.0)
    L = where(zero, 0.0, L)
    scale = where(zero, 0.0, scale)
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
# Pieces shared by the super-block codecs
# --------------------------------------------------------------------------------------


def imatrix_per_block(imatrix: torch.Tensor, rows: int, block: int = 256) -> torch.Tensor:
    """imatrix [n] -> [rows * n/block, block]: the importance of every weight of every block.

    C indexes ``quant_weights + QK_K*i`` with i the block inside the row, so the same
    vector applies to every row.
    """
    n = imatrix.shape[0]
    return imatrix.view(1, n).expand(rows, n).reshape(-1, block)


def superblock_sum_x2(xb: torch.Tensor) -> torch.Tensor:
    """``for (j < QK_K) sumx2 += x[j]*x[j]`` for every super-block of xb [nb, 256] -> [nb]."""
    xs = xb.t()
    return seq_sum(xs * xs)


def imatrix_weights(xb: torch.Tensor, qw: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """``qw[i] * sqrtf(sigma2 + x[i]*x[i])`` for xb, qw [nb, 256] and sigma2 [nb]."""
    return qw * sqrtf(sigma2[:, None] + xb * xb)


# 2-bit code layout shared by Q2_K and Q3_K (their qs[64]): two chunks of 32 bytes, each
# covering 128 weights; byte l of chunk c holds weights 128c + l + 32k in bits 2k..2k+1:
#
#   qs[32c + l] = L[128c + l] | L[128c + 32 + l] << 2 | L[128c + 64 + l] << 4 | L[128c + 96 + l] << 6


def pack_2bit(L: torch.Tensor) -> torch.Tensor:
    """L uint8 [nb, 256] (0..3) -> uint8 [nb, 64]."""
    L = L.reshape(-1, 2, 4, 32)
    b = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return b.reshape(-1, 64)


def unpack_2bit(qs: torch.Tensor) -> torch.Tensor:
    """uint8 [nb, 64] -> int64 [nb, 256] (0..3)."""
    shifts = torch.tensor([0, 2, 4, 6], device=qs.device).view(1, 1, 4, 1)
    return ((qs.long().view(-1, 2, 1, 32) >> shifts) & 3).reshape(-1, 256)


def bit_planes(bits: torch.Tensor) -> torch.Tensor:
    """uint8 0/1 [nb, 8, k] -> uint8 [nb, k]: bit p of byte l = bits[:, p, l]."""
    out = bits[:, 0].clone()
    for p in range(1, bits.shape[1]):
        out |= bits[:, p] << p
    return out


def codes_to_blocks(Lt: torch.Tensor, nb: int) -> torch.Tensor:
    """Position-major codes [n, nb*256/n] (small non-negative ints) -> uint8 [nb, 256]."""
    return Lt.to(torch.uint8).t().reshape(nb, 256)
