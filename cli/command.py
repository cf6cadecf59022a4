"""How a `sluice` command is declared: its name, help, options and run function, the one
usage error and the one table of exit codes.

A command is a module in `cli/` that ends with one declaration::

    COMMAND = Command(
        name="check",
        help="check each backend: reachable, authorised, which model (never prints the key)",
        add_arguments=add_arguments,  # (parser: argparse.ArgumentParser) -> None
        run=run,  # (args: argparse.Namespace, config: Config, io: CommandIO) -> int
    )

and is listed once in `cli/main.py`'s `COMMANDS`. `run` returns an `ExitCode`; bad input is
`raise UsageError("--flag value: what is allowed")` (or a library error turned into one with
`with usage_errors(PromptError): ...`), which `cli/main.py` prints as one line,
`sluice NAME: message`, with exit code 2. `run` writes through `io`, never `sys.stdout`, so
tests run it in-process with their own streams and environment. A command module imports
only what its options need at the top; anything heavy (Textual, an SDK, the benchmarks) is
imported inside `run`, so `sluice run` never loads the app. Library logic lives in the
engine as plain functions with typed parameters: no `argparse.Namespace` leaves `cli/`.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from sluice.cli.signals import STOP_SIGNALS
from sluice.engine.config import Config

__all__ = ["Command", "CommandIO", "ExitCode", "UsageError", "one_line", "usage_errors"]


class ExitCode(enum.IntEnum):
    """Every exit code a `sluice` command gives; the signal codes come from STOP_SIGNALS."""

    OK = 0  # the command did what was asked (every session done, every backend ready)
    FAILED = 1  # it ran, and something failed (a session, a backend check, a save)
    USAGE = 2  # bad input: an option, the config, the environment, a file named
    SIGHUP = STOP_SIGNALS[signal.SIGHUP]  # 129: the terminal went away
    SIGINT = STOP_SIGNALS[signal.SIGINT]  # 130: Ctrl+C
    SIGTERM = STOP_SIGNALS[signal.SIGTERM]  # 143: kill, timeout, docker stop, systemd

    @classmethod
    def stopped_by(cls, sig: signal.Signals) -> ExitCode:
        """The exit code of a command stopped by the stop signal `sig`."""
        return cls(STOP_SIGNALS[sig])


class UsageError(Exception):
    """Bad input to a command: shown as one line `sluice NAME: message`, exit code 2."""


@contextlib.contextmanager
def usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Inside the block, an error of one of `kinds` (a library's "bad input" error, say
    PromptError) becomes a UsageError with the same message."""
    try:
        yield
    except kinds as exc:
        raise UsageError(str(exc)) from None


def one_line(text: str) -> str:
    """`text` on one line: line breaks become spaces, so an error is always one line."""
    return " ".join(text.splitlines())


@dataclass(frozen=True, slots=True)
class CommandIO:
    """What a command reads and writes besides its options: the standard streams and the
    environment. The defaults are the process's own, taken when the CommandIO is made."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass(frozen=True, slots=True)
class Command:
    """One `sluice` command: `name` (empty for the app, `sluice` with no command), a one-line
    `help`, `add_arguments(parser)` for its options, and `run(args, config, io) -> exit code`."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Config, CommandIO], int]

    @property
    def prog(self) -> str:
        """How messages name the command: `sluice run`, or `sluice` for the app."""
        return f"sluice {self.name}" if self.name else "sluice"
