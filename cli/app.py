"""`sluice` with no command: the live app on the config's demo sessions. `run_app` is how the
app runs as a process, here and in `sluice monitor`: a stop signal ends it like `q` does,
with that signal's exit code, and the process exits even past a stuck task.

Textual is imported only when the app runs, so the headless commands never load it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError, usage_errors
from sluice.cli.runner import run_to_exit
from sluice.cli.signals import stop_signals
from sluice.engine.config import Config
from sluice.engine.consumers import ConsumerError

if TYPE_CHECKING:
    from sluice.tui.app import SluiceApp

__all__ = ["COMMAND", "run_app"]


def run_app(app: SluiceApp) -> int:
    """Run the app until it quits, or until SIGINT, SIGTERM or SIGHUP stops it (exit code
    130, 143 or 129); the terminal is restored either way. Returns the exit code."""

    async def main() -> int:
        with stop_signals(lambda sig: app.stop(ExitCode.stopped_by(sig)), terminal=True):
            await app.run_async()
        return int(app.return_code or 0)

    return run_to_exit(main())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The app has no options of its own: `--config` is everyone's (cli/main.py)."""


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Open the app, keeping the config's demo sessions going; exit 2 without a terminal."""
    if not (sys.stdin.isatty() and io.stdout.isatty()):
        raise UsageError("the app needs a terminal; for a headless run use `sluice run`")
    from sluice.tui.app import SluiceApp

    with usage_errors(ConsumerError):
        app = SluiceApp(config=config, relax_gc=True)
    return run_app(app)


COMMAND = Command(
    name="",
    help="opens the app on the sessions from the config file",
    add_arguments=add_arguments,
    run=run,
)
