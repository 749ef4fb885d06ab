"""`dsq plan`: the tensor types and file size a recipe gives a model, from its config.json."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

help = "Plan a quantized GGUF (tensor types, sizes, bits per weight) from config.json and a recipe."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="config.json path, or the name of a shipped config (e.g. DeepSeek-R1)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--recipe", help="built-in recipe name (e.g. Q4_K_M, DQ3_K_M)")
    which.add_argument("--recipe-file", help="user recipe (JSON); validated, then planned as a dry run")
    which.add_argument("--all", action="store_true", help="one summary line per built-in recipe")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--tokenizer", help="tokenizer.json, for an exact metadata size")
    parser.add_argument("--tokenizer-config", help="tokenizer_config.json (chat template size)")


def _load_config(value: str) -> dict[str, Any]:
    from quant.configs import load_config

    path = Path(value)
    if path.is_file():
        return json.loads(path.read_text())
    return load_config(value)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _print_table(p: Any) -> None:
    width = max(len(t.name) for t in p.tensors)
    print(f"{'tensor':<{width}}  {'shape':>18}  {'type':>5}  {'MiB':>10}")
    for t in p.tensors:
        print(f"{t.name:<{width}}  {_shape(t.shape):>18}  {t.type:>5}  {t.nbytes / 2**20:10.2f}")
    print()
    for qtype, row in p.type_summary().items():
        print(f"{qtype:>5}: {row['tensors']:5d} tensors  {row['weights'] / 1e9:9.3f} B weights  "
              f"{row['bytes'] / 2**30:9.2f} GiB")
    print(f"\nrecipe {p.recipe} (sha256 {p.recipe_sha256[:16]}…), {p.arch}, {p.n_layer} layers, "
          f"{p.n_params / 1e9:.3f} B weights")
    print(f"total {p.total_bytes:,} bytes = {p.total_bytes / 1e9:.2f} GB = {p.total_bytes / 2**30:.2f} GiB, "
          f"{p.bits_per_weight:.3f} bpw")


def run(args: argparse.Namespace) -> int:
    from quant.planner import plan
    from quant.recipes import RecipeError, builtin_names, get_recipe, load_recipe

    try:
        config = _load_config(args.config)
    except (KeyError, OSError, json.JSONDecodeError) as e:
        print(f"dsq plan: cannot read config {args.config!r}: {e}", file=sys.stderr)
        return 2
    tok = {"tokenizer_json": args.tokenizer, "tokenizer_config": args.tokenizer_config}
    try:
        if args.all:
            plans = [plan(config, get_recipe(name), **tok) for name in builtin_names()]
            if args.json:
                print(json.dumps([
                    {k: v for k, v in p.to_dict().items() if k != "tensors"} for p in plans
                ], indent=2))
                return 0
            print(f"{'recipe':<14} {'bytes':>17} {'GB':>9} {'GiB':>9} {'bpw':>6}")
            for p in plans:
                print(f"{p.recipe:<14} {p.total_bytes:>17,} {p.total_bytes / 1e9:9.2f} "
                      f"{p.total_bytes / 2**30:9.2f} {p.bits_per_weight:6.3f}")
            return 0
        if args.recipe_file:
            recipe = load_recipe(args.recipe_file)
        else:
            recipe = get_recipe(args.recipe or "Q4_K_M")
        p = plan(config, recipe, **tok)
    except RecipeError as e:
        print(f"dsq plan: invalid recipe: {e}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as e:
        print(f"dsq plan: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(p.to_json(indent=1))
    else:
        _print_table(p)
    return 0
