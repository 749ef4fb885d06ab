"""`dsq fit`: memory needed to serve a variant (weights + KV cache + compute) and whether it fits.

Works without weights: from a config.json (a path or a shipped model name) and a recipe, or
for a registered variant by asking the registry's /api/fit. The formula is in quant/fit.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

help = "Will a quantized model fit the GPUs? Weights + KV cache + compute buffers, per GPU and in total."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--variant", help="a registered variant: id or model:QUANT[@tag] (asks the registry API)")
    source.add_argument("--config", help="config.json path, or a shipped model name such as DeepSeek-R1")
    parser.add_argument("--recipe", help="recipe name (Q4_K_M, DQ3_K_M, …) or recipe JSON path; with --config")
    parser.add_argument("--hardware", action="append",
                        help="profile (8xH100-80GB, 8xA100-80GB, 8xA100-40GB, 8xAscend910B-64GB) or custom:4x48GB; "
                             "repeatable; default: every profile")
    parser.add_argument("--context", type=int, default=32768, help="context length in tokens (default 32768)")
    parser.add_argument("--kv-cache", choices=["mla", "full"], default="mla",
                        help="mla: compressed latent cache (llama.cpp with MLA); full: per-head K and V")
    parser.add_argument("--cache-type", choices=["f16", "q8_0"], default="f16", help="KV cache element type")
    parser.add_argument("--ubatch", type=int, default=None,
                        help="llama.cpp -ub (physical batch); default 512, or the context if shorter")
    parser.add_argument("--flash-attn", action="store_true", help="no attention-score buffer (llama.cpp -fa)")
    parser.add_argument("--registry", default=os.environ.get("DSQ_REGISTRY_URL", "http://127.0.0.1:8000"),
                        help="registry base URL for --variant (env DSQ_REGISTRY_URL)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per hardware profile)")


def _load_config(value: str) -> dict[str, Any]:
    path = Path(value)
    if path.is_dir():
        path = path / "config.json"
    if path.exists():
        return json.loads(path.read_text())
    from quant import configs

    return configs.load_config(value)


def _local(args: argparse.Namespace, hardware: list[str]) -> list[dict[str, Any]]:
    from quant import fit, recipes

    if not args.recipe:
        raise ValueError("--config needs --recipe")
    config = _load_config(args.config)
    recipe = recipes.load_recipe(args.recipe) if args.recipe.endswith(".json") else recipes.get_recipe(args.recipe)
    tensors = fit.tensor_bytes(config, recipe)
    out = []
    for spec in hardware:
        result = fit.fit(config, tensors, fit.parse_hardware(spec), args.context, kv_cache=args.kv_cache,
                         cache_type=args.cache_type, n_ubatch=args.ubatch, flash_attn=args.flash_attn)
        out.append(dict(result.to_json(), model=args.config, recipe=recipe.name))
    return out


def _remote(args: argparse.Namespace, hardware: list[str]) -> list[dict[str, Any]]:
    out = []
    for spec in hardware:
        params = {"variant": args.variant, "hardware": spec, "context": args.context, "kv_cache": args.kv_cache,
                  "cache_type": args.cache_type, "flash_attn": int(args.flash_attn)}
        if args.ubatch is not None:
            params["ubatch"] = args.ubatch
        query = urllib.parse.urlencode(params)
        url = f"{args.registry.rstrip('/')}/api/fit?{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                out.append(json.load(response))
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            try:
                body = json.loads(body)["error"]
            except (ValueError, KeyError):
                pass
            raise ValueError(f"registry said {exc.code}: {body}") from None
    return out


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "recipe", "hardware", "context", "kv", "weights GiB", "KV GiB", "compute GiB", "total GiB",
            "per-GPU GiB", "GPU GiB", "fits"]
    lines = [head]
    for r in rows:
        lines.append([str(r.get("model", "")), str(r.get("recipe", "")), r["hardware"]["name"], str(r["context"]),
                      f"{r['kv_cache']}/{r['cache_type']}", _gib(r["weights_bytes"]), _gib(r["kv_bytes"]),
                      _gib(r["compute_bytes"]), _gib(r["total_bytes"]), _gib(r["per_gpu_bytes"]),
                      _gib(r["gpu_bytes"]), "yes" if r["fits"] else "NO"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def run(args: argparse.Namespace) -> int:
    from quant import fit

    hardware = args.hardware or list(fit.HARDWARE)
    try:
        rows = _remote(args, hardware) if args.variant else _local(args, hardware)
    except (ValueError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dsq fit: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=1))
    else:
        print(format_table(rows))
    return 0 if all(r["fits"] for r in rows) or len(rows) > 1 else 1
