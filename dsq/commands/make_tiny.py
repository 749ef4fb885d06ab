"""`dsq make-tiny`: write a tiny random DeepSeek-V3-architecture checkpoint for demos and tests."""
from __future__ import annotations

import argparse
import dataclasses

help = "Write a tiny random DeepSeek-V3-architecture checkpoint (safetensors, config.json, tokenizer)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from quant.tiny import TinySpec

    parser.add_argument("dir", help="output directory (created)")
    parser.add_argument("--fp8", action="store_true", help="store the linear layers in FP8 with 128x128 scales, as DeepSeek does")
    parser.add_argument("--v4", action="store_true",
                        help="a tiny DeepSeek-V4 instead (quant.tiny_v4: FP8 + E8M0 scales, MXFP4 experts; other options ignored)")
    defaults = TinySpec()
    for f in dataclasses.fields(TinySpec):
        if f.name in ("n_merges", "max_shard_bytes"):
            continue
        default = getattr(defaults, f.name)
        kind = type(default) if default is not None else int
        if kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), action="store_true", default=default)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, metavar="N")


def run(args: argparse.Namespace) -> int:
    from quant.tiny import TinySpec, make_tiny

    if args.v4:
        from quant.tiny_v4 import make_tiny_v4

        print(make_tiny_v4(args.dir))
        return 0
    spec = TinySpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TinySpec) if hasattr(args, f.name)})
    out = make_tiny(args.dir, spec, fp8=args.fp8)
    print(out)
    return 0
