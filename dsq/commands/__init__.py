"""One module per `dsq` subcommand: each defines `help`, `add_arguments(parser)` and `run(args) -> int`."""
