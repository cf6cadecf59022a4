"""The `sluice` command: the app by default, plus headless subcommands.

Each subcommand lives in its own module exposing `HELP` (one line), `add_arguments(parser)`
and `run_command(args, config) -> int`; this file only wires them up, loads and validates the
config, and turns bad input into a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from sluice import __version__
from sluice.engine.config import ConfigError, load_config

EXIT_USAGE = 2

# Subcommand name -> module implementing it. Modules are imported only when listed here,
# so the headless commands never load Textual.
COMMANDS: dict[str, str] = {
    "run": "sluice.engine.headless",
    "calibrate": "sluice.engine.calibrate_cmd",
    "bench": "sluice.bench.cli",
    "check": "sluice.engine.check",
    "monitor": "sluice.tui.monitor",
}


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an option it does not know is its own error, shown with its
    own usage (`sluice run --bogus` prints `usage: sluice run ...`), exit code 2."""

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `sluice` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="sluice",
        description=(
            "Back-pressure for LLM token streams, with a live app to tune it. "
            "With no COMMAND, opens the app on the sessions from the config file."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: ./config.toml, or built-in defaults if it is absent)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="[COMMAND]", parser_class=_SubcommandParser
    )
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        # `sluice run --config X` works as well as `sluice --config X run`.
        sub.add_argument("--config", metavar="PATH", dest="sub_config", help="config file")
        module.add_arguments(sub)
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
    if args.command is not None:
        module = importlib.import_module(COMMANDS[args.command])
        return int(module.run_command(args, config))
    # No subcommand: the live app, keeping the config's demo sessions going.
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("sluice: the app needs a terminal; for a headless run use `sluice run`\n")
        return EXIT_USAGE
    from sluice.tui.app import SluiceApp

    app = SluiceApp(config=config, relax_gc=True)
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
