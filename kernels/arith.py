"""C's float32 arithmetic in PyTorch, bit for bit: the one library of helpers every codec uses.

Each helper mirrors one idiom of ggml-quants.c with C's rounding and order of
operations (the reference library is plain x86-64: SSE2, no fused multiply-adds).
Tensors are position-major where a helper walks positions (``x[i, g]`` is position
``i`` of group ``g``, see kernels.blocks.positions_major).

Two forms exist where eager PyTorch and torch.compile need different code for the
same C idiom; the second carries the suffix ``_traced`` and is the one to call
inside a function that kernels.fused compiles (HACKING.md lists Inductor's rules):

* ``seq_sum`` adds in place into one buffer (fast eagerly); ``seq_sum_traced`` chains
  out-of-place adds over a list and starts from a run-time zero tensor, because
  Inductor folds a literal ``+ 0.0`` away.
* ``first_abs_max`` reduces with amax/amin and scans only ties (fast eagerly);
  ``first_abs_max_traced`` is C's running scan, which Inductor fuses into one loop.
* ``select`` blends raw bits (torch.where is slow on CPU eagerly); traced code uses
  torch.where, which Inductor compiles well, while bit casts compile to scalar loops.

This module imports nothing from kernels.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

Number = Union[int, float]
TensorOrNumber = Union[torch.Tensor, Number]

# ggml-quants.c: groups whose largest magnitude is below this are all-zero (a float32 value).
GROUP_MAX_EPS = float(np.float32(1e-15))

# 1.5 * 2**23: adding it to |v| < 2**22 leaves round-half-even(v) in the low mantissa bits.
NEAREST_INT_MAGIC = 12582912.0

# --------------------------------------------------------------------------------------
# Constants and division
# --------------------------------------------------------------------------------------


def f32(x: Number) -> float:
    """The float32 value of a Python number, as a Python float (exactly representable).

    Use it to mirror C float constants and constant-folded float expressions
    such as ``0.1f*is``: compute them in float32, then pass the result on as an
    exact Python float.
    """
    return float(np.float32(x))


def f32_tensor(v: Number, like: "torch.Tensor | None" = None) -> torch.Tensor:
    """A 0-dim float32 tensor holding v (rounded to float32), on like's device (CPU without).

    How a number enters a division: ``c / t`` with a Python c becomes
    ``t.reciprocal() * c``, CUDA turns ``t / c`` into ``t * (1/c)``, and Inductor
    turns a division by a constant into a multiply; all round twice where C rounds
    once. A run-time tensor takes the true division everywhere.
    """
    return torch.full((), float(v), dtype=torch.float32, device=None if like is None else like.device)


def div(a: TensorOrNumber, b: TensorOrNumber) -> torch.Tensor:
    """IEEE float32 a / b, correctly rounded (one rounding, as C), on any device.

    A number on either side becomes a 0-dim tensor on the other's device (f32_tensor).
    """
    if not isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        a = f32_tensor(a, b)
    if not isinstance(b, torch.Tensor):
        b = f32_tensor(b, a)
    return torch.div(a, b)


def reciprocal_or_zero(d: torch.Tensor) -> torch.Tensor:
    """C's ``d ? 1.0f/d : 0.0f`` (a true division: 1/d, never rsqrt tricks)."""
    return select(d != 0, div(1.0, d), 0)


def sqrtf(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 sqrtf, as C's sqrtf (the sqrtss instruction) gives.

    torch.sqrt on CPU float32 is *not* correctly rounded (its vectorised kernel is
    off by one ulp for about a fifth of inputs). The square root in float64, rounded
    once to float32, is exact: 53 >= 2*24 + 2 bits makes the double rounding harmless
    for sqrt. Same result on CUDA, and traceable.
    """
    return torch.sqrt(x.to(torch.float64)).to(torch.float32)


# --------------------------------------------------------------------------------------
# fp16: what C stores and re-reads
# --------------------------------------------------------------------------------------


def fp16_round(x: torch.Tensor) -> torch.Tensor:
    """GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x)): float32 -> nearest-even fp16 -> float32.

    Never inside a compiled function: Inductor drops the round trip as pointless.
    """
    return x.to(torch.float16).to(torch.float32)


def fp16_bytes(x: torch.Tensor) -> torch.Tensor:
    """float32 [...] -> uint8 [..., 2]: the little-endian fp16 (round to nearest even) of each value."""
    h = x.to(torch.float16).contiguous()
    return h.view(torch.uint8).reshape(*x.shape, 2)


def fp16_from_bytes(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2] little-endian fp16 -> float32 [...] (exact)."""
    return b.contiguous().view(torch.float16).squeeze(-1).to(torch.float32)


def fp16_byte_pair(v: torch.Tensor) -> torch.Tensor:
    """float32 [nb] -> int32 [nb, 2]: the little-endian bytes of each value's fp16 (round to
    nearest even), for torch.cat into block bytes inside a compiled kernel (fp16_bytes'
    traceable form: no uint8 view)."""
    bits = v.to(torch.float16).view(torch.int16).to(torch.int32).unsqueeze(1)
    return torch.cat([bits & 0xFF, (bits >> 8) & 0xFF], dim=1)


# --------------------------------------------------------------------------------------
# Selecting without torch.where
# --------------------------------------------------------------------------------------

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def select(mask: torch.Tensor, a: TensorOrNumber, b: TensorOrNumber) -> torch.Tensor:
    """``torch.where(mask, a, b)``, bit for bit (signed zeros, NaN payloads kept), for eager code.

    Why not torch.where: on CPU (this AVX-512 build) it runs some 10-40x slower than
    a multiply, and the codecs select state for every group at every step. Blending
    the raw bits, ``b ^ ((a ^ b) & -mask)``, costs a few integer passes on any device.
    a and b are tensors of one dtype, or one of them is the number 0 (then a single
    AND); anything else goes to torch.where.
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.dtype != b.dtype:
            return torch.where(mask, a, b)
        it = _INT_OF_SIZE[a.element_size()]
        ai, bi = a.view(it), b.view(it)
        m = mask.to(it).neg_()
        blend = ai ^ bi
        if torch.broadcast_shapes(blend.shape, m.shape) == blend.shape:
            blend.bitwise_and_(m)
        else:
            blend = blend & m
        return blend.bitwise_xor_(bi).view(a.dtype)
    if isinstance(a, torch.Tensor) and b == 0:
        it = _INT_OF_SIZE[a.element_size()]
        return (a.view(it) & mask.to(it).neg_()).view(a.dtype)
    if isinstance(b, torch.Tensor) and a == 0:
        it = _INT_OF_SIZE[b.element_size()]
        return (b.view(it) & mask.logical_not().to(it).neg_()).view(b.dtype)
    return torch.where(mask, a, b)


# --------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------


def nearest_int(v: torch.Tensor, nan_zero: bool = False) -> torch.Tensor:
    """ggml's ``nearest_int(float)`` bit for bit: int32, round half to even for |v| < 2**22.

    Mirrors the C bit trick itself (add 1.5*2**23, keep the low 23 bits), so out-of-range
    inputs give the same garbage C would (its assert is compiled out); callers clamp.
    A NaN gives what its bits give: 0 for x86's default NaN. ``nan_zero`` pins that 0 on
    every device (CUDA's canonical NaN has other bits), for callers that keep such codes.
    Traceable without nan_zero, but its bit cast compiles to a scalar loop: hot compiled
    loops use round_clamped.
    """
    bits = (v + NEAREST_INT_MAGIC).view(torch.int32)
    out = (bits & 0x007FFFFF) - 0x00400000
    if nan_zero:
        return select(torch.isnan(v), 0, out)
    return out


def round_bounded(v: torch.Tensor) -> torch.Tensor:
    """nearest_int for arguments known to stay well inside +-2**22, as float32 (torch.round
    rounds half to even too, and needs no bit cast)."""
    return torch.round(v)


def round_clamped(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """torch.round(v) clamped to lo..hi (0-dim int32 tensors), as float32; for compiled code.

    The clamp runs on int32, where min and max compile to one instruction each (float
    min and max propagate NaN: four each). A NaN or out-of-range v converts to INT_MIN
    and comes out as lo: callers only use results where v is finite and below 2**22.
    (Python ints as bounds would make torch.compile break the graph here.)"""
    return torch.minimum(torch.maximum(torch.round(v).to(torch.int32), lo), hi).float()


# --------------------------------------------------------------------------------------
# Sums in C's order
# --------------------------------------------------------------------------------------


def seq_sum(terms: torch.Tensor, from_zero: bool = True, out: "torch.Tensor | None" = None) -> torch.Tensor:
    """Sum ``terms[0], terms[1], ...`` (dim 0) one after another in float32, as a C loop does.

    ``from_zero`` mirrors ``float s = 0; s += t[0]; ...`` (which turns -0.0 into +0.0);
    without it the sum starts from ``t[0]`` itself, as in ``float s = t[0];``. Reductions
    like torch.sum reorder the additions, which changes the rounding. ``out``, if given,
    receives the result (a reusable buffer). Eager code; see seq_sum_traced.
    """
    if from_zero:
        acc = torch.add(terms[0], 0.0, out=out)
    else:
        acc = out.copy_(terms[0]) if out is not None else terms[0].clone()
    for i in range(1, terms.shape[0]):
        acc.add_(terms[i])
    return acc


def seq_sum_traced(terms: "list[torch.Tensor]", zero: "torch.Tensor | None") -> torch.Tensor:
    """seq_sum for compiled code: C's ``for (...) s += t[i]`` in order over a list, from
    ``float s = 0`` (zero: a 0-dim +0.0 tensor, f32_tensor(0.0)) or, with zero None, from
    ``float s = t[0]``.

    The zero comes in as a run-time tensor: a literal ``+ 0.0`` would be dropped by
    Inductor and by -fno-signed-zeros, and -0.0 would stay -0.0.
    """
    acc = terms[0] if zero is None else zero + terms[0]
    for t in terms[1:]:
        acc = acc + t
    return acc


def sum_squares(x: torch.Tensor) -> torch.Tensor:
    """Per row of x [rows, n], ``float s = 0; for j: s += x[j]*x[j];`` in C's order -> float32 [rows].

    The loop runs over the row length on vectors of all rows (sigma2 of the imatrix paths).
    """
    return seq_sum((x * x).t().contiguous())


def importance_weights(x: torch.Tensor, qw: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """The imatrix paths' weights ``qw[j] * sqrtf(sigma2 + x[j]*x[j])``: x [rows, n], qw [n] or
    [rows, n], sigma2 [rows]."""
    return qw * sqrtf(sigma2.unsqueeze(1) + x * x)


# --------------------------------------------------------------------------------------
# C's scans: first index, signed max of largest magnitude, min and max
# --------------------------------------------------------------------------------------


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
    """C's ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from amax = max = 0, along dim.

    Returns (amax, max): the largest magnitude and the *first* value having it; when
    every value is a zero, max stays the C initialiser +0.0 (never -0.0). NaN never
    passes C's ``>``: it acts as a zero. The largest and smallest values decide max
    unless they are opposite (+a and -a): only then does "first" matter, and only
    those groups are scanned. Eager code; see first_abs_max_traced.
    """
    if bool(torch.isnan(x).any()):
        x = select(torch.isnan(x), 0, x)
    hi = x.amax(dim=dim)
    lo = x.amin(dim=dim)
    nlo = lo.neg()
    amax = torch.maximum(hi, nlo)
    mx = select(hi > nlo, hi, lo)
    mx = select(amax > 0, mx, 0)  # all zeros: C keeps its +0.0
    tie = ((hi == nlo) & (hi != 0)).nonzero().squeeze(1) if hi.dim() == 1 else None
    if tie is None:  # not a [n, G] / [G, n] input: scan everything
        return amax, _first_abs_max_scan(x, dim)
    if tie.numel():
        other = 1 - dim
        mx.index_copy_(0, tie, _first_abs_max_scan(x.index_select(other, tie), dim))
    return amax, mx


def _first_abs_max_scan(x: torch.Tensor, dim: int) -> torch.Tensor:
    """first_abs_max's max by locating the first largest magnitude (x without NaN)."""
    ax = x.abs()
    amax = ax.amax(dim=dim)
    i = first_index(ax == amax.unsqueeze(dim), dim).clamp_max(x.shape[dim] - 1)
    mx = torch.gather(x, dim, i.unsqueeze(dim).long()).squeeze(dim)
    return select(amax > 0, mx, 0)


def first_abs_max_traced(xs: "list[torch.Tensor]") -> torch.Tensor:
    """first_abs_max's max for compiled code: C's running scan over the positions xs, which
    Inductor fuses into one loop (NaN fails ``>`` here as in C)."""
    amax = torch.zeros_like(xs[0])
    mx = torch.zeros_like(xs[0])
    for v in xs:
        av = v.abs()
        gt = av > amax
        amax = torch.where(gt, av, amax)
        mx = torch.where(gt, v, mx)
    return mx


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
