"""What a fresh process pays before its first compiled-kernel result: one real-size tensor per
compiled type, timed from the start of the process.

    python -m benchmarks.kernels.startup [--types Q2_K Q3_K ...] [--rows 7168] [--cols 2048] [--imatrix]

Run it twice: the first run of a machine (or after a kernels change) fills Inductor's disk
cache; the second shows what every later process pays (the dynamo trace, cache loads). Prints,
per type, the seconds of its first quantize (loading or compiling its kernels plus the work)
and of a second one (the work alone), then torch._dynamo's compile-time breakdown.
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402

import torch  # noqa: E402

import kernels  # noqa: E402
from kernels import fused  # noqa: E402

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def main(argv: "list[str] | None" = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels.startup", description=__doc__.split("\n")[0])
    p.add_argument("--types", nargs="+", default=TYPES)
    p.add_argument("--rows", type=int, default=7168)
    p.add_argument("--cols", type=int, default=2048)
    p.add_argument("--imatrix", action="store_true")
    a = p.parse_args(argv)
    t_import = time.perf_counter() - T0
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(a.rows, a.cols, generator=g) * 0.02).to(torch.bfloat16)
    im = torch.rand(a.cols, generator=g) + 0.5 if a.imatrix else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tensor {a.rows}x{a.cols} bf16; "
          f"imatrix {'yes' if im is not None else 'no'}; imports {t_import:.1f} s")
    print(f"{'type':6} {'first s':>8} {'again s':>8} {'since start s':>14}")
    for name in a.types:
        t0 = time.perf_counter()
        kernels.quantize(x, name, im)
        t1 = time.perf_counter()
        kernels.quantize(x, name, im)
        t2 = time.perf_counter()
        print(f"{name:6} {t1 - t0:8.2f} {t2 - t1:8.2f} {t2 - T0:14.1f}", flush=True)
    print(f"compiled path: {fused.active(x)}; total {time.perf_counter() - T0:.1f} s")
    from torch._dynamo.utils import compile_times

    print(compile_times(repr="str", aggregate=True))


if __name__ == "__main__":
    main()
