"""`sluice monitor MODULE:FUNCTION`: run your own async workload under the app.

FUNCTION is an async function taking the running `Engine`; it starts sessions through it
(its own prompts, backends and consumers) and the app watches them like the demo. Textual
is imported only when the command runs, so `sluice run` stays light. A target that cannot be
imported, or is not an `async def`, is bad input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.cli.app import run_app
from sluice.cli.command import Command, CommandIO, usage_errors
from sluice.engine.config import Config
from sluice.engine.consumers import ConsumerError

__all__ = ["COMMAND", "WorkloadError", "load_workload"]


class WorkloadError(ValueError):
    """MODULE:FUNCTION cannot be used; the message says why and what is expected."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`target` plus `--demo` to keep the config's demo sessions going beside it."""
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="e.g. examples.monitor_workload:main or path/to/file.py:main; "
        "FUNCTION is `async def f(engine)`",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also keep the config's demo sessions going",
    )


def _import(module_name: str) -> Any:
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise WorkloadError(f"{module_name}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise WorkloadError(f"{module_name}: cannot load as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def load_workload(target: str) -> Callable[..., Any]:
    """Import MODULE and return its async FUNCTION; raise WorkloadError if that fails."""
    module_name, sep, func_name = target.rpartition(":")
    if not sep or not module_name or not func_name:
        raise WorkloadError(
            f"{target!r}: expected MODULE:FUNCTION, e.g. examples.monitor_workload:main"
        )
    try:
        module = _import(module_name)
    except WorkloadError:
        raise
    except Exception as exc:
        raise WorkloadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise WorkloadError(f"{module_name!r} has no attribute {func_name!r}")
    if not inspect.iscoroutinefunction(func):
        raise WorkloadError(
            f"{target}: must be an async function taking the engine (async def {func_name}(engine))"
        )
    return func


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Load the workload, then run the app with it."""
    with usage_errors(WorkloadError):
        workload = load_workload(args.target)
    from sluice.tui.app import SluiceApp

    with usage_errors(ConsumerError):
        app = SluiceApp(config=config, continuous=bool(args.demo), workload=workload, relax_gc=True)
    return run_app(app)


COMMAND = Command(
    name="monitor",
    help="run your own async workload (MODULE:FUNCTION, given the engine) under the live app",
    add_arguments=add_arguments,
    run=run,
)
