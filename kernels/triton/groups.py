"""Groups as tuples of positions: how the K-quant Triton kernels keep C's order of operations.

A *group* is one run of weights that ggml-quants.c handles in one call (a 16-weight
sub-block, or the 16 sub-block scales of a super-block). The search kernels hold a
program's groups position by position: a tuple of n vectors ``xs[i]`` of shape [G], one
lane per group. Walking ``tl.static_range(n)`` over the tuple is C's ``for (i = 0; i < n;
++i)`` for every group at once: sums stay sequential (a ``tl.sum`` tree would round
differently), every position stays in registers, and no lane talks to another.

Packing bytes needs the other view, [G, n], where integers may be summed in any order;
``stack`` turns the tuple into it, ``column`` reads one position back out.

Imports kernels.triton.common only.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.triton.common import INTERPRETED

# Under the interpreter a program costs its op count in Python overhead (about a
# millisecond an op), whatever its size: one program takes up to this many super-blocks.
INTERPRETER_SUPERBLOCKS = 256


def program_superblocks(n_sb: int, on_gpu: int) -> int:
    """Super-blocks per program: ``on_gpu`` when compiled; under TRITON_INTERPRET=1 as few
    programs as possible (a power of two covering n_sb, at most INTERPRETER_SUPERBLOCKS)."""
    if not INTERPRETED:
        return on_gpu
    return min(INTERPRETER_SUPERBLOCKS, max(on_gpu, triton.next_power_of_2(n_sb)))


@triton.jit
def sum_squares(x_ptr, sb, live):
    """Per super-block [SB]: ``float s = 0; for j < 256: s += x[j]*x[j];`` in C's order (sigma2 of
    the Q2_K/Q3_K imatrix paths)."""
    s = tl.zeros(sb.shape, tl.float32)
    for j in range(256):
        v = tl.load(x_ptr + sb * 256 + j, mask=live, other=0.0)
        s = s + v * v
    return s


@triton.jit
def load_positions(ptr, group, mask, N: tl.constexpr):
    """(x[g*N + 0], ..., x[g*N + N-1]) for the groups ``group`` [G] (int64), 0 where masked.

    Position-by-position loads: each lane reads its own group's N consecutive floats,
    so the lines that the first load brings in serve the other N - 1 from cache.
    """
    out = ()
    for i in tl.static_range(N):
        out = out + (tl.load(ptr + group * N + i, mask=mask, other=0.0),)
    return out


@triton.jit
def stack(t):
    """A tuple of 16 vectors [G] -> [G, 16] with column i = t[i] (a tree of tl.join, then
    the joined axes reversed so that they read as one index in C's order)."""
    lvl = t
    for _ in tl.static_range(4):
        nxt = ()
        for k in tl.static_range(len(lvl) // 2):
            nxt = nxt + (tl.join(lvl[2 * k], lvl[2 * k + 1]),)
        lvl = nxt
    a = tl.permute(lvl[0], (0, 4, 3, 2, 1))
    return tl.reshape(a, (a.shape[0], 16))


@triton.jit
def column(m, i):
    """Column i of m [G, 16] as a vector [G], exactly: every other entry becomes -0.0, and
    v + -0.0 == v for every v (signed zeros, Inf and NaN included), whatever order
    tl.sum adds in. For the per-super-block steps, not for hot loops."""
    j = tl.arange(0, 16)
    return tl.sum(tl.where(j[None, :] == i, m, -0.0), axis=1)


@triton.jit
def unstack(m):
    """[G, 16] -> the tuple of its 16 columns (see column)."""
    out = ()
    for i in tl.static_range(16):
        out = out + (column(m, i),)
    return out
