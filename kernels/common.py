"""Shared float32 building blocks that reproduce ggml-quants.c bit for bit.

Every helper here is an exact mirror of one C idiom, with C's rounding and
order of operations, and runs unchanged on CPU and CUDA tensors (eager ops
only, so nothing gets fused into a multiply-add; the compiled CPU forms of the
searches live in kernels.fused, under the rules listed there).

Layout convention used by the codecs: a chunk of rows is viewed as blocks and
*transposed* to ``[positions_in_block, n_blocks]`` ("position-major"). A loop
over the 16 or 32 positions of a block then touches one contiguous vector of
all blocks per step, which is how sequential in-block sums stay in C's order
while every op still works on the whole chunk.

Only append to this module: another codec author relies on the existing names.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from kernels import fused

Number = Union[int, float]
TensorOrNumber = Union[torch.Tensor, Number]

# ggml-quants.c: blocks whose largest magnitude is below this are all-zero.
GROUP_MAX_EPS = 1e-15

# 1.5 * 2**23: adding it to |v| < 2**22 leaves round-half-even(v) in the low mantissa bits.
_NEAREST_INT_MAGIC = 12582912.0


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, a, b)`` (broadcasting, bit-exact: signed zeros, NaN payloads kept).

    Why not torch.where: on CPU (torch 2.13, AVX512 build) it runs ~10x slower
    than a multiply, and it sits in every hot loop here. Blending the raw bits
    with integer ops, ``b ^ ((a ^ b) & -mask)``, costs about three integer passes.
    """
    mask, a, b = torch.broadcast_tensors(mask, a, b)
    it = _INT_OF_SIZE[a.element_size()]
    ai, bi = a.view(it), b.view(it)
    m = mask.to(it).neg_()
    return ((ai ^ bi).bitwise_and_(m).bitwise_xor_(bi)).view(a.dtype)


def f32(x: Number) -> float:
    """The float32 value of a Python number, as a Python float (exactly representable).

    Use it to mirror C float constants and constant-folded float expressions
    such as ``0.1f*is``: compute them with torch float32 scalars, then pass the
    result on as an exact Python float.
    """
    return float(torch.tensor(x, dtype=torch.float32))


def div(a: TensorOrNumber, b: TensorOrNumber) -> torch.Tensor:
    """IEEE float32 a / b, correctly rounded, on any device.

    Why not ``a / b``: torch computes ``number / tensor`` as
    ``tensor.reciprocal() * number``, and on CUDA ``tensor / number`` as
    ``tensor * (1 / number)``; both differ from C's division in the last bit.
    Turning numbers into tensors on the operand's device takes the true-division
    kernel on both CPU and CUDA.
    """
    if not isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        a = torch.full_like(b, a)
    if not isinstance(b, torch.Tensor):
        b = torch.tensor(b, dtype=torch.float32, device=a.device)
    return torch.div(a, b)


def reciprocal_or_zero(d: torch.Tensor) -> torch.Tensor:
    """C's ``d ? 1.0f/d : 0.0f`` (a true division: 1/d, never rsqrt tricks)."""
    inv = div(1.0, d)
    return select(d != 0, inv, torch.zeros_like(d))


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 sqrtf, as C's sqrtf (the sqrtss instruction) gives.

    torch.sqrt on CPU float32 is *not* correctly rounded (about 1 result in 6
    is off by one ulp, vectorised path). Taking the square root in float64 and
    rounding once to float32 is exact: 53 >= 2*24 + 2 bits makes the double
    rounding harmless for sqrt. Same result on CUDA.
    """
    return torch.sqrt(x.to(torch.float64)).to(torch.float32)


def fp16_round(x: torch.Tensor) -> torch.Tensor:
    """GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x)): float32 -> nearest-even fp16 -> float32."""
    return x.to(torch.float16).to(torch.float32)


def fp16_bytes(x: torch.Tensor) -> torch.Tensor:
    """float32 [...] -> uint8 [..., 2]: the little-endian fp16 (round to nearest even) of each value."""
    h = x.to(torch.float16).contiguous()
    return h.view(torch.uint8).reshape(*x.shape, 2)


def fp16_from_bytes(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2] little-endian fp16 -> float32 [...] (exact)."""
    return b.contiguous().view(torch.float16).squeeze(-1).to(torch.float32)


def nearest_int(v: torch.Tensor, nan_ok: bool = False) -> torch.Tensor:
    """ggml's ``nearest_int(float)``: int32, round half to even for |v| <= 4194303.

    Mirrors the C bit trick itself (add 12582912.f, keep the low 23 bits), so
    out-of-range inputs give the same garbage C would (its assert is compiled out).
    """
    bits = (v + _NEAREST_INT_MAGIC).view(torch.int32)
    out = (bits & 0x007FFFFF) - 0x00400000
    if nan_ok:  # caller discards results computed from NaN
        return out
    # NaN: x86 produces the default NaN 0xFFC00000, whose low bits give 0; CUDA's
    # canonical NaN has other bits, so pin the x86 answer on every device.
    return select(torch.isnan(v), torch.zeros_like(out), out)


def nearest_int_f(v: torch.Tensor) -> torch.Tensor:
    """nearest_int as a float32 tensor, for inputs known to satisfy |v| < 2**22.

    Cheaper than ``nearest_int(v).float()``: rounding half to even is exactly what
    torch.round does, and the integer result is exactly representable.
    """
    return torch.round(v)


def roundf_small(v: torch.Tensor) -> torch.Tensor:
    """C's roundf (half away from zero) for |v| < 2**31, as int32 [same shape].

    ``t = (int)v`` truncates; ``v - t`` is then exact and in (-1, 1), and twice
    it truncates to -1, 0 or 1 exactly when the fraction reaches -0.5 or 0.5.
    Only conversions and arithmetic: torch.trunc/where are slow on CPU.
    """
    t = v.to(torch.int32)
    frac2 = (v - t.to(v.dtype)).mul_(2.0)
    return t.add_(frac2.to(torch.int32))


def roundf(v: torch.Tensor) -> torch.Tensor:
    """C's roundf: round half away from zero (torch.round rounds half to even), float32 out.

    Values of magnitude 2**23 and above are integers already and pass through.
    """
    big = v.abs() >= 8388608.0
    small = select(big, torch.zeros_like(v), v)
    return select(big, v, roundf_small(small).to(v.dtype))


def seq_sum(terms: torch.Tensor, start: "torch.Tensor | None" = None, out: "torch.Tensor | None" = None) -> torch.Tensor:
    """Sum ``terms[0], terms[1], ...`` one after another in float32, as a C loop does.

    ``terms`` is position-major ``[n, ...]``. The accumulator starts at +0.0
    (``float s = 0``), or at ``start`` when C seeds it with something else.
    Reductions like torch.sum reorder additions, which changes the rounding.
    ``out``, if given, receives the result (a reusable buffer).
    """
    if start is None:
        # 0.0f + t0 is t0 except that -0.0 becomes +0.0: t0 + 0.0 does the same
        acc = torch.add(terms[0], 0.0, out=out)
        first = 1
    else:
        acc = out.copy_(start) if out is not None else start.clone()
        first = 0
    for i in range(first, terms.shape[0]):
        acc.add_(terms[i])
    return acc


def first_index(mask: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Index of the first True along ``dim`` (``mask.shape[dim]`` where none is).

    Written with amin over an index tensor rather than argmax so that "first"
    is guaranteed on every device.
    """
    n = mask.shape[dim]
    shape = [1] * mask.dim()
    shape[dim] = n
    idx = torch.arange(n, device=mask.device, dtype=torch.int32).view(shape)
    big = torch.tensor(n, device=mask.device, dtype=torch.int32)
    return select(mask, idx, big).amin(dim=dim)


def first_abs_max(x: torch.Tensor, dim: int = 0) -> "tuple[torch.Tensor, torch.Tensor]":
    """C's ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from amax = max = 0.

    Returns (amax, max): the largest magnitude and the *first* value having it.
    When every value is a zero, max stays the C initialiser +0.0 (never -0.0).
    """
    ax = x.abs()
    ax = select(torch.isnan(ax), torch.zeros_like(ax), ax)  # NaN > amax is false in C
    amax = ax.amax(dim=dim)
    i = first_index(ax == amax.unsqueeze(dim), dim).clamp_max(x.shape[dim] - 1)
    mx = torch.gather(x, dim, i.unsqueeze(dim).long()).squeeze(dim)
    mx = select(amax > 0, mx, torch.zeros_like(mx))
    return amax, mx


def first_min_max(x: torch.Tensor, dim: int = 0) -> "tuple[torch.Tensor, torch.Tensor]":
    """(min, max) as C's strict-comparison scan finds them, signed zeros included.

    A scan with ``if (v < min) min = v`` (from FLT_MAX or from x[0]) keeps the
    first of equal values, which only shows when the extreme is zero: then the
    result is the first zero element, +0.0 or -0.0. amin/amax do not promise
    which zero they return, so that case is patched explicitly.
    """
    mn = x.amin(dim=dim)
    mx = x.amax(dim=dim)
    zero = x == 0
    if bool(zero.any()):
        i = first_index(zero, dim).clamp_max(x.shape[dim] - 1)
        z = torch.gather(x, dim, i.unsqueeze(dim).long()).squeeze(dim)
        mn = select(mn == 0, z, mn)
        mx = select(mx == 0, z, mx)
    return mn, mx


def positions_major(x: torch.Tensor, block: int) -> torch.Tensor:
    """float [rows, n] -> contiguous [block, rows * n // block]: column b holds block b."""
    return x.reshape(-1, block).t().contiguous()


def row_sum_squares(x: torch.Tensor) -> torch.Tensor:
    """Per row, ``float s = 0; for j: s += x[j]*x[j];`` in C's order -> float32 [rows].

    Used by the imatrix paths for sigma2. The loop runs over the row length on
    vectors of all rows, so its cost is n_per_row small ops per chunk.
    """
    sq = (x * x).t().contiguous()
    return seq_sum(sq)


def pack_nibbles(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """uint8 ``(lo & 0xF) | (hi & 0xF) << 4`` elementwise."""
    return (lo & 0x0F) | ((hi & 0x0F) << 4)


def bits_to_bytes_le(bits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pack 0/1 uint8 tensors ``bits[k]`` ([...] each, k = bit number) into bytes [..., len(bits)//8].

    Bit k lands in byte k // 8 at position k % 8, i.e. a little-endian integer of
    len(bits) bits, as ``memcpy(&y.qh, &qh, sizeof qh)`` stores a uint32 on x86/ARM.
    """
    out = []
    for byte in range(len(bits) // 8):
        acc = bits[8 * byte].clone()
        for k in range(1, 8):
            acc |= bits[8 * byte + k] << k
        out.append(acc)
    return torch.stack(out, dim=-1)


class Workspace:
    """Named scratch buffers reused across the slices of one quantize call.

    Fresh multi-megabyte CPU tensors come from mmap and are page-faulted on
    first touch, which costs more than the arithmetic done in them; hot loops
    write their temporaries into these buffers instead (``out=`` / in-place).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._bufs: dict = {}

    def get(self, name: str, shape: "tuple[int, ...]", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        buf = self._bufs.get((name, dtype))
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=self.device)
            self._bufs[(name, dtype)] = buf
        return buf[:numel].view(shape)


# C folds ``nmax + 0.1f*is`` in float32 for is = -9..9 (is = 0 is the plain -nmax/max trial).
_QX_STEPS = [0] + [k for k in range(-9, 10) if k != 0]


def _first_abs_max_finite(x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """first_abs_max(x, 0) for finite x [n, G], from amax/amin.

    The largest and smallest value decide the signed max unless they are opposite
    (+a and -a): only then does "first" matter, and only those groups are scanned.
    """
    hi = x.amax(dim=0)
    lo = x.amin(dim=0)
    nlo = lo.neg()
    amax = torch.maximum(hi, nlo)
    mx = select(hi > nlo, hi, lo)
    mx = select(amax > 0, mx, torch.zeros_like(mx))  # all zeros: C keeps its +0.0
    tie = (hi == nlo) & (hi != 0)
    if bool(tie.any()):
        idx = tie.nonzero().squeeze(1)
        mx.index_copy_(0, idx, first_abs_max(x.index_select(1, idx), 0)[1])
    return amax, mx


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
        scale, L = fused.make_qx(x, nmax, weights)
        return scale, L.to(torch.uint8)
    n, G = x.shape
    T = len(_QX_STEPS)
    ws = ws or Workspace(x.device)
    amax, mx = _first_abs_max_finite(x)
    live = amax >= f32(GROUP_MAX_EPS)
    mx = select(live, mx, torch.ones_like(mx))
    # w and w*x side by side, [n, 2, 1, G], so one multiply per position gives both terms
    wwx = ws.get("qx_wwx", (n, 2, 1, G))
    if weights is None:
        torch.mul(x, x, out=wwx[:, 1, 0])
    else:
        wwx[:, 1, 0].copy_(weights)
    torch.mul(wwx[:, 1, 0], x, out=wwx[:, 0, 0])

    # iscale_k = -(nmax + 0.1f*k) / max, numerators folded in float32 as C does
    num = torch.tensor([-f32(nmax + f32(f32(0.1) * k)) if k else float(-nmax) for k in _QX_STEPS],
                       dtype=torch.float32, device=x.device)
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


def make_qkx3_quants(
    x: torch.Tensor,
    nmax: int,
    weights: "torch.Tensor | None",
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool = False,
) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """ggml's ``make_qkx3_quants`` for many groups at once (affine: x ~= scale*L - the_min).

    x, weights: float32 position-major [n, n_groups] (weights None: w = x*x).
    rmin, rdelta: float32 values (use f32()). Returns (scale, the_min, L uint8 [n, n_groups]).
    The trial loop is sequential per group: an accepted trial moves ``min``,
    which the next trials' rounding uses, exactly as in C.
    """
    n, nb = x.shape
    w = x * x if weights is None else weights
    wx = w * x
    mn, mx = first_min_max(x, 0)
    sum_w = seq_sum(w[1:], start=w[0])
    sum_x = seq_sum(wx[1:], start=wx[0])
    mn = select(mn > 0, torch.zeros_like(mn), mn)
    dead = mx <= mn
    span = select(dead, torch.ones_like(mx), mx - mn)

    def err(scale_: torch.Tensor, min_: torch.Tensor, L_: torch.Tensor) -> torch.Tensor:
        diff = scale_ * L_ + min_ - x
        diff = diff.abs() if use_mad else diff * diff
        return seq_sum(w * diff)

    iscale = div(float(nmax), span)
    scale = div(1.0, iscale)
    L = nearest_int(iscale * (x - mn)).clamp_(0, nmax).to(torch.float32)
    best_mad = err(scale, mn, L)
    if nstep >= 1:
        for step in range(nstep + 1):
            # C: iscale = (rmin + rdelta*is + nmax)/(max - min), with the current min
            iscale = div(f32(f32(rmin + f32(rdelta * step)) + nmax), mx - mn)
            l = nearest_int(iscale * (x - mn)).clamp_(0, nmax).to(torch.float32)
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
