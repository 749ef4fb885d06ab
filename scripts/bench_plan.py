"""Benchmark: planning DeepSeek-V3 (671B) from config.json, against the 2 s target.

    .venv/bin/python scripts/bench_plan.py
"""
from __future__ import annotations

import platform
import sys
import time

import quant.planner
from quant.configs import load_config
from quant.recipes import builtin_names

TARGET_S = 2.0


def main() -> int:
    config = load_config("DeepSeek-V3")
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'})")
    t0 = time.perf_counter()
    p = quant.planner.plan(config, "Q4_K_M")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in builtin_names():
        quant.planner.plan(config, name)
    each = (time.perf_counter() - t0) / len(builtin_names())
    print(f"{len(p.tensors)} tensors, {p.n_params / 1e9:.1f} B weights")
    print(f"first plan (recipe parse included): {first * 1000:.1f} ms  = {first / TARGET_S:.3f} of the {TARGET_S:.0f} s target")
    print(f"per plan, {len(builtin_names())} built-ins: {each * 1000:.1f} ms = {each / TARGET_S:.3f} of target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
