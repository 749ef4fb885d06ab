"""Build the ahead-of-time packages (kernels.aot) of every compiled type now, rather than on first use.

    python -m kernels.aot_build build     # ~4 minutes on two cores; nothing to do when they exist
    python -m kernels.aot_build path      # where this torch, these kernels and this CPU keep them

(Its own module, not kernels.aot's: it quantizes through kernels.api, which imports kernels.aot.)
"""
from __future__ import annotations

import argparse
import logging
import time

import torch

import kernels
from kernels import aot, fused
from kernels.codecs import CODECS


def build(rows: int = 512, cols: int = 4096) -> None:
    """One quantize per compiled type, with and without an imatrix, of a tensor big enough
    for the compiled path: every package those calls use is found or built."""
    rows = max(rows, -(-fused.MIN_WEIGHTS // cols))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=g) * 0.02
    im = torch.rand(cols, generator=g) + 0.5
    for name, codec in CODECS.items():
        if codec.compiled:
            t0 = time.perf_counter()
            kernels.quantize(x, name)
            kernels.quantize(x, name, im)
            print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv: "list[str] | None" = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kernels.aot_build", description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["build", "path"])
    a = p.parse_args(argv)
    if a.command == "path":
        print(aot.cache_dir())
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build()
    print(f"packages in {aot.cache_dir()}")


if __name__ == "__main__":
    main()
