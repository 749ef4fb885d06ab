"""Public entry points: validate, chunk rows, dispatch to the codec of the type."""
from __future__ import annotations

import concurrent.futures
import os
import threading

import gguf
import torch

from kernels import fused
from kernels.codecs import CODECS
from kernels.types import qtype, row_bytes

# Rows are quantized in chunks of about this many weights, so temporaries stay a
# small multiple of one chunk's float32 size whatever the tensor's size.
CHUNK_WEIGHTS = 1 << 22


# On CPU with N > 1 torch threads, tensors of at least this many weights are split into
# row ranges quantized by N Python threads with one torch thread each: the codecs run
# many small ops and Python steps, which intra-op threads barely speed up, while whole
# chunks on separate threads overlap almost perfectly (torch ops and the compiled
# kernels, built with Inductor's C++ wrapper, release the GIL).
PARALLEL_MIN_WEIGHTS = 1 << 20

# Compiled types that have run on this process (see quantize).
_WARMED: "set[str]" = set()

# torch.set_num_threads is process-wide: one threaded quantize at a time owns it.
_THREADS_LOCK = threading.Lock()


# Which backend quantizes: "auto" (the default) takes the Triton codec for CUDA tensors when
# triton imports and the type has one (kernels.triton.TRITON_CODECS), the PyTorch reference
# otherwise; "triton" takes it for tensors on any device (CPU tensors need TRITON_INTERPRET=1,
# set before triton is imported: the tests); "torch" never does.
BACKEND_ENV = "DSQ_KERNELS_BACKEND"
BACKENDS = ("auto", "triton", "torch")


def _triton_codec(name: str, x: torch.Tensor):
    """The Triton quantizer for type name and tensor x under BACKEND_ENV, or None for the reference."""
    backend = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "torch" or (backend == "auto" and x.device.type != "cuda"):
        return None
    from kernels import triton as triton_codecs  # lazily: CPU-only machines may lack triton

    if name not in triton_codecs.TRITON_CODECS or not triton_codecs.available():
        return None
    return triton_codecs.codec(name)


def _rows_per_chunk(n_per_row: int) -> int:
    return max(1, CHUNK_WEIGHTS // n_per_row)


def _row_ranges(rows: int, n_per_row: int, workers: int) -> "list[tuple[int, int]]":
    """Row ranges of at most CHUNK_WEIGHTS weights, as many as a multiple of workers, near-equal."""
    step = _rows_per_chunk(n_per_row)
    pieces = -(-rows // step)
    pieces = min(rows, -(-pieces // workers) * workers)
    bounds = [rows * i // pieces for i in range(pieces + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _all_finite(chunk: torch.Tensor) -> bool:
    """True when chunk has no NaN or Inf.

    A finite sum proves every value finite (NaN and Inf propagate through a sum),
    in one pass and without a chunk-sized temporary; only when the sum is not
    finite (bad input, or finite values overflowing it) does torch.isfinite,
    which costs as much as a whole Q8_0 quantization, decide.
    """
    if bool(torch.isfinite(chunk.sum())):
        return True
    return bool(torch.isfinite(chunk).all())


def quantize(
    x: torch.Tensor,
    q: "str | gguf.GGMLQuantizationType",
    imatrix: "torch.Tensor | None" = None,
) -> torch.Tensor:
    """Quantize x: float [rows, n_per_row] on any device -> uint8 [rows, row_bytes] in GGUF block layout.

    imatrix, if given, is float [n_per_row]: llama.cpp's per-column importance weights.
    Raises ValueError for an unsupported type, a bad shape, a row length that blocks do
    not divide, or non-finite input.
    """
    t = qtype(q)
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor [rows, n_per_row], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    rows, n = x.shape
    nbytes = row_bytes(t, n)
    if imatrix is not None:
        if not isinstance(imatrix, torch.Tensor) or imatrix.shape != (n,):
            raise ValueError(f"imatrix must be a tensor of shape [{n}], got {getattr(imatrix, 'shape', type(imatrix))}")
        imatrix = imatrix.to(device=x.device, dtype=torch.float32).contiguous()
        if not torch.isfinite(imatrix).all():
            raise ValueError("imatrix contains NaN or Inf")
    tri = _triton_codec(t.name, x)
    if tri is not None:
        # one launch per tensor (a few with an imatrix): no chunks, the input cast on its device
        x32 = x.to(torch.float32).contiguous()
        if not _all_finite(x32):
            bad = (~torch.isfinite(x32)).any(dim=1).nonzero()[0, 0].item()
            raise ValueError(f"input contains NaN or Inf (first in row {bad})")
        return tri(x32, imatrix)
    codec = CODECS[t.name]
    fn = codec.quantize
    out = torch.empty((rows, nbytes), dtype=torch.uint8, device=x.device)
    compiled_type = codec.compiled

    def run(r: "tuple[int, int]") -> None:
        r0, r1 = r
        chunk = x[r0:r1].to(torch.float32).contiguous()
        if not _all_finite(chunk):
            bad = (~torch.isfinite(chunk)).any(dim=1).nonzero()[0, 0].item() + r0
            raise ValueError(f"input contains NaN or Inf (first in row {bad})")
        # decided for the whole tensor, in whichever thread runs the chunk
        with fused.decided_for(x, compiled_type):
            out[r0:r1] = fn(chunk, imatrix)

    # A compiled kernel's first call for a new kind of input compiles it; threads racing
    # to compile the same one make torch.compile recompile until its limit, then give up
    # to eager code. So a type's first threaded quantize runs its first range alone.
    first_alone = compiled_type and t.name not in _WARMED and fused.active(x)
    _run_chunks(run, rows, n, x.device.type == "cpu", first_alone)
    if first_alone:
        _WARMED.add(t.name)
    return out


def _run_chunks(run, rows: int, n: int, on_cpu: bool, first_alone: bool = False) -> None:
    """run(row range) over all chunks: split over Python threads on CPU for big tensors
    (after the first range alone, if first_alone)."""
    workers = torch.get_num_threads() if on_cpu and rows * n >= PARALLEL_MIN_WEIGHTS else 1
    if workers > 1 and _THREADS_LOCK.acquire(blocking=False):
        try:
            torch.set_num_threads(1)
            ranges = _row_ranges(rows, n, workers)
            if first_alone:
                run(ranges.pop(0))
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                # map yields in row order, so the error raised names the first bad row
                for _ in pool.map(run, ranges):
                    pass
        finally:
            torch.set_num_threads(workers)
            _THREADS_LOCK.release()
    else:
        for r in _row_ranges(rows, n, 1):
            run(r)


def dequantize(data: torch.Tensor, q: "str | gguf.GGMLQuantizationType", n_per_row: int) -> torch.Tensor:
    """Dequantize uint8 [rows, row_bytes] of type q -> float32 [rows, n_per_row]."""
    t = qtype(q)
    nbytes = row_bytes(t, n_per_row)
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 2 or data.shape[1] != nbytes:
        raise ValueError(
            f"data must be uint8 [rows, {nbytes}] for {t.name} rows of {n_per_row}, got "
            f"{getattr(data, 'dtype', type(data))} {tuple(getattr(data, 'shape', ()))}"
        )
    fn = CODECS[t.name].dequantize
    rows = data.shape[0]
    out = torch.empty((rows, n_per_row), dtype=torch.float32, device=data.device)
    step = _rows_per_chunk(n_per_row)
    for r0 in range(0, rows, step):
        out[r0 : r0 + step] = fn(data[r0 : r0 + step].contiguous(), n_per_row)
    return out
