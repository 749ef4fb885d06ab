"""make_qx_quants (rmse_type 1): symmetric codes -nmax..nmax-1 from 19 trial scales.

Used by Q6_K, Q3_K's imatrix path (on the sub-blocks and on their scales) and the
imatrix paths of Q4_0/Q5_0. make_qx_quants runs the compiled twin (kernels.fused) on
CPU, the eager search otherwise.
"""
from __future__ import annotations

import torch

from kernels import fused
from kernels.arith import (
    GROUP_MAX_EPS, f32, f32_tensor, first_abs_max, first_abs_max_traced, round_clamped, select, seq_sum_traced,
)
from kernels.blocks import Workspace

# C folds ``nmax + 0.1f*is`` in float32 for is = -9..9; is = 0, the plain -nmax/max trial, comes first.
TRIALS = [0] + [k for k in range(-9, 10) if k != 0]


def _numerators(nmax: int) -> "list[float]":
    """-(nmax + 0.1f*is) for each trial, folded in float32 as C does: iscale = numerator / max."""
    return [-f32(nmax + f32(f32(0.1) * k)) if k else float(-nmax) for k in TRIALS]


def make_qx_quants(
    x: torch.Tensor, nmax: int, weights: "torch.Tensor | None" = None, ws: "Workspace | None" = None
) -> "tuple[torch.Tensor, torch.Tensor]":
    """ggml's ``make_qx_quants(n, nmax, x, L, rmse_type=1, qw)`` for many groups at once.

    x: float32 position-major [n, G]; weights: same shape, or None for C's
    default ``w = x*x``. Returns (scale [G], L uint8 [n, G]) with L in
    0..2*nmax-1. Groups whose largest magnitude is below GROUP_MAX_EPS get
    scale 0 and L 0, as in C.

    All 19 trial scales are evaluated together ([n, 19, G] tensors, sums still
    sequential over the n positions); then C's sequential accept rule
    (``suml2 > 0 && sumlx*sumlx > best*suml2``, first best wins) runs over
    the trials on [G] vectors. The accepted trial's codes are gathered at the end,
    which equals C recomputing L on every acceptance.
    """
    if fused.use(x):
        scale, L = _make_qx_compiled(x, nmax, weights)
        return scale, L.to(torch.uint8)
    n, G = x.shape
    T = len(TRIALS)
    ws = ws or Workspace(x.device)
    amax, mx = first_abs_max(x, 0)
    live = amax >= GROUP_MAX_EPS
    mx = select(live, mx, torch.ones_like(mx))
    # w and w*x side by side, [n, 2, 1, G], so one multiply per position gives both terms
    wwx = ws.get("qx_wwx", (n, 2, 1, G))
    if weights is None:
        torch.mul(x, x, out=wwx[:, 1, 0])
    else:
        wwx[:, 1, 0].copy_(weights)
    torch.mul(wwx[:, 1, 0], x, out=wwx[:, 0, 0])

    # iscale_k = -(nmax + 0.1f*k) / max
    num = torch.tensor(_numerators(nmax), dtype=torch.float32, device=x.device)
    iscale = torch.div(num.unsqueeze(1).expand(T, G), mx.unsqueeze(0).expand(T, G))  # [T, G]

    # Per position: the codes of all trials ([T, G], cache-sized), then w*x[i]*l and
    # w*l*l added straight into the running sums, in C's order; no [n, T, G] tensors.
    L = ws.get("qx_l", (T, G))
    terms = ws.get("qx_terms", (2, T, G))
    sums = ws.get("qx_sums", (2, T, G))  # [sumlx, suml2]
    for i in range(n):
        torch.mul(x[i], iscale, out=L)
        L.round_().clamp_(-nmax, nmax - 1)  # nearest_int: |iscale*x| <= nmax + 1
        torch.mul(wwx[i], L, out=terms)  # (w*x[i])*l, w*l
        terms[1].mul_(L)  # (w*l)*l
        if i == 0:
            torch.add(terms, 0.0, out=sums)  # float s = 0; s += t: -0.0 becomes +0.0
        else:
            sums.add_(terms)
    sumlx, suml2 = sums[0], sums[1]

    ratio = torch.div(sumlx, suml2)  # scale of each trial where suml2 != 0
    prod = ratio * sumlx  # its best = scale*sumlx
    # sumlx*sumlx, or -inf where suml2 > 0 fails, so one compare tests both conditions
    sq = select(suml2 > 0, sumlx * sumlx, torch.full_like(sumlx, float("-inf")))
    # trial 0: scale = suml2 ? sumlx/suml2 : 0
    nz0 = suml2[0] != 0
    best = select(nz0, prod[0], torch.zeros_like(prod[0]) * sumlx[0])
    pick = torch.zeros(G, dtype=torch.int64, device=x.device)
    for k in range(1, T):
        take = sq[k] > best * suml2[k]
        best = select(take, prod[k], best)
        pick = torch.maximum(pick, take * k)  # accepted trials only ever move forward
    scale = ratio.gather(0, pick.unsqueeze(0)).squeeze(0)
    scale = select((pick == 0) & ~nz0, torch.zeros_like(scale), scale)
    scale = select(live, scale, torch.zeros_like(scale))

    chosen = iscale.gather(0, pick.unsqueeze(0))  # [1, G]: the accepted trial's iscale
    codes = torch.round(x * chosen).clamp_(-nmax, nmax - 1).add_(nmax)
    codes = select(live.unsqueeze(0), codes, torch.zeros_like(codes))
    return scale, codes.to(torch.uint8)


# --------------------------------------------------------------------------------------
# The compiled twin: all 19 trial scales in one kernel over [19, G]
# --------------------------------------------------------------------------------------


def _qx_search(x, w, num, lo, hi, nmax, eps, zero):
    """(scale [G], codes + nmax float32 [n, G]) of make_qx_quants over groups x [n, G].

    num [T] holds the numerators -(nmax + 0.1f*is) of the trials, trial 0 first (is = 0).
    """
    xs, ws = x.unbind(0), w.unbind(0)
    mx = first_abs_max_traced(list(xs))
    iscale = num.unsqueeze(1) / mx.unsqueeze(0)  # [T, G]
    lx, l2 = [], []
    for i in range(len(xs)):
        l = round_clamped(iscale * xs[i], lo, hi)
        lx.append((ws[i] * xs[i]) * l)
        l2.append(ws[i] * l * l)
    sumlx, suml2 = seq_sum_traced(lx, zero), seq_sum_traced(l2, zero)  # [T, G]
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


_qx_search_c = fused.compiled(_qx_search)


def _make_qx_compiled(x: torch.Tensor, nmax: int, w: "torch.Tensor | None") -> "tuple[torch.Tensor, torch.Tensor]":
    """make_qx_quants(n, nmax, x, L, rmse_type=1, w) over groups x [n, G], compiled.

    w None means C's default weights x*x. Returns (scale [G], L float32 [n, G]) with
    L = code + nmax (0 for groups below GROUP_MAX_EPS).
    """
    n, G = x.shape
    num = torch.tensor(_numerators(nmax), dtype=torch.float32)
    lo, hi = torch.tensor(-nmax, dtype=torch.int32), torch.tensor(nmax - 1, dtype=torch.int32)
    nm, eps = f32_tensor(nmax), f32_tensor(GROUP_MAX_EPS)
    zero = f32_tensor(0.0)
    step = max(1, fused.SLICE_GROUPS // 2)  # [19, G] sums: keep them cache-sized
    parts = []
    for a, b in fused.slices(G, step):
        xs = x[:, a:b].contiguous()
        ws = xs * xs if w is None else w[:, a:b].contiguous()
        parts.append(_qx_search_c(xs, ws, num, lo, hi, nm, eps, zero))
    return tuple(torch.cat(p, dim=-1) for p in zip(*parts))
