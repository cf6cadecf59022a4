"""The `sluice` command: the app by default, plus the commands in COMMANDS.

Each command is a `Command` declared at the end of its own module (cli/command.py says how);
this file lists them once, builds the argument parser from them, loads the config and turns
bad input (`UsageError`, `ConfigError`) into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from sluice import __version__
from sluice.cli import app, attach, bench, calibrate, check, monitor, run, serve
from sluice.cli.command import Command, CommandIO, ExitCode, UsageError, one_line
from sluice.engine.cluster.options import cluster_options
from sluice.engine.config import Config, ConfigError, load_config

__all__ = ["COMMANDS", "build_parser", "main", "run_command"]

# Every command, in the order `sluice --help` lists them. A command module imports nothing
# heavy at its top (Textual, the SDKs, the benchmarks load when its `run` does), so building
# the parser stays quick and `sluice run` never loads the app.
COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    calibrate.COMMAND,
    bench.COMMAND,
    check.COMMAND,
    monitor.COMMAND,
    serve.COMMAND,
    attach.COMMAND,
)
APP = app.COMMAND  # `sluice` with no command


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
    """The argument parser for `sluice` and its commands."""
    parser = argparse.ArgumentParser(
        prog="sluice",
        description=(
            "Back-pressure for LLM token streams, with a live app to tune it. "
            f"With no COMMAND, {APP.help}."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: ./config.toml, or built-in defaults if it is absent)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    APP.add_arguments(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="[COMMAND]", parser_class=_SubcommandParser
    )
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        # `sluice run --config X` works as well as `sluice --config X run`.
        sub.add_argument("--config", metavar="PATH", dest="sub_config", help="config file")
        command.add_arguments(sub)
    return parser


def run_command(
    args: argparse.Namespace, io: CommandIO | None = None, config: Config | None = None
) -> int:
    """Run the command `args` names (the app when none) and return its exit code. `config`
    defaults to the file `--config` names. Bad input is one line on stderr, `sluice: ...`
    for the config file, `sluice NAME: ...` for the command's own, and exit code 2."""
    io = io or CommandIO()
    command = next((c for c in COMMANDS if c.name == args.command), APP)
    prog = "sluice"
    try:
        if config is None:
            config = load_config(getattr(args, "sub_config", None) or args.config)
        cluster_options(config, io.environ)  # a bad [cluster] or SLUICE_REDIS_URL: exit 2
        prog = command.prog
        return int(command.run(args, config, io))
    except (UsageError, ConfigError) as exc:
        io.stderr.write(f"{prog}: {one_line(str(exc))}\n")
        return ExitCode.USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sluice` console script."""
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
