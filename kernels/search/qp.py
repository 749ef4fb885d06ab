"""make_qp_quants: positive codes 0..nmax for the K-quants' sub-block scales (imatrix paths).

Eager only: it runs on the [8 or 16, nb] scales and mins of the super-blocks, a small
fraction of the work.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.arith import GROUP_MAX_EPS, div, nearest_int, select, seq_sum


def make_qp_quants(x: torch.Tensor, nmax: int, qw: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """make_qp_quants across groups: x, qw float32 [n, G] -> (scale [G], L int64 [n, G]).

    C keeps L in uint8, so a negative code (possible only for a negative input scale)
    wraps to 256+l there; we mirror that with ``& 0xFF`` wherever L is stored.
    """
    n = x.shape[0]
    mx = x.amax(dim=0).clamp_min(0.0)
    zero = mx < GROUP_MAX_EPS
    iscale = div(float(nmax), mx)
    L0 = (nearest_int(iscale * x) & 0xFF).float()
    scale = div(1.0, iscale)
    d0 = x - scale * L0
    best_mse = seq_sum(qw * d0 * d0)
    best_iscale = iscale
    for is_ in (-4, -3, -2, -1, 1, 2, 3, 4):
        f = np.float32(0.1) * np.float32(is_) + np.float32(nmax)
        iscale_is = div(float(f), mx)
        scale_is = div(1.0, iscale_is)
        l = nearest_int(iscale_is * x).clamp_max(nmax).float()
        diff = x - scale_is * l
        mse = seq_sum(qw * diff * diff)
        better = mse < best_mse
        best_mse = select(better, mse, best_mse)
        best_iscale = select(better, iscale_is, best_iscale)
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
            L[i] = select(ok, torch.remainder(new_l, 256.0), L_i)
            sumlx = select(ok, slx, sumlx)
            suml2 = select(ok, sl2, suml2)
            changed |= ok
        # A pass without changes leaves the state as it was, so the next pass would
        # change nothing either: C's per-group early exit equals running on.
        if not bool(changed.any()):
            break
    scale = select(suml2 > 0, sumlx / suml2, 0.0)
    scale = select(zero, 0.0, scale)
    L = select(zero, 0.0, L)
    return scale, L.long()
