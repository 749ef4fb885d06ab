"""`dsq quantize`: stream a Hugging Face checkpoint (or a float GGUF) into a quantized GGUF."""
from __future__ import annotations

import argparse
import json
import sys
import time

help = "Convert HF safetensors (BF16/F16/F32/FP8) or a float GGUF to a GGUF with a recipe, tensor by tensor."


def _size(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    v = value.strip().upper().removesuffix("B").removesuffix("I")
    if v and v[-1] in units:
        return int(float(v[:-1]) * units[v[-1]])
    return int(v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="Hugging Face model directory, or a .gguf file (the first of a split set)")
    parser.add_argument("--recipe", required=True, help="built-in recipe (Q4_K_M, DQ3_K_M, F16, ...) or a recipe JSON file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--imatrix", help="importance matrix (llama-imatrix .dat or GGUF format)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the codecs run")
    parser.add_argument("--shard-size", type=_size, help="split files above this size (e.g. 50G), as gguf-split does")
    parser.add_argument("--name", help="output file stem (default: <source name>-<recipe>)")
    parser.add_argument("--source-repo", help="recorded as dsq.source.repo")
    parser.add_argument("--source-revision", help="recorded as dsq.source.revision")
    parser.add_argument("--tokenizer-pre", help="llama.cpp pre-tokenizer name, when tokenizer.json's is not recognised")
    parser.add_argument("--allow-requantize", action="store_true", help="accept quantized GGUF tensors as input")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (types, sizes, files) and stop")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--fresh", action="store_true",
                        help="start from zero instead of resuming what a killed run of the same command finished")
    parser.add_argument("--threads", type=int, help="CPU threads for the codecs (default: torch's, one per core)")
    parser.add_argument("--no-stats", action="store_true", help="skip the per-tensor error statistics")


class ProgressLine:
    """The command line's quant.progress.Reporter: one self-rewriting stderr line (tensor i/N, MiB, rate, ETA).

    It never cancels (Ctrl-C does)."""

    def __init__(self, total_bytes: int, stream=None, min_interval: float = 0.2):
        # sys.stderr looked up now, not when the module was imported: it may have been replaced since
        stream = sys.stderr if stream is None else stream
        self.total_bytes, self.stream, self.min_interval, self.last = total_bytes, stream, min_interval, 0.0
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def report(self, p) -> None:
        now = time.monotonic()
        final = p.index == p.count and bool(p.message)
        if not final and now - self.last < self.min_interval:
            return
        self.last = now
        done = p.fraction * self.total_bytes
        rate = done / max(now - self.started, 1e-9)
        eta = "--:--" if p.eta_s is None else f"{int(p.eta_s) // 60:02d}:{int(p.eta_s) % 60:02d}"
        line = (f"[{p.index}/{p.count}] {100.0 * p.fraction:5.1f}% {done / 2**20:,.1f}/{self.total_bytes / 2**20:,.1f} MiB "
                f"{rate / 2**20:6.1f} MiB/s ETA {eta}  {p.item}")
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def cancelled(self) -> bool:
        return False


def _one_line(e: BaseException) -> str:
    """The error's message on one line (a file or tensor name may hold a newline)."""
    return " ".join(str(e).split("\n"))


def run(args: argparse.Namespace) -> int:
    from quant.convert import ConversionCancelled, execute, plan_conversion

    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))

    try:
        plan = plan_conversion(
            args.src, args.recipe, imatrix=args.imatrix, shard_size=args.shard_size, name=args.name,
            source_repo=args.source_repo, source_revision=args.source_revision, tokenizer_pre=args.tokenizer_pre,
            allow_requantize=args.allow_requantize,
        )
    except (ValueError, OSError, KeyError, RuntimeError) as e:  # SourceError, ImatrixError, RecipeError, ConversionError
        print(f"dsq quantize: {_one_line(e)}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(plan.describe())
        print("files: " + ", ".join(plan.file_names()))
        return 0
    try:
        result = execute(plan, args.out, device=args.device, reporter=ProgressLine(plan.total_bytes),
                         stats=not args.no_stats, resume=not args.fresh)
    except KeyboardInterrupt:
        print("dsq quantize: interrupted; the finished tensors are kept: run the same command again to resume",
              file=sys.stderr)
        return 130
    except ConversionCancelled as e:
        print(f"dsq quantize: {e}", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError) as e:
        print(f"dsq quantize: failed, nothing written: {_one_line(e)}", file=sys.stderr)
        return 1
    for line in result.stale:
        print(f"dsq quantize: {line}", file=sys.stderr)
    if result.resumed:
        print(f"dsq quantize: resumed: {result.resumed} of {len(result.tensors)} tensors kept from a killed run",
              file=sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
    else:
        for f in result.files:
            print(f"{f.path}  {f.size:,} bytes  sha256 {f.sha256}")
        print(f"{len(result.tensors)} tensors, {result.n_params:,} weights, {result.bits_per_weight:.3f} bpw, "
              f"{result.seconds:.1f} s")
    return 0
