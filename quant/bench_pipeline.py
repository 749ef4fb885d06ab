"""`dsq quantize` against llama.cpp's two-step route, at DeepSeek-V3's real tensor dimensions.

    python -m quant.bench_pipeline [--small] [--threads N] [--recipe Q4_K_M] [--workdir DIR] [--json]

Writes (once, then reuses) a BF16 safetensors checkpoint with DeepSeek-V3's real shapes —
hidden 7168, 128 heads, MLA ranks 1536/512, routed experts of 2048, a dense FFN of 18432 —
but few layers and experts: one dense block and one MoE block of 8 routed experts plus the
shared one (``--small``: the MoE block alone). Then, each in its own process with the same
number of threads:

1. llama.cpp's route, step one (not timed against us): the BF16 GGUF, written by
   ``dsq quantize --recipe BF16`` (llama.cpp's converter writes the same tensors);
2. llama.cpp's route, step two: ``llama-quantize BF16.gguf OUT.gguf <recipe> <threads>``
   (built by scripts/build-llama-tools.sh; while it is not built, llama_model_quantize — the
   function llama-quantize calls — from llama-cpp-python's libllama, same vendored source);
3. ``dsq quantize SRC --recipe <recipe>`` from the safetensors.

It checks that every tensor of the two quantized files has the same name, type and bytes,
and prints wall time, CPU time, cores busy (CPU / wall) and peak RSS of each process, and the
ratio of llama-quantize's wall time to dsq's. The compiled kernels are warmed first (in a
throwaway process) so that neither side pays a one-time compile; a new process still pays
whatever it costs to load them. Exit status 1 when the bytes differ.

Eight routed experts on purpose: llama.cpp keys type rules on ``n_expert == 8`` for every
architecture, and the recipes must reproduce them for the bytes to match.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
REPO_ROOT = Path(__file__).resolve().parent.parent


def spec_for(small: bool):
    """DeepSeek-V3's dimensions with few layers and experts (see the module docstring)."""
    from quant.tiny import TinySpec

    return TinySpec(
        vocab_size=1024, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
        num_hidden_layers=1 if small else 2, first_k_dense_replace=0 if small else 1,
        num_attention_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=8, num_experts_per_tok=8, n_group=4, topk_group=2,  # llama.cpp: groups < experts
        n_shared_experts=1, num_nextn_predict_layers=0, max_shard_bytes=1 * GiB,
    )


def checkpoint(work: Path, small: bool) -> Path:
    """The checkpoint for this spec, written only if the one in work/ was made from another."""
    from quant.tiny import make_tiny

    spec = spec_for(small)
    out = work / ("model-small" if small else "model")
    stamp = out / "dsq-tiny.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == asdict(spec):
        return out
    t = time.monotonic()
    make_tiny(out, spec)
    print(f"wrote the checkpoint in {time.monotonic() - t:.1f} s", file=sys.stderr)
    return out


# llama-quantize's main() in a few lines: llama_model_quantize from llama-cpp-python's libllama,
# built from the same vendored llama.cpp (used only while the tools are not built)
_LLAMA_QUANTIZE_PY = """
import ctypes, sys, llama_cpp
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12,
          "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}
src, dst, ftype, threads = sys.argv[1:5]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.nthread = FTYPES[ftype], int(threads)
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))
"""


def llama_quantize() -> "tuple[list[str], str]":
    """The command that runs llama.cpp's quantizer (args appended: src dst type threads) and its label:
    llama-quantize from the shared build, else llama_model_quantize through llama-cpp-python."""
    tools = Path(os.environ.get("LLAMA_TOOLS_DIR", Path.home() / ".cache" / "dsq" / "llama-tools"))
    found = sorted(tools.glob("build-*/bin/llama-quantize"))
    if found:
        return [str(found[-1])], "llama-quantize"
    print("llama-quantize is not built (scripts/build-llama-tools.sh; not started here: it takes a while and a "
          "build may be running): timing llama_model_quantize, the function it calls, through llama-cpp-python",
          file=sys.stderr)
    return [sys.executable, "-c", _LLAMA_QUANTIZE_PY], "llama_model_quantize (libllama)"


def _rusage_run(cmd: list[str], env: "dict | None" = None) -> dict:
    """Run cmd: wall, CPU (user + system: the process and the children it waited for) and peak
    RSS, from the child's own rusage (os.wait4).

    The peak comes from GNU time's %M where /usr/bin/time exists: a child forked from this
    process starts from this process's high-water mark (Linux keeps it across exec), so its
    own ru_maxrss reports at least the memory this process used to write the checkpoint; the
    command forked from the small `time` process does not. Without GNU time, the inherited
    figure is reported."""
    timer = Path("/usr/bin/time")
    peak_file = None
    if timer.exists():
        fd, peak_file = tempfile.mkstemp(prefix="dsq-bench-rss-")
        os.close(fd)
        cmd = [str(timer), "-f", "%M", "-o", peak_file] + list(cmd)
    t = time.monotonic()
    try:
        with open(os.devnull, "wb") as null:
            proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT)
            err = proc.stderr.read()  # type: ignore[union-attr]
            _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
        peak = ru.ru_maxrss * 1024
        if peak_file is not None:
            lines = Path(peak_file).read_text().split()
            peak = int(lines[-1]) * 1024  # KiB
    finally:
        if peak_file is not None:
            os.unlink(peak_file)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss": peak}


def tensors_of(path: Path) -> dict[str, tuple[str, bytes]]:
    import gguf

    r = gguf.GGUFReader(path)
    return {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in r.tensors}


def compare(ours: Path, theirs: Path) -> list[str]:
    """Differences between two GGUF files' tensors (name, type, bytes); [] when identical."""
    a, b = tensors_of(ours), tensors_of(theirs)
    diffs = [f"{n}: only in {'dsq' if n in a else 'llama.cpp'}" for n in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        (ta, da), (tb, db) = a[name], b[name]
        if ta != tb:
            diffs.append(f"{name}: dsq {ta}, llama.cpp {tb}")
        elif da != db:
            first = next(i for i in range(min(len(da), len(db))) if da[i] != db[i]) if len(da) == len(db) else -1
            diffs.append(f"{name} {ta}: bytes differ (first at byte {first})")
    return diffs


def warm_kernels(types: list[str], env: dict) -> None:
    """Compile (or load from the Inductor cache) the kernels of `types` in a throwaway process."""
    code = ("import torch, kernels\n"
            f"for t in {types!r}:\n"
            "    kernels.quantize(torch.randn(1024, 2048), t)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO_ROOT)


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quant.bench_pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="one MoE block instead of a dense and a MoE block")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both (default: all CPUs)")
    ap.add_argument("--recipe", default="Q4_K_M")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "dsq" / "bench-pipeline"),
                    help="where the checkpoint is kept between runs (outputs are removed after the run)")
    ap.add_argument("--dsq-args", default="", help="extra arguments for dsq quantize (e.g. '--no-stats')")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = checkpoint(work, args.small)
    tool, tool_name = llama_quantize()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": str(args.threads)}
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    dsq = [sys.executable, "-m", "dsq.cli", "quantize", str(src), "--threads", str(args.threads)]
    try:
        from quant.convert import plan_conversion

        plan = plan_conversion(src, args.recipe)
        types = sorted({t.info.type for t in plan.tensors} - {"F32", "F16", "BF16"})
        warm_kernels(types, env)
        results: dict[str, dict] = {}
        results["dsq BF16 GGUF (llama.cpp route, step 1)"] = _rusage_run(
            dsq + ["--recipe", "BF16", "--out", str(runs / "bf16"), "--name", "model-BF16"], env)
        bf16 = runs / "bf16" / "model-BF16.gguf"
        results[f"{tool_name} {args.recipe} {args.threads} (from the BF16 GGUF)"] = _rusage_run(
            tool + [str(bf16), str(runs / "llama.gguf"), args.recipe, str(args.threads)], env)
        extra = f" {args.dsq_args}" if args.dsq_args else ""
        results[f"dsq quantize --recipe {args.recipe}{extra} (from safetensors)"] = _rusage_run(
            dsq + ["--recipe", args.recipe, "--out", str(runs / "dsq"), "--name", "model"] + args.dsq_args.split(), env)
        diffs = compare(runs / "dsq" / "model.gguf", runs / "llama.gguf")
        out_bytes = (runs / "dsq" / "model.gguf").stat().st_size
    finally:
        shutil.rmtree(runs, ignore_errors=True)

    names = list(results)
    ratio = results[names[1]]["wall_s"] / results[names[2]]["wall_s"]
    cpu_ratio = results[names[1]]["cpu_s"] / results[names[2]]["cpu_s"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "checkpoint": f"{plan.n_params:,} weights, {'1 MoE block' if args.small else '1 dense + 1 MoE block'}, "
                      "8 routed experts + 1 shared, BF16 safetensors",
        "recipe": args.recipe, "threads": args.threads, "output_bytes": out_bytes,
        "runs": results, "identical": not diffs, "differences": diffs,
        "ratio_llama_over_dsq": ratio, "cpu_ratio_llama_over_dsq": cpu_ratio,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        import torch

        print(f"{report['machine']}, torch {torch.__version__}")
        print(f"checkpoint: {report['checkpoint']}; {args.recipe} output {out_bytes / MiB:,.1f} MiB; {args.threads} threads")
        print(f"| {'run':58s} | {'wall s':>7s} | {'CPU s':>7s} | {'cores busy':>10s} | {'peak RSS MiB':>12s} |")
        print(f"|{'-' * 60}|{'-' * 8}:|{'-' * 8}:|{'-' * 11}:|{'-' * 13}:|")
        for name, r in results.items():
            print(f"| {name:58s} | {r['wall_s']:7.1f} | {r['cpu_s']:7.1f} | {r['cpu_s'] / r['wall_s']:10.2f} | "
                  f"{r['peak_rss'] / MiB:12,.0f} |")
        print(f"{tool_name} / dsq quantize: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x; quantized tensors "
              + ("byte-identical" if not diffs else f"DIFFER in {len(diffs)} tensors: " + "; ".join(diffs[:8])))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
