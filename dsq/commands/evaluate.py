"""dsq evaluate: perplexity of a GGUF, and KL divergence against a reference GGUF."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

help = "Perplexity (llama-perplexity's method) and KL divergence of a GGUF variant against a reference."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the variant GGUF")
    parser.add_argument("--reference", type=Path, help="the reference GGUF (e.g. F16/BF16); omit for PPL only")
    parser.add_argument("--text", type=Path, help="evaluation text file; default: CPython's pydoc topics")
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--windows", type=int, default=None, help="at most this many windows")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=48, help="reference log-probs kept per position")
    parser.add_argument("--cache-dir", type=Path, default=Path("var/eval-reference"))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from quant.eval.kld import evaluate_variant
    from quant.eval.model import EvalSettings
    from quant.eval.perplexity import perplexity
    from quant.progress import Printer
    from quant.eval.reference import cached_reference
    from quant.eval.text import topics_text

    text = args.text.read_text() if args.text else topics_text()
    settings = EvalSettings(n_ctx=args.n_ctx, max_windows=args.windows, threads=args.threads,
                            n_gpu_layers=args.n_gpu_layers)
    if args.reference is None:
        result = perplexity(args.model, text, settings, reporter=Printer())
        data = {k: v for k, v in vars(result).items() if k != "running_ppl"}
    else:
        ref = cached_reference(args.reference, text, args.cache_dir, settings, args.top_k, reporter=Printer())
        data = evaluate_variant(args.model, text, ref, settings, reporter=Printer()).as_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key}: {value}")
    return 0
