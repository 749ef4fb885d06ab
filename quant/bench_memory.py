"""Peak memory of a conversion vs. the bound: 2.5 x the largest tensor in float32 + 1 GiB.

    python -m quant.bench_memory [--layers 24] [--hidden 1024] [--vocab 32768] [--recipe Q8_0]

Writes a synthetic many-layer DeepSeek-V3-architecture checkpoint (quant.tiny, BF16
safetensors, larger than the bound itself), converts it in a child process, and prints the
child's peak RSS (VmHWM) next to the bound and to the model's size. Exit status 1 when the
peak is over the bound. ``--json`` prints the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GiB = 1 << 30
MiB = 1 << 20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(src: str, out: str, recipe: str, device: str) -> None:
    """Runs in the measured process: imports, baseline, convert, peak."""
    import torch  # noqa: F401  (imports count in the baseline, as in any real run)

    import kernels  # noqa: F401
    from quant.convert import convert

    baseline = _status_kib("VmRSS") * 1024
    t = time.monotonic()
    res = convert(src, out, recipe, device=device)
    print(json.dumps({
        "baseline_rss": baseline,
        "peak_rss": _status_kib("VmHWM") * 1024,
        "seconds": time.monotonic() - t,
        "output_bytes": sum(f.size for f in res.files),
        "tensors": len(res.tensors),
    }))


def measure(src: Path, out: Path, recipe: str, device: str = "cpu") -> dict:
    from quant.sources import HFSource

    s = HFSource(src)
    largest = max(math.prod(t.shape) for t in s.tensors.values()) * 4
    source_bytes = sum(t.nbytes for t in s.tensors.values())
    f32_bytes = sum(math.prod(t.shape) for t in s.tensors.values()) * 4
    proc = subprocess.run(
        [sys.executable, "-m", "quant.bench_memory", "--child", str(src), str(out), recipe, device],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"conversion failed:\n{proc.stderr[-4000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    bound = 2.5 * largest + GiB
    return {
        **got,
        "largest_tensor_f32": largest,
        "source_bytes": source_bytes,
        "model_f32_bytes": f32_bytes,
        "bound": bound,
        "within_bound": got["peak_rss"] <= bound,
        "recipe": recipe,
    }


def main(argv: "list[str] | None" = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(*argv[1:5])
        return 0
    ap = argparse.ArgumentParser(prog="python -m quant.bench_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--moe-intermediate", type=int, default=512)
    ap.add_argument("--recipe", default="Q8_0")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", help="where to write the checkpoint and output (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint and output")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from quant.tiny import TinySpec, make_tiny

    spec = TinySpec(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
        moe_intermediate_size=args.moe_intermediate, num_hidden_layers=args.layers, num_attention_heads=8,
        q_lora_rank=args.hidden // 2, kv_lora_rank=256, n_routed_experts=args.experts,
        num_experts_per_tok=min(4, args.experts), n_group=min(4, args.experts), topk_group=min(2, args.experts),
        max_shard_bytes=512 * MiB, num_nextn_predict_layers=1,
    )
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dsq-bench-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.monotonic()
        src = make_tiny(work / "model", spec)
        made = time.monotonic() - t
        r = measure(src, work / "out", args.recipe, args.device)
        r["generate_seconds"] = made
        r["layers"] = args.layers
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            import torch

            print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.machine()}")
            print(f"model: {args.layers} layers, {r['source_bytes'] / GiB:.2f} GiB BF16 on disk, "
                  f"{r['model_f32_bytes'] / GiB:.2f} GiB in float32; largest tensor {r['largest_tensor_f32'] / MiB:.0f} MiB f32")
            print(f"convert -> {args.recipe}: {r['tensors']} tensors, {r['output_bytes'] / GiB:.2f} GiB out, {r['seconds']:.1f} s")
            print(f"peak RSS {r['peak_rss'] / MiB:,.0f} MiB (after imports {r['baseline_rss'] / MiB:,.0f} MiB); "
                  f"bound 2.5 x {r['largest_tensor_f32'] / MiB:.0f} MiB + 1 GiB = {r['bound'] / MiB:,.0f} MiB "
                  f"-> {'within' if r['within_bound'] else 'OVER'} ({r['peak_rss'] / r['bound']:.2f} of the bound; "
                  f"the whole model in f32 would be {r['model_f32_bytes'] / r['bound']:.1f} x the bound)")
        return 0 if r["within_bound"] else 1
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
