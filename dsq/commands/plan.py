"""`dsq plan`: the tensor types and file size a recipe gives a model, from its config.json.

With --estimate, the time plan instead of the tensor list: how long the conversion takes on a
given host and the disk it needs (quant.estimate, from the measured throughputs in
quant/data/throughput.json)."""
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
    est = parser.add_argument_group("time plan (--estimate)")
    est.add_argument("--estimate", action="store_true",
                     help="print the expected duration and disk needs on a host instead of the tensor list")
    est.add_argument("--device", choices=["cpu", "cuda"], default="cuda", help="where the codecs run (default cuda)")
    est.add_argument("--gpus", type=int, default=1, help="GPUs per host, one codec each (cuda; default 1)")
    est.add_argument("--threads", type=int, default=1, help="CPU threads of the codec (cpu; default 1)")
    est.add_argument("--hosts", type=int, default=1, help="hosts sharing the job, each with its own disk (default 1)")
    est.add_argument("--read-rate", type=_size, default=None,
                     help="disk read rate per host, bytes/s (e.g. 2G = 2 GiB/s, the default: assumed, not measured)")
    est.add_argument("--write-rate", type=_size, default=None,
                     help="disk write rate per host, bytes/s (default 1G: assumed, not measured)")
    est.add_argument("--source-bytes", type=_size, help="bytes the reader pulls (default: counted from config.json)")
    est.add_argument("--source-dtype", choices=["FP8", "BF16", "F16", "F32"],
                     help="the checkpoint's storage (default: FP8 when config.json says so, else its torch_dtype)")
    est.add_argument("--throughput", action="append", default=[], metavar="TYPE=RATE",
                     help="weights/s of a type on one device (e.g. Q3_K=85M), over the measured table; repeatable")
    est.add_argument("--shard-size", type=_size, default=None,
                     help="split files of at most this size, one shard job each: how a job spreads over GPUs and "
                          "hosts (default: the service's DSQ_SHARD_BYTES, 40G; 0: one file, one device)")
    est.add_argument("--no-tensor-cache", action="store_true",
                     help="as `dsq quantize` runs (no work/…/tensors copy); default: as a job runs")


def _size(value: str) -> int:
    from dsq.commands.quantize import _size as size

    return size(value)


def _weights_rate(value: str) -> float:
    """85M, 1.5G, 2e8: weights per second (decimal units: weights are not bytes)."""
    units = {"K": 1e3, "M": 1e6, "G": 1e9}
    v = value.strip().upper()
    return float(v[:-1]) * units[v[-1]] if v and v[-1] in units else float(v)


def _overrides(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        qtype, sep, rate = item.partition("=")
        if not sep:
            raise ValueError(f"--throughput {item!r}: expected TYPE=RATE, e.g. Q3_K=85M")
        try:
            out[qtype.strip().upper()] = _weights_rate(rate)
        except (ValueError, KeyError):
            raise ValueError(f"--throughput {item!r}: {rate!r} is not a rate (weights/s, e.g. 85M)") from None
    return out


def _shard_bytes(value: "int | None") -> "int | None":
    """--shard-size, else what the service splits at (dsq.settings.DSQ_SHARD_BYTES); 0: one file."""
    if value is None:
        from dsq.settings import DSQ_SHARD_BYTES

        return DSQ_SHARD_BYTES
    return value or None


def _estimate(args: argparse.Namespace, config: dict[str, Any], p: Any) -> Any:
    from quant import estimate as est

    table = est.ThroughputTable.load().with_overrides(_overrides(args.throughput))
    host = est.Host(device=args.device, gpus=args.gpus, threads=args.threads, hosts=args.hosts,
                    read_rate=args.read_rate or est.DEFAULT_READ_RATE,
                    write_rate=args.write_rate or est.DEFAULT_WRITE_RATE,
                    tensor_cache=not args.no_tensor_cache, shard_bytes=_shard_bytes(args.shard_size))
    if args.source_bytes:
        read, note = args.source_bytes, "given on the command line"
    else:
        read, note = est.source_bytes(config, args.source_dtype)
    return est.estimate_plan(p, read, host, table, source_note=note)


def _print_estimate(p: Any, e: Any) -> None:
    from quant.estimate import duration

    print(f"recipe {p.recipe}, {p.arch}, {p.n_params / 1e9:.3f} B weights -> {p.total_bytes / 1e9:.2f} GB "
          f"({p.total_bytes / 2**30:.2f} GiB, {p.bits_per_weight:.3f} bpw)")
    print(f"host: {e.host.describe()}\n")
    print(f"{'stage':<6} {'time':>12}  what")
    for s in e.stages:
        mark = "  <- bound" if s is e.bound else ""
        print(f"{s.name:<6} {duration(s.seconds):>12}  {s.detail}{mark}")
    print(f"\nend to end: {e.summary()} (read, codec and write overlap)")
    if e.split_note:
        print(f"({e.split_note})")
    print("\nper type, the codec on one device:")
    sources: list[str] = []
    for t in e.types:
        if t.rate is None:
            print(f"  {t.type:>5} {t.weights / 1e9:9.3f} B weights  no measurement on {e.host.device}"
                  + (f" at {e.host.threads} thread(s)" if e.host.device == "cpu" else ""))
            continue
        if t.rate.describe() not in sources:
            sources.append(t.rate.describe())
        print(f"  {t.type:>5} {t.weights / 1e9:9.3f} B weights  {t.rate.weights_per_s / 1e6:8.1f} Mw/s  "
              f"{duration(t.seconds):>12}  [{sources.index(t.rate.describe()) + 1}]")
    for i, source in enumerate(sources, 1):
        print(f"  [{i}] {source}")
    d = e.disk
    print(f"\ndisk: source {d.source_bytes / 1e9:.1f} GB read ({e.source_note}); output {d.output_bytes / 1e9:.1f} GB"
          + (f" + tensor cache {d.tensor_cache_bytes / 1e9:.1f} GB" if d.tensor_cache_bytes else "")
          + f": {d.free_bytes / 1e9:.1f} GB free beside the source")


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
    if args.estimate and args.all:
        print("dsq plan: --estimate plans one recipe, not --all", file=sys.stderr)
        return 2
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
    estimate = None
    if args.estimate:
        from quant.estimate import EstimateError

        try:
            estimate = _estimate(args, config, p)
        except (EstimateError, ValueError) as e:
            print(f"dsq plan: {e}", file=sys.stderr)
            return 2
    if args.json:
        data = p.to_dict()
        if estimate is not None:
            data["estimate"] = estimate.to_dict()
        print(json.dumps(data, indent=1))
    elif estimate is not None:
        _print_estimate(p, estimate)
    else:
        _print_table(p)
    return 0
