"""`python -m benchmarks.kernels.gpu_check`: on a CUDA machine, prove CUDA bytes equal CPU bytes for every type
(with and without an importance matrix, on Gaussian, heavy-tailed, outlier, tiny and all-negative rows)
and print CUDA throughput on a 4096×14336 tensor. The CPU bytes are the ones tests/kernels proves equal
to llama.cpp's, so equality here carries byte-exactness over to the GPU."""
from __future__ import annotations

import sys
import time

import torch

import kernels
from kernels.types import TYPES

QUANTIZED = [t for t in TYPES if t not in ("F32", "F16", "BF16")]


def cases(rows: int = 64, cols: int = 4096) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    outlier = torch.randn(rows, cols, generator=g)
    outlier[torch.arange(rows), torch.randint(0, cols, (rows,), generator=g)] = 1e4
    return {
        "gauss": torch.randn(rows, cols, generator=g),
        "student_t": torch.distributions.StudentT(3.0).sample((rows, cols)),
        "outlier": outlier,
        "tiny": torch.randn(rows, cols, generator=g) * 1e-30,
        "negative": -torch.rand(rows, cols, generator=g),
    }


def mismatches() -> int:
    imatrix = torch.rand(4096, generator=torch.Generator().manual_seed(1)) * 10
    bad = 0
    for t in QUANTIZED:
        for name, x in cases().items():
            for im in (None, imatrix):
                on_cpu = kernels.quantize(x, t, im)
                on_gpu = kernels.quantize(x.cuda(), t, None if im is None else im.cuda()).cpu()
                if not torch.equal(on_cpu, on_gpu):
                    bad += 1
                    print(f"MISMATCH {t} {name}{' imatrix' if im is not None else ''}", flush=True)
        print(f"{t}: CUDA == CPU on {len(cases())} cases, with and without imatrix", flush=True)
    return bad


def throughput(rows: int = 4096, cols: int = 14336, repeat: int = 3) -> None:
    x = torch.randn(rows, cols, device="cuda")
    print(f"{'type':6s} {'CUDA Mw/s':>10s}   ({rows}x{cols} Gaussian, best of {repeat})")
    for t in QUANTIZED:
        kernels.quantize(x[:256], t)  # warm-up
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            kernels.quantize(x, t)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        print(f"{t:6s} {x.numel() / best / 1e6:10.1f}", flush=True)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    bad = mismatches()
    print(f"mismatches: {bad}", flush=True)
    throughput()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
