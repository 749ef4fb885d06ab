"""The compiled twins ahead of time: AOTInductor packages that a process loads without tracing.

Why: torch.compile traces every compiled function with dynamo in each new process before its
first call, even when Inductor's disk cache holds the kernels (about 20 s for the K-quants on
two cores, paid by every `dsq quantize` and every worker process). A package (.pt2) holds the
same Inductor C++ kernels behind a C entry point; loading one is a dlopen of its .so (milliseconds;
benchmarks.kernels.startup: 24.7 s to the fifth K-quant type's result with torch.compile, 3.9 s
with packages).

How: kernels.fused.compiled asks kernel(fn, options) for each call. A call's *signature* is the
function, its Inductor options, each tensor's dtype and rank and each other argument's value
(Python ints and bools are baked into a package, as torch.compile specialises on them). For a
signature seen before, the packages on disk are tried in turn: each records the shapes it
accepts, a dimension being a number (specialised by the trace, e.g. a group's 16 or 32
positions), a symbol (free: the number of groups) or an expression of symbols (a derived size,
8*s0), with the symbols' ranges; the first that accepts the call's shapes runs it. No package
accepting them: torch.export (non-strict, every dimension Dim.AUTO: the trace decides which
are free, exactly as torch.compile(dynamic=True) does) and aoti_compile_and_package build
one (15-30 s each on two cores) into the cache. Packages are built for contiguous CPU inputs
only; any other call (and any failure to build or load, logged once) answers None and the
caller uses torch.compile instead.

Exactness: the package is Inductor's code for the same graph with the same options, so the
rules of kernels.fused hold unchanged (divisors are run-time tensors, which export keeps as
inputs; -ffp-contract=off; no fast-math); tests/kernels compare its bytes with llama.cpp's.

Where: ``$DSQ_KERNELS_AOT_DIR`` or ``~/.cache/dsq/kernels``, then a directory named by torch's
version and a hash of the kernels' sources (with FORMAT) and the CPU's feature flags (Inductor compiles
for the vector ISA it finds), so a changed kernel or another machine never loads a stale
package; outside the checkout, so clean clones and CI reuse it. ``python -m kernels.aot_build
build`` fills it for every compiled type (the Makefile's ``kernels-aot``), ``python -m
kernels.aot_build path`` prints it.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

log = logging.getLogger(__name__)

DIR_ENV = "DSQ_KERNELS_AOT_DIR"

# What a package holds and how it is built here: bump it when this module changes either
# (this file is left out of the sources hash so that other edits to it keep the packages).
FORMAT = 2
_NOT_TRACED = {"aot.py", "aot_build.py", "native.py", "triton"}  # kernels' sources that never reach a CPU package

_tracing = threading.local()

# One build at a time in a process: export and Inductor keep tracing state that two threads
# building at once (kernels.api's row ranges) corrupt.
_build_lock = threading.Lock()


def exporting() -> bool:
    """True while this thread traces a function for a package: compiled functions that it
    calls are traced into the caller's graph, as torch.compile inlines them."""
    return getattr(_tracing, "on", False)


@contextlib.contextmanager
def _exporting() -> Iterator[None]:
    prev = exporting()
    _tracing.on = True
    try:
        yield
    finally:
        _tracing.on = prev


def cpu_flags() -> bytes:
    """/proc/cpuinfo's flags line: builds for -march=native (Inductor's, kernels.native's) are keyed by it."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            return next((line for line in f if line.startswith(b"flags")), b"")
    except OSError:
        return b""


@functools.cache
def cache_dir() -> Path:
    """Where this torch, these kernel sources and this CPU keep their packages."""
    base = os.environ.get(DIR_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsq" / "kernels"
    h = hashlib.sha256(f"format {FORMAT}".encode())
    pkg = Path(__file__).resolve().parent
    for p in sorted(pkg.rglob("*.py")):
        rel = p.relative_to(pkg)
        if rel.parts[0] not in _NOT_TRACED:
            h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(cpu_flags())
    return Path(base) / f"torch-{torch.__version__.replace('+', '-')}-{h.hexdigest()[:16]}"


def _signature(args: tuple) -> "tuple | None":
    """What a package bakes in (see the module docstring), or None for a call no package serves."""
    sig = []
    for a in args:
        if isinstance(a, torch.Tensor):
            if a.device.type != "cpu" or not a.is_contiguous() or a.requires_grad:
                return None
            sig.append(("tensor", str(a.dtype), a.dim()))
        elif isinstance(a, (bool, int, float)):
            sig.append((type(a).__name__, a))
        else:
            return None
    return tuple(sig)


class _Package:
    """One loaded package and the shapes it accepts.

    Run through AOTInductor's C interface with ctypes, which releases the GIL during the call
    (AOTIModelPackageLoader.run holds it: kernels.api's row ranges on Python threads then ran
    one at a time, and `dsq quantize` took 1.5x longer). The container holds one model
    instance per CPU, so that many threads run the same kernel at once.
    """

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = path
        self.shapes: "list[list[Any]]" = meta["shapes"]
        self.ranges: "dict[str, list]" = meta["ranges"]
        self._exprs = {d: compile(d, "<shape>", "eval") for s in self.shapes for d in s
                       if isinstance(d, str) and not d.isidentifier()}
        so = path.with_suffix(".so")
        if not so.exists():
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n.endswith(".wrapper.so"))
                tmp = so.with_name(f"{so.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(z.read(name))
                os.replace(tmp, so)
        lib = ctypes.CDLL(str(so))
        self._lib = lib
        self._container = ctypes.c_void_p()
        _check(lib, lib.AOTInductorModelContainerCreateWithDevice(
            ctypes.byref(self._container), ctypes.c_size_t(max(1, os.cpu_count() or 1)), b"cpu", None))
        n = ctypes.c_size_t()
        _check(lib, lib.AOTInductorModelContainerGetNumOutputs(self._container, ctypes.byref(n)))
        self._n_out = n.value
        in_spec, out_spec = ctypes.c_char_p(), ctypes.c_char_p()
        _check(lib, lib.AOTInductorModelContainerGetCallSpec(self._container, ctypes.byref(in_spec), ctypes.byref(out_spec)))
        from torch.utils import _pytree as pytree

        self._out_spec = pytree.treespec_loads(out_spec.value.decode())
        self._run = lib.AOTInductorModelContainerRun
        self._run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]

    def accepts(self, tensors: "list[torch.Tensor]") -> bool:
        if len(tensors) != len(self.shapes):
            return False
        sym: "dict[str, int]" = {}
        for t, dims in zip(tensors, self.shapes):
            if t.dim() != len(dims):
                return False
            for v, d in zip(t.shape, dims):
                if isinstance(d, int):
                    if v != d:
                        return False
                elif d.isidentifier() and sym.setdefault(d, v) != v:
                    return False
        for name, (lo, hi) in self.ranges.items():
            if name in sym and (sym[name] < lo or (hi is not None and sym[name] > hi)):
                return False
        for t, dims in zip(tensors, self.shapes):
            for v, d in zip(t.shape, dims):
                if isinstance(d, str) and not d.isidentifier():
                    try:
                        if eval(self._exprs[d], {"__builtins__": {}}, dict(sym)) != v:
                            return False
                    except Exception:  # a symbol only seen inside expressions, or sympy's FloorDiv, ...
                        return False
        return True

    def __call__(self, tensors: "list[torch.Tensor]") -> Any:
        from torch.utils import _pytree as pytree

        # new at::Tensor handles, which the run steals (frees); it hands back new ones for the outputs
        handles = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(list(tensors))
        ins = (ctypes.c_void_p * len(handles))(*[_capsule_ptr(h, None) for h in handles])
        outs = (ctypes.c_void_p * self._n_out)()
        _check(self._lib, self._run(self._container, ins, len(handles), outs, self._n_out, None, None))
        out = torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs([_capsule(outs[i], None, None) for i in range(self._n_out)])
        return pytree.tree_unflatten(out, self._out_spec)


# torch._C._aoti hands tensor handles over as PyCapsules (unnamed)
_capsule_ptr = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_ptr.restype, _capsule_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype, _capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


def _check(lib: ctypes.CDLL, rc: int) -> None:
    if rc != 0:
        raise RuntimeError(f"AOTInductor runtime error {rc}")


class _Bound(torch.nn.Module):
    """fn with its non-tensor arguments fixed: what torch.export traces."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        super().__init__()
        self.fn, self.args = fn, args

    def forward(self, *tensors: torch.Tensor) -> Any:
        it = iter(tensors)
        return self.fn(*[next(it) if isinstance(a, torch.Tensor) else a for a in self.args])


def _bound(v: Any, infinite: "int | None") -> "int | None":
    try:
        return int(v)
    except (TypeError, ValueError, AttributeError):  # int_oo, sympy's oo
        return infinite


def _shape_meta(ep: "torch.export.ExportedProgram") -> dict:
    inputs = set(ep.graph_signature.user_inputs)
    shapes = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            shapes.append([int(d) if isinstance(d, int) else str(d.node.expr) for d in node.meta["val"].shape])
    ranges = {}
    for s, vr in ep.range_constraints.items():
        ranges[str(s)] = [_bound(vr.lower, 0), _bound(vr.upper, None)]
    return {"shapes": shapes, "ranges": ranges}


def _unaliased(a: Any, seen: "set[int]") -> Any:
    if not isinstance(a, torch.Tensor):
        return a
    ptr = a.untyped_storage().data_ptr()
    if ptr in seen:
        return a.clone()
    seen.add(ptr)
    return a


@contextlib.contextmanager
def dir_lock(where: Path) -> Iterator[None]:
    """An exclusive flock on a signature's package directory: processes that need the same package
    at once (pytest-xdist runners, workers starting together) build it once; the others wait and load it."""
    import fcntl

    where.mkdir(parents=True, exist_ok=True)
    with open(where / "LOCK", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_CHOSEN_MAX = 4096


class Kernel:
    """fn's packages: __call__ answers fn(*args) from one, or None when none can serve it."""

    def __init__(self, fn: Callable, options: dict) -> None:
        self.fn, self.options = fn, dict(options)
        self.name = f"{fn.__module__}.{fn.__qualname__}".replace("<", "").replace(">", "")
        self._packages: "dict[tuple, list[_Package]]" = {}
        self._failed: "set[tuple]" = set()
        # (signature, shapes) -> the package that took them: a search calls its kernels tens
        # of thousands of times per model, and judging the shapes again cost ~50 us a call
        self._chosen: "dict[tuple, _Package]" = {}

    def _dir(self, sig: tuple) -> Path:
        key = json.dumps([sig, sorted(self.options.items())], default=str)
        return cache_dir() / self.name / hashlib.sha256(key.encode()).hexdigest()[:16]

    def __call__(self, *args: Any) -> Any:
        sig = _signature(args)
        if sig is None or sig in self._failed:
            return None
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        key = (sig, tuple(t.shape for t in tensors))
        p = self._chosen.get(key)
        if p is None:
            p = next((q for q in self._packages.get(sig, ()) if q.accepts(tensors)), None)
            if p is None:
                with _build_lock:
                    p = self._find_or_build(sig, args, tensors)
                if p is None:
                    return None
            if len(self._chosen) >= _CHOSEN_MAX:
                self._chosen.clear()
            self._chosen[key] = p
        return p(tensors)

    def _find_or_build(self, sig: tuple, args: tuple, tensors: "list[torch.Tensor]") -> "_Package | None":
        loaded = self._packages.setdefault(sig, [])
        for p in loaded:  # another thread may have added one
            if p.accepts(tensors):
                return p
        where = self._dir(sig)
        seen = {p.path for p in loaded}
        try:
            with dir_lock(where):  # another process (a test runner, a second worker) builds one at a time too
                return self._load_or_build(where, sig, args, tensors, loaded, seen)
        except Exception as exc:  # no compiler, an export limitation, a damaged file: torch.compile instead
            log.warning("kernels: no ahead-of-time package for %s %s (%s: %s); using torch.compile",
                        self.name, [tuple(t.shape) for t in tensors], type(exc).__name__, exc)
            self._failed.add(sig)
            return None

    def _load_or_build(self, where: Path, sig: tuple, args: tuple, tensors: "list[torch.Tensor]",
                       loaded: "list[_Package]", seen: "set[Path]") -> "_Package":
        for meta_path in sorted(where.glob("*.json")):
            pt2 = meta_path.with_suffix(".pt2")
            if pt2 in seen or not pt2.exists():
                continue
            p = _Package(pt2, json.loads(meta_path.read_text()))
            loaded.append(p)
            if p.accepts(tensors):
                return p
        return self._build(where, sig, args, loaded)

    def _build(self, where: Path, sig: tuple, args: tuple, loaded: "list[_Package]") -> _Package:
        t0 = time.perf_counter()
        # Arguments that alias one another (make_qkx's first step passes its minimum twice)
        # would be traced as one input, and the package would then read one for both.
        seen: "set[int]" = set()
        args = tuple(_unaliased(a, seen) for a in args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        log.info("kernels: building the ahead-of-time package of %s for %s (once per machine and kernels version)",
                 self.name, [tuple(t.shape) for t in tensors])
        dims = tuple({d: torch.export.Dim.AUTO for d in range(t.dim())} for t in tensors)
        with _exporting():
            ep = torch.export.export(_Bound(self.fn, args), tuple(tensors), dynamic_shapes=(dims,), strict=False)
        meta = _shape_meta(ep)
        where.mkdir(parents=True, exist_ok=True)
        stem = where / f"{len(loaded)}-{os.getpid()}-{threading.get_ident()}"
        tmp = stem.with_name(stem.name + ".part.pt2")  # the packager insists on .pt2
        torch._inductor.aoti_compile_and_package(
            ep, package_path=str(tmp), inductor_configs={"cpp.dynamic_threads": True, **self.options})
        pt2 = stem.with_suffix(".pt2")
        os.replace(tmp, pt2)
        stem.with_suffix(".json.tmp").write_text(json.dumps(meta))
        os.replace(stem.with_suffix(".json.tmp"), stem.with_suffix(".json"))
        p = _Package(pt2, meta)
        loaded.append(p)
        if not p.accepts(tensors):
            raise RuntimeError(f"the package built for {meta['shapes']} rejects its own example")
        log.info("kernels: built %s in %.1f s", pt2, time.perf_counter() - t0)
        return p
