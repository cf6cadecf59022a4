"""`sluice run --headless`: run sessions without the app and print a summary.

Finite by default (each planned session runs once); with `--duration S` the demo runs
continuously for S seconds, then no new session starts, queued ones are dropped and the
streaming ones finish, so nothing received is lost. Exit codes: 0 when every session is done,
1 when any failed or was cancelled, 2 on bad input, 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO

from sluice.engine.backends.base import BackendError
from sluice.engine.backends.registry import open_backends
from sluice.engine.config import KNOB_SPECS, Config
from sluice.engine.engine import Engine
from sluice.engine.prompts import PromptError, add_prompt_arguments, plan_from_args
from sluice.engine.report import format_seconds, summary_json, summary_table
from sluice.engine.snapshot import EngineSnapshot

__all__ = ["HELP", "add_arguments", "run_command", "run_headless"]

HELP = "run sessions without the app and print a summary table (or --json)"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad command-line input; the message is shown and the exit code is 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sluice run`."""
    parser.add_argument(
        "--headless", action="store_true", help="run without the app (the only mode of `run`)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="sessions per backend (default: one per prompt, else [demo] sessions)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="run the demo continuously for S seconds instead of each session once",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout instead of a table"
    )
    add_prompt_arguments(parser)


# A plan is what sessions to start: (prompt, backend name) pairs. Other modules may register
# extra planners (real backends, prompt files) by replacing this hook.
Planner = Callable[[argparse.Namespace, Config], list[tuple[str, str]]]


def demo_plan(count: int) -> list[tuple[str, str]]:
    """`count` demo sessions with the engine's deterministic demo prompts."""
    return [(f"demo prompt {i}", "demo") for i in range(1, count + 1)]


async def run_headless(
    engine: Engine,
    plan: list[tuple[str, str]],
    *,
    duration: float | None = None,
    progress: TextIO | None = None,
) -> tuple[EngineSnapshot, float]:
    """Run `plan` (or the continuous demo for `duration` s) to the end; return the last
    snapshot and the wall time."""
    started = time.monotonic()
    reporter = (
        asyncio.create_task(_report_progress(engine, started, progress)) if progress else None
    )
    try:
        if duration is not None:
            engine.run_continuous_demo()
            await asyncio.sleep(duration)
            engine.stop_continuous_demo()
            engine.drop_queued()
        else:
            for number, (prompt, backend) in enumerate(plan, start=1):
                engine.add_session(prompt, backend, session_id=f"{backend}-{number:04d}")
        await engine.wait_idle()
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            if progress is not None:
                progress.write("\r\x1b[K")
                progress.flush()
    return engine.snapshot(), time.monotonic() - started


async def _report_progress(engine: Engine, started: float, out: TextIO) -> None:
    while True:
        await asyncio.sleep(0.5)
        t = engine.snapshot().totals
        states = " ".join(f"{n} {s}" for s, n in t.states.items() if n)
        out.write(
            f"\r\x1b[K{format_seconds(time.monotonic() - started)}  {states}  "
            f"chunks {t.tokens_in} in / {t.tokens_out} out  lost {t.tokens_lost}  "
            f"{t.rate_out:.0f}/s"
        )
        out.flush()


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse out-of-range options with a message saying what is allowed."""
    if args.sessions is not None and not KNOB_SPECS["sessions"].check(args.sessions):
        raise UsageError(f"--sessions {args.sessions}: {KNOB_SPECS['sessions'].describe()}")
    if args.duration is not None and not (0 < args.duration <= 86_400):
        raise UsageError(f"--duration {args.duration:g}: must be a number of seconds in (0, 86400]")


def run_command(
    args: argparse.Namespace,
    config: Config,
    planner: Planner | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Carry out `sluice run --headless`; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        check_arguments(args)
    except UsageError as exc:
        stderr.write(f"sluice run: {exc}\n")
        return EXIT_USAGE
    if args.sessions is not None:
        config = replace(config, demo=replace(config.demo, sessions=args.sessions))
    try:
        plan = (planner or plan_from_args)(args, config)
    except (UsageError, PromptError) as exc:
        stderr.write(f"sluice run: {exc}\n")
        return EXIT_USAGE
    progress = stderr if (stderr.isatty() and not args.json) else None

    dropped = [0]  # set from inside the run: sessions dropped while still queued

    async def main() -> tuple[EngineSnapshot, float]:
        async with (
            open_backends(config, {backend for _, backend in plan}) as backends,
            Engine(config, history=None, backends=backends) as engine,
        ):
            result = await run_headless(engine, plan, duration=args.duration, progress=progress)
            dropped[0] = engine.dropped_queued
            return result

    try:
        snapshot, wall = asyncio.run(main())
    except BackendError as exc:
        stderr.write(f"sluice run: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr.write("sluice run: interrupted; every session was cancelled\n")
        return EXIT_INTERRUPTED
    if args.duration is not None:
        # The run outlasts --duration on purpose: streaming sessions finish so nothing
        # received is lost; sessions still queued for a slot are dropped.
        stderr.write(
            f"sluice run: --duration {args.duration:g}s reached; no new sessions after it, "
            f"{dropped[0]} still queued for a slot dropped (nothing of theirs was received), "
            f"the streaming ones finished; wall time {format_seconds(wall)}\n"
        )
    if args.json:
        stdout.write(summary_json(snapshot, wall_time=wall, dropped_queued=dropped[0]) + "\n")
    else:
        stdout.write(summary_table(snapshot, wall_time=wall) + "\n")
    stdout.flush()
    ok = all(s.state == "done" for s in snapshot.sessions)
    return EXIT_OK if ok else EXIT_FAILED
