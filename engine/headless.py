"""`sluice run --headless`: run sessions without the app and print a summary.

Finite by default (each planned session runs once); with `--duration S` the demo runs
continuously for S seconds, then no new session starts, queued ones are dropped and the
streaming ones finish, so nothing received is lost. SIGINT (Ctrl+C), SIGTERM and SIGHUP stop
the run: every session is cancelled, every stream closed, the summary printed. Exit codes: 0
when every session is done, 1 when any failed or was cancelled, 2 on bad input, 130 / 143 /
129 when stopped by SIGINT / SIGTERM / SIGHUP (engine/signals.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

from sluice.engine import settings as S
from sluice.engine.backends.base import BackendError
from sluice.engine.backends.registry import open_backends
from sluice.engine.config import Config
from sluice.engine.consumers import (
    Consumer,
    ConsumerError,
    close_consumer,
    discard_broken_output,
    make_consumer,
)
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.engine.prompts import PromptError, add_prompt_arguments, plan_from_args
from sluice.engine.report import format_seconds, summary_json, summary_table
from sluice.engine.runner import run_to_exit
from sluice.engine.settings import SettingError
from sluice.engine.signals import exit_code, signal_name, stop_signals
from sluice.engine.snapshot import EngineSnapshot

__all__ = ["HELP", "add_arguments", "run_command", "run_headless"]

HELP = "run sessions without the app and print a summary table (or --json)"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = exit_code(signal.SIGINT)


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
            demo = ContinuousDemo(engine)
            demo.start()
            await asyncio.sleep(duration)
            demo.stop()
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
    if args.sessions is not None:
        try:
            S.DEMO_SESSIONS.coerce(args.sessions)
        except SettingError as exc:
            raise UsageError(f"--sessions {args.sessions}: {exc}") from None
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
        config = config.with_values({"demo.sessions": args.sessions})
    try:
        plan = (planner or plan_from_args)(args, config)
    except (UsageError, PromptError) as exc:
        stderr.write(f"sluice run: {exc}\n")
        return EXIT_USAGE
    try:
        # With --json, stdout carries the one JSON object: the stdout consumer's text goes
        # to stderr instead.
        consumer = make_consumer(
            config[S.CONSUMER_KIND],
            delay_ms=config[S.CONSUMER_DELAY_MS],
            path=config[S.CONSUMER_PATH],
            text_out=stderr if args.json else None,
        )
    except ConsumerError as exc:
        stderr.write(f"sluice run: {exc}\n")
        return EXIT_USAGE
    run = _Run(args, config, plan, consumer, stdout=stdout, stderr=stderr)
    try:
        return run_to_exit(run.main(), stderr=stderr)
    except KeyboardInterrupt:  # Ctrl+C before the handlers were in place: nothing ran yet
        stderr.write("sluice run: interrupted before any session started\n")
        return EXIT_INTERRUPTED


class _Run:
    """One headless run: start the engine, stream the plan, stop on a signal, report."""

    def __init__(
        self,
        args: argparse.Namespace,
        config: Config,
        plan: list[tuple[str, str]],
        consumer: Consumer,
        *,
        stdout: TextIO,
        stderr: TextIO,
    ) -> None:
        self.args = args
        self.config = config
        self.plan = plan
        self.consumer = consumer
        self.stdout = stdout
        self.stderr = stderr
        self.engine: Engine | None = None
        self.stopped_by: signal.Signals | None = None
        self._work: asyncio.Task[tuple[EngineSnapshot, float]] | None = None

    async def main(self) -> int:
        """Run to the end or to the first stop signal, print the summary, return the code."""
        started = time.monotonic()
        with stop_signals(self._on_signal):
            self._work = asyncio.ensure_future(self._stream())
            if self.stopped_by is not None:  # a signal came while the task was being made
                self._work.cancel()
            try:
                snapshot, wall = await self._work
            except asyncio.CancelledError:
                if self.stopped_by is None:
                    raise
                if self.engine is None:  # stopped before anything started
                    self.stderr.write(
                        f"sluice run: stopped by {signal_name(self.stopped_by)} "
                        "before any session started\n"
                    )
                    return exit_code(self.stopped_by)
                # Leaving the engine's `async with` cancelled every session (bounded by its
                # shutdown grace) and closed every stream: report what that left.
                snapshot, wall = self.engine.snapshot(), time.monotonic() - started
            except BackendError as exc:
                self.stderr.write(f"sluice run: {exc}\n")
                return EXIT_USAGE
            finally:
                await close_consumer(self.consumer)
        return self._report(snapshot, wall)

    def _on_signal(self, sig: signal.Signals) -> None:
        """The first stop signal cancels the run; later ones find shutdown already bounded."""
        if self.stopped_by is not None:
            return
        self.stopped_by = sig
        if self._work is not None:
            self._work.cancel()

    async def _stream(self) -> tuple[EngineSnapshot, float]:
        args = self.args
        progress = self.stderr if (self.stderr.isatty() and not args.json) else None
        async with (
            open_backends(self.config, {backend for _, backend in self.plan}) as backends,
            Engine(self.config, history=None, backends=backends, consumer=self.consumer) as engine,
        ):
            self.engine = engine
            return await run_headless(engine, self.plan, duration=args.duration, progress=progress)

    def _report(self, snapshot: EngineSnapshot, wall: float) -> int:
        """The summary on stdout (table or JSON), a line on stderr, and the exit code."""
        args, stderr, stopped_by = self.args, self.stderr, self.stopped_by
        dropped = self.engine.dropped_queued if self.engine is not None else 0
        if stopped_by is not None:
            t = snapshot.totals
            states = ", ".join(f"{n} {state}" for state, n in t.states.items() if n)
            stderr.write(
                f"sluice run: stopped by {signal_name(stopped_by)}; the sessions still running "
                f"were cancelled; sessions: {states}; chunks in {t.tokens_in} / out "
                f"{t.tokens_out} / lost {t.tokens_lost}; wall time {format_seconds(wall)}\n"
            )
        elif args.duration is not None:
            # The run outlasts --duration on purpose: streaming sessions finish so nothing
            # received is lost; sessions still queued for a slot are dropped.
            stderr.write(
                f"sluice run: --duration {args.duration:g}s reached; no new sessions after it, "
                f"{dropped} still queued for a slot dropped (nothing of theirs was received), "
                f"the streaming ones finished; wall time {format_seconds(wall)}\n"
            )
        if args.json:
            text = summary_json(
                snapshot,
                wall_time=wall,
                dropped_queued=dropped,
                stopped_by=stopped_by.name if stopped_by is not None else None,
            )
        else:
            text = summary_table(snapshot, wall_time=wall)
        try:
            self.stdout.write(text + "\n")
            self.stdout.flush()
        except BrokenPipeError:  # the reader went away (`| head`): nothing more to say there
            discard_broken_output(self.stdout)
        if stopped_by is not None:
            return exit_code(stopped_by)
        ok = all(s.state == "done" for s in snapshot.sessions)
        return EXIT_OK if ok else EXIT_FAILED
