"""`sluice check`: one line per backend saying whether it is reachable, authorised and has
the model a run would use (engine/backends/check.py probes them). Exit 0 when every checked
backend is ready, 1 when any is not, 2 on bad input (a backend name, a URL in the
environment). The agent backend (an optional extra that starts a CLI process) is checked
only when named: `sluice check --backend agent`.
"""

from __future__ import annotations

import argparse
import asyncio

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError, usage_errors
from sluice.engine.backends.check import check_backends
from sluice.engine.backends.registry import (
    BACKENDS,
    BadEnvironment,
    check_environment,
    parse_backend_list,
)
from sluice.engine.config import Config
from sluice.engine.redact import redact

__all__ = ["COMMAND", "DEFAULT_CHECKS"]

# Checked when --backend is not given: the backends of the base install.
DEFAULT_CHECKS = tuple(name for name in BACKENDS if name != "agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sluice check`."""
    parser.add_argument(
        "--backend",
        metavar="NAMES",
        help=f"backends to check, comma-separated: {', '.join(BACKENDS)} "
        f"(default: {','.join(DEFAULT_CHECKS)})",
    )


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Carry out `sluice check`; returns the exit code."""
    with usage_errors(ValueError, BadEnvironment):
        names = parse_backend_list(args.backend or ",".join(DEFAULT_CHECKS))
        # The agent's own problems (extra or CLI missing) are its FAILED line, not exit 2.
        check_environment([n for n in names if n != "agent"], config, io.environ)
    try:
        results = asyncio.run(check_backends(names, config, io.environ))
    except BadEnvironment as exc:  # found while building a backend (a proxy variable, say)
        raise UsageError(redact(str(exc))) from None
    for result in results:
        io.stdout.write(result.line + "\n")
    io.stdout.flush()
    return ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILED


COMMAND = Command(
    name="check",
    help="check each backend: reachable, authorised, which model (never prints the key)",
    add_arguments=add_arguments,
    run=run,
)
