"""When and how the codecs run compiled CPU kernels (torch.compile / Inductor).

Why: in eager PyTorch every step of a K-quant search costs several whole-tensor
passes (each op reads and writes all groups), where llama.cpp's scalar loop
touches a group once. The compiled twins of the searches (kernels.search) and of
some codecs' packing steps are the same computations written as plain
per-position tensor expressions over ``[G]`` vectors (position-major, see
kernels.blocks); Inductor fuses each one into a single C++ loop over the groups,
vectorised across groups, with the sequential in-group sums kept in C's order
inside the loop body. This module holds the switch (active, use, decided_for),
the wrapper that compiles them (compiled) and the slicing they share; the C idioms
they are written with are kernels.arith's ``_traced`` helpers.

Exactness under compilation rests on a few rules, each checked by the byte-exact
tests against llama.cpp (tests/kernels run every codec on both paths):

* Inductor rewrites a division by a *constant* into a multiply by its reciprocal,
  so every divisor here is a tensor computed at run time (constants that divide
  are passed in as 0-dim tensors).
* Inductor compiles with ``-fno-signed-zeros`` and drops ``x + 0.0`` from graphs,
  so C's ``float s = 0; s += t`` (which turns -0.0 into +0.0) adds a run-time
  zero tensor (``arith.seq_sum_traced``).
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

import torch

from kernels import blocks

log = logging.getLogger(__name__)

# Groups per compiled call: big enough for OpenMP threads to share, small enough that
# a step's inputs (x and w of all groups of the slice) stay in the L2/L3 caches.
SLICE_GROUPS = 16384

_state = {
    "enabled": os.environ.get("DSQ_KERNELS_COMPILE", "1") != "0",
    "checked": False,
    # ahead-of-time packages (kernels.aot) before torch.compile: no dynamo trace per process
    "aot": os.environ.get("DSQ_KERNELS_AOT", "1") != "0",
}
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


def _probe(t: torch.Tensor) -> torch.Tensor:
    return t * 2 + 1


def _compiler_works() -> bool:
    """Compile and run a one-line kernel; False (with a warning) if Inductor cannot build it.
    Its ahead-of-time package when it has one (kernels.aot), so that a process that finds
    all its packages never starts dynamo."""
    try:
        if _state["aot"]:
            from kernels import aot

            out = aot.Kernel(_probe, {})(torch.ones(4))
            if out is not None:
                return bool(out.eq(3).all())
        probe = _compile(_probe)
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
    with Inductor config ``options`` on top of ours: its ahead-of-time package
    (kernels.aot: loaded, or built once per machine), else torch.compile (which traces
    it again in every process); DSQ_KERNELS_AOT=0 skips the packages.

    If Inductor fails to build it, fn runs uncompiled from then on (the expressions are
    exact eagerly too, only slower), with a warning.
    """
    holder: list = []
    packaged: list = []

    @functools.wraps(fn)
    def call(*args):
        if _state["aot"]:
            from kernels import aot  # lazily: `python -m kernels.aot` runs it as __main__

            if aot.exporting():  # traced into the package of the compiled function calling fn
                return fn(*args)
            if not packaged:
                packaged.append(aot.Kernel(fn, options))
            out = packaged[0](*args)
            if out is not None:
                return out
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


_positions_major_c = compiled(blocks.positions_major)


def positions_major(x: torch.Tensor, n: int) -> torch.Tensor:
    """kernels.blocks.positions_major compiled: [rows, k*n] -> [n, groups]. Inductor's tiled
    transpose is several times faster than torch's strided copy for this shape."""
    return _positions_major_c(x, n)


