"""dsq demo: the whole flow on one machine (quantize → benchmark → approve → publish → pull by tag)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

help = "run the main job end to end on the embedded default (SQLite), then keep the services up"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="registry port on 127.0.0.1 (default 8000)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the demo keeps its data (default var/demo)")
    parser.add_argument("--no-wait", action="store_true", help="stop the services when the main job is done")


def run(args: argparse.Namespace) -> int:
    from dsq import demo

    try:
        return demo.run(port=args.port, workdir=args.workdir, wait=not args.no_wait)
    except KeyboardInterrupt:
        print("\n[demo] stopped", flush=True)
        return 0
    except RuntimeError as exc:  # an API call refused, a job failed, a service that did not start
        print(f"[demo] failed: {exc}", file=sys.stderr, flush=True)
        return 1
