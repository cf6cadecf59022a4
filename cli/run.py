"""`sluice run --headless`: run sessions without the app and print a summary.

Finite by default (each planned session runs once); with `--duration S` the demo runs
continuously for S seconds, then no new session starts, queued ones are dropped and the
streaming ones finish, so nothing received is lost (engine/headless.py). SIGINT (Ctrl+C),
SIGTERM and SIGHUP stop the run: every session is cancelled, every stream closed, the summary
printed. Exit codes: 0 when every session is done, 1 when any failed or was cancelled, 2 on
bad input, 130 / 143 / 129 when stopped by SIGINT / SIGTERM / SIGHUP (cli/signals.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError, usage_errors
from sluice.cli.prompts import add_prompt_arguments, plan_from_args
from sluice.cli.runner import run_to_exit
from sluice.cli.signals import signal_name, stop_signals
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
    output_discarded,
)
from sluice.engine.engine import Engine
from sluice.engine.headless import run_headless
from sluice.engine.redact import redact
from sluice.engine.report import format_seconds, summary_json, summary_table
from sluice.engine.settings import SettingError
from sluice.engine.snapshot import EngineSnapshot

__all__ = ["COMMAND"]


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


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse out-of-range options with a message saying what is allowed."""
    if args.sessions is not None:
        try:
            S.DEMO_SESSIONS.coerce(args.sessions)
        except SettingError as exc:
            raise UsageError(f"--sessions {args.sessions}: {exc}") from None
    if args.duration is not None and not (0 < args.duration <= 86_400):
        raise UsageError(f"--duration {args.duration:g}: must be a number of seconds in (0, 86400]")


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Carry out `sluice run --headless`; returns the exit code."""
    check_arguments(args)
    if args.sessions is not None:
        config = config.with_values({"demo.sessions": args.sessions})
    plan = plan_from_args(args, config, io.environ)
    with usage_errors(ConsumerError):
        # With --json, stdout carries the one JSON object: the stdout consumer's text goes
        # to stderr instead.
        consumer = make_consumer(
            config[S.CONSUMER_KIND],
            delay_ms=config[S.CONSUMER_DELAY_MS],
            path=config[S.CONSUMER_PATH],
            text_out=io.stderr if args.json else None,
        )
    headless = _Run(args, config, plan, consumer, io)
    try:
        return run_to_exit(headless.main(), stderr=io.stderr)
    except KeyboardInterrupt:  # Ctrl+C before the handlers were in place: nothing ran yet
        io.stderr.write("sluice run: interrupted before any session started\n")
        return ExitCode.SIGINT


class _Run:
    """One headless run: start the engine, stream the plan, stop on a signal, report."""

    def __init__(
        self,
        args: argparse.Namespace,
        config: Config,
        plan: list[tuple[str, str]],
        consumer: Consumer,
        io: CommandIO,
    ) -> None:
        self.args = args
        self.config = config
        self.plan = plan
        self.consumer = consumer
        self.stdout = io.stdout
        self.stderr = io.stderr
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
                    return ExitCode.stopped_by(self.stopped_by)
                # Leaving the engine's `async with` cancelled every session (bounded by its
                # shutdown grace) and closed every stream: report what that left.
                snapshot, wall = self.engine.snapshot(), time.monotonic() - started
            except BackendError as exc:  # a backend could not be built: bad input
                raise UsageError(str(exc)) from None
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
        except BrokenPipeError:  # the reader went away (`| head`)
            discard_broken_output(self.stdout)
        if output_discarded(self.stdout):  # now or earlier (the stdout consumer's writes)
            stderr.write(_lost_summary(snapshot))  # where it is still seen
        if stopped_by is not None:
            return ExitCode.stopped_by(stopped_by)
        ok = all(s.state == "done" for s in snapshot.sessions)
        return ExitCode.OK if ok else ExitCode.FAILED


def _lost_summary(snapshot: EngineSnapshot) -> str:
    """One line for stderr when stdout's reader went away before the summary: how the
    sessions ended and their distinct errors (the table would have had them)."""
    t = snapshot.totals
    states = ", ".join(f"{n} {state}" for state, n in t.states.items() if n) or "none"
    errors = sorted({s.error for s in snapshot.sessions if s.error})
    why = ""
    if errors:
        first = redact(errors[0])[:200]
        why = f"; error: {first}" if len(errors) == 1 else f"; {len(errors)} errors, first: {first}"
    return (
        f"sluice run: stdout was closed by its reader, so the summary was not written; "
        f"sessions: {states}; chunks in {t.tokens_in} / out {t.tokens_out} / lost "
        f"{t.tokens_lost}{why}\n"
    )


COMMAND = Command(
    name="run",
    help="run sessions without the app and print a summary table (or --json)",
    add_arguments=add_arguments,
    run=run,
)
