"""The K-quant scale search as plain C, vectorised across groups (kernels/csrc/qkx2.c).

Why: make_qkx2_quants is most of Q2_K/Q4_K/Q5_K's time. Its compiled twin (kernels.search.qkx,
one Inductor kernel per trial) keeps a group's 32 weights, weights and codes alive across a
~600-operation loop body (benchmarks.kernels.search: 3.4x slower on Q4_K's search); the same steps written as
a loop over positions with 16 groups per vector register keep them in registers and L1.
Every lane computes what llama.cpp's scalar code computes for its group (same operations in
the same order, IEEE, no contraction into FMAs, nearest_int by the same trick), so no group
needs the eager re-run the compiled twin needs for codes near 2**22; tests/kernels compare
the bytes with llama.cpp's and with the other paths.

Built once per machine and source with the C compiler (``$CC`` or ``cc``, -march=native) into
the kernels cache (kernels.aot.cache_dir's parent), loaded with ctypes, which releases the GIL
during the call. No compiler, a failed build or DSQ_KERNELS_NATIVE=0: make_qkx2 answers None
and the caller uses its compiled or eager search.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from kernels import aot

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "qkx2.c"
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-std=c11", "-shared", "-fPIC"]

_state: dict = {"enabled": os.environ.get("DSQ_KERNELS_NATIVE", "1") != "0", "lib": None, "tried": False}
_lock = threading.Lock()


def set_enabled(on: bool) -> None:
    """Switch the C search on or off for this process (tests compare it with the other paths)."""
    _state["enabled"] = on


def _compiler() -> "str | None":
    return shutil.which(os.environ.get("CC") or "cc")


def library_path() -> Path:
    """Where this source, these flags and this CPU keep their build."""
    h = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + aot.cpu_flags())
    return aot.cache_dir().parent / f"native-{h.hexdigest()[:16]}" / "libdsq_qkx2.so"


def _build(path: Path) -> None:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler ($CC or cc)")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    proc = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[-2000:]}")
    os.replace(tmp, path)


def _library() -> "ctypes.CDLL | None":
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            try:
                path = library_path()
                with aot.dir_lock(path.parent):  # parallel processes build it once
                    if not path.exists():
                        _build(path)
                    try:
                        lib = ctypes.CDLL(str(path))
                    except OSError:  # a damaged build (a full disk, a killed copy): build it again
                        _build(path)
                        lib = ctypes.CDLL(str(path))
                fn = lib.dsq_make_qkx2
                fn.restype = ctypes.c_int
                fn.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                               ctypes.c_float, ctypes.c_float, ctypes.c_int, ctypes.c_int,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
                _state["lib"] = lib
            except Exception as exc:  # no compiler, a failed build: the other searches
                log.warning("kernels: no native K-quant search (%s: %s); using the compiled one", type(exc).__name__, exc)
            _state["tried"] = True
    return _state["lib"]


def make_qkx2(x: torch.Tensor, w: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int,
              use_mad: bool) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None":
    """kernels.search.make_qkx's (scale [G], the_min [G], L float32 [n, G]) for float32 CPU
    x and w [n, G]; None when the C search is off or unavailable."""
    if not _state["enabled"] or x.device.type != "cpu":
        return None
    lib = _library()
    if lib is None:
        return None
    x = x.to(torch.float32).contiguous()
    w = w.to(torch.float32).contiguous()
    n, G = x.shape
    scale = torch.empty(G, dtype=torch.float32)
    the_min = torch.empty(G, dtype=torch.float32)
    L = torch.empty((n, G), dtype=torch.float32)
    rc = lib.dsq_make_qkx2(n, G, x.data_ptr(), w.data_ptr(), int(nmax), float(rmin), float(rdelta), int(nstep), int(use_mad),
                           scale.data_ptr(), the_min.data_ptr(), L.data_ptr())
    if rc != 0:
        return None
    return scale, the_min, L
