"""The `sluice` command: the app by default, plus headless subcommands.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`run_command(args, config) -> int`; this file only wires them up, loads the config, and turns
bad input into a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.config import ConfigError, load_config

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `sluice` and its subcommands."""
    from engine import headless

    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Back-pressure for LLM token streams, with a live app to tune it.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: ./config.toml, or built-in defaults if it is absent)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run sessions headless and print a summary")
    run.add_argument("--config", metavar="PATH", dest="sub_config", help=argparse.SUPPRESS)
    headless.add_arguments(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sluice` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config_path = getattr(args, "sub_config", None) or args.config
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        sys.stderr.write(f"sluice: {exc}\n")
        return EXIT_USAGE
    from engine import headless

    if args.command == "run":
        return headless.run_command(args, config)
    # No subcommand: until the app lands, run the demo headless.
    defaults = parser.parse_args(["run"])
    return headless.run_command(defaults, config)


if __name__ == "__main__":
    sys.exit(main())
