"""The `dsq` command: every module in dsq.commands is a subcommand."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import dsq.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsq", description="DeepSeek quantization registry and tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(dsq.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"dsq.commands.{info.name}")
        command = sub.add_parser(info.name.replace("_", "-"), help=module.help, description=module.help)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dsq plan … | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
