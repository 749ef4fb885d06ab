"""The K-quant scale search alone: kernels.native's C search against the compiled twin it replaced.

    python -m benchmarks.kernels.search [--rows 2048] [--cols 7168] [--repeat 5]

One thread, one process, side by side on the same input: the sub-blocks of a DeepSeek-V3 expert
slice (2048x7168 by default, Gaussian * 0.02 as real weights are scaled) in Q4_K's and Q5_K's
reference searches, Q4_K's imatrix search and Q2_K's. Prints M weights/s of each, the ratio, and
whether their outputs have the same bits. A kernel figure, not the pipeline's: that is
quant.bench_pipeline.
"""
from __future__ import annotations

import argparse
import time

import torch

from kernels import native
from kernels.blocks import positions_major
from kernels.search import qkx

# name: (sub-block size, nmax, rmin, rdelta, nstep, use_mad), as the codecs call make_qkx
SEARCHES = {
    "Q4_K": (32, 15, -1.0, 0.1, 20, False),
    "Q5_K": (32, 31, -0.5, 0.1, 15, False),
    "Q4_K imatrix": (32, 15, -0.9, 0.05, 36, False),
    "Q2_K": (16, 3, -0.5, 0.1, 15, True),
}


def _best(fn, repeat: int) -> float:
    fn()  # loads or builds the kernels; not timed
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: "list[str] | None" = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels.search", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--cols", type=int, default=7168)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.randn(a.rows, a.cols, generator=torch.Generator().manual_seed(0)) * 0.02
    print(f"torch {torch.__version__}, 1 thread; {a.rows}x{a.cols} weights; best of {a.repeat}")
    print(f"{'search':14} {'C Mw/s':>8} {'compiled Mw/s':>14} {'ratio':>6}  same bits")
    for name, (n, nmax, rmin, rdelta, nstep, use_mad) in SEARCHES.items():
        xt = positions_major(x.reshape(-1, 256), n)
        wt = xt.abs() + xt.pow(2).mean(dim=0).sqrt()
        args = (xt, wt, nmax, rmin, rdelta, nstep, use_mad)
        ours = native.make_qkx2(*args)
        if ours is None:
            raise SystemExit("the C search is off or did not build (see the kernels.native warning)")
        theirs = qkx._make_qkx_compiled(*args)[:3]
        same = all(torch.equal(o.view(torch.int32), t.view(torch.int32)) for o, t in zip(ours, theirs))
        t_c = _best(lambda: native.make_qkx2(*args), a.repeat)
        t_twin = _best(lambda: qkx._make_qkx_compiled(*args), a.repeat)
        w = xt.numel()
        print(f"{name:14} {w / t_c / 1e6:8.1f} {w / t_twin / 1e6:14.1f} {t_twin / t_c:5.2f}x  {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
