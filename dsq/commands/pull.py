"""dsq pull MODEL:QUANT@TAG --to DIR: download a release's files, resumable and verified."""
from __future__ import annotations

import argparse
import os
import sys

help = "download a release by tag (model:quant@tag) from the registry, resuming and verifying sha256"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", help="model:quant@tag, e.g. deepseek-r1:DQ3_K_M@stable")
    parser.add_argument("--to", required=True, help="directory to put the files in")
    parser.add_argument("--registry", default=os.environ.get("DSQ_REGISTRY", "http://127.0.0.1:8000"),
                        help="registry base URL (default $DSQ_REGISTRY or http://127.0.0.1:8000)")
    parser.add_argument("--token", default=os.environ.get("DSQ_TOKEN"), help="registry API token (default $DSQ_TOKEN)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from dsq.pull import PullError, pull

    try:
        result = pull(args.ref, args.to, args.registry, args.token, show_progress=not args.quiet)
    except PullError as exc:
        print(f"dsq pull: {exc}", file=sys.stderr)
        return 1
    for path in result.files:
        print(path)
    if result.skipped:
        print(f"{len(result.skipped)} file(s) already present and verified", file=sys.stderr)
    return 0
