"""`sluice serve`: the engine as a long-lived service with the control API.

Runs the config's demo sessions (`--demo`) and/or your workload (`MODULE:FUNCTION`, as
`sluice monitor` takes it), prints the URL it serves on stdout, then keeps serving, after
the workload returns too, until SIGTERM, SIGINT or SIGHUP: then every session is cancelled,
every stream closed, a one-line summary logged, and the exit code is 0. Logs go to stderr,
one line per event an operator cares about. Exit 2 on bad input (config, --bind,
--advertise, the target, a network address without SLUICE_TOKEN), 1 when the address
cannot be listened on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import urlsplit

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError, usage_errors
from sluice.cli.monitor import WorkloadError, load_workload
from sluice.cli.runner import run_to_exit
from sluice.cli.signals import stop_signals
from sluice.engine.cluster.options import cluster_options
from sluice.engine.config import Config
from sluice.engine.control import BindError, ControlServer, parse_bind
from sluice.engine.control.bind import check_exposure, token_from_env
from sluice.engine.control.client import check_url
from sluice.engine.control.wire import one_line
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.engine.redact import redact_url
from sluice.engine.report import format_seconds
from sluice.engine.tasks import cancel_and_wait

__all__ = ["COMMAND", "DEFAULT_SERVE_BIND"]

HELP = "run the engine as a service: control API (HTTP/JSON, SSE events, /metrics)"

DEFAULT_SERVE_BIND = "127.0.0.1:8321"
SHUTDOWN_TIMEOUT = 15.0  # seconds the sessions get to end once cancelled

log = logging.getLogger("sluice.serve")
Workload = Callable[[Engine], Awaitable[Any]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sluice serve`."""
    parser.add_argument(
        "--bind",
        default=DEFAULT_SERVE_BIND,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_SERVE_BIND}; port 0 picks a free one; "
        "an address beyond loopback needs SLUICE_TOKEN)",
    )
    parser.add_argument(
        "--advertise",
        metavar="URL",
        help="in a cluster, the URL other machines reach this node's API at, for the registry "
        "(default: the bound address, a wildcard one replaced by the host name)",
    )
    parser.add_argument("--demo", action="store_true", help="keep the config's demo sessions going")
    parser.add_argument(
        "target",
        nargs="?",
        metavar="MODULE:FUNCTION",
        help="your workload, `async def f(engine)`, e.g. examples.monitor_workload:main",
    )


@contextmanager
def _stderr_log(stream: TextIO) -> Iterator[None]:
    """One line per operator event on `stream`, `sluice serve: ...`, while the command runs."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("sluice serve: %(message)s"))
    logger = logging.getLogger("sluice")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Carry out `sluice serve`; returns the exit code."""
    with usage_errors(BindError, WorkloadError):
        bind = parse_bind(args.bind)
        token = token_from_env(io.environ)
        check_exposure(bind, token)
        if not args.demo and not args.target:
            raise WorkloadError("nothing to run: give --demo, MODULE:FUNCTION, or both")
        workload = load_workload(args.target) if args.target else None
        advertise = _advertised(args.advertise, config, io.environ)
    with _stderr_log(io.stderr):
        try:
            serving = _serve(config, args, workload, token, advertise, io.stdout)
            return run_to_exit(serving, stderr=io.stderr)
        except KeyboardInterrupt:  # only before the signal handlers are in place
            log.info("interrupted while starting")
            return ExitCode.OK


def _advertised(url: str | None, config: Config, environ: Mapping[str, str]) -> str | None:
    """`--advertise`, checked: a node URL without credentials (every node and viewer reads
    the registry's cards), given only when the config joins a cluster."""
    if url is None:
        return None
    try:
        url = check_url(url)
    except ValueError as exc:
        raise UsageError(f"--advertise {exc}") from None
    if urlsplit(url).password is not None or urlsplit(url).username is not None:
        raise UsageError(
            f"--advertise {redact_url(url)!r}: no credentials in it (the registry is read by "
            "every node); attaching takes the token from SLUICE_TOKEN"
        )
    if cluster_options(config, environ) is None:
        raise UsageError(
            "--advertise names this node's URL in a cluster's registry: it needs [cluster] "
            "redis_url (or SLUICE_REDIS_URL) too"
        )
    return url


async def _serve(
    config: Config,
    args: argparse.Namespace,
    workload: Workload | None,
    token: str | None,
    advertise: str | None,
    stdout: TextIO,
) -> int:
    stop = asyncio.Event()
    reason: list[str] = []

    def request_stop(sig: signal.Signals) -> None:
        if not reason:
            reason.append(sig.name)
        stop.set()

    started = time.monotonic()
    with stop_signals(request_stop):
        async with Engine(config) as engine:
            cluster = engine.cluster
            node = cluster.node if cluster is not None else None  # one name in both views
            server = ControlServer(engine, bind=args.bind, token=token, node=node)
            try:
                await server.start()
            except OSError as exc:
                log.error("cannot listen on %s: %s", args.bind, exc.strerror or exc)
                return ExitCode.FAILED
            if cluster is not None:
                # In the registry: `sluice attach redis://...` finds it there.
                cluster.advertise(advertise or server.url)
            demo = ContinuousDemo(engine)
            work: asyncio.Task[None] | None = None
            try:
                stdout.write(f"{server.url}\n")
                stdout.flush()
                if args.demo:
                    demo.start()
                    log.info("keeping %d demo sessions going", engine.knob("demo.sessions"))
                if workload is not None:
                    work = asyncio.get_running_loop().create_task(
                        _run_workload(workload, args.target, engine)
                    )
                await stop.wait()
                log.info(
                    "%s received: stopping; cancelling %d running sessions",
                    reason[0],
                    sum(1 for s in engine.sessions.values() if not s.finished),
                )
            finally:
                demo.stop()
                await cancel_and_wait([work])
                await server.stop()
                try:
                    async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                        await engine.aclose()
                except TimeoutError:
                    log.error(
                        "sessions did not end within %gs of being cancelled", SHUTDOWN_TIMEOUT
                    )
            log.info(_summary(engine, time.monotonic() - started))
    return _check_no_task_left()


def _check_no_task_left() -> int:
    """A clean stop leaves no task behind; say so loudly (exit 1) if one is left."""
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    if left:
        names = ", ".join(sorted(t.get_name() for t in left)[:10])
        log.error("%d tasks still running after the stop: %s", len(left), names)
        return ExitCode.FAILED
    return ExitCode.OK


async def _run_workload(workload: Workload, target: str, engine: Engine) -> None:
    """Run the user's function; its end or its error is logged and serving goes on."""
    try:
        await workload(engine)
    except Exception as exc:
        log.error(
            "workload %s raised %s; still serving", target, one_line(f"{type(exc).__name__}: {exc}")
        )
    else:
        log.info("workload %s returned; still serving until SIGTERM or SIGINT", target)


def _summary(engine: Engine, uptime: float) -> str:
    """The final line: sessions by state, chunks in/out/lost, time served."""
    t = engine.snapshot().totals
    states = ", ".join(f"{n} {state}" for state, n in t.states.items() if n) or "none"
    return (
        f"stopped after {format_seconds(uptime)}: {t.sessions} sessions ({states}); "
        f"chunks {t.tokens_in} in, {t.tokens_out} out, {t.tokens_lost} lost"
    )


COMMAND = Command(name="serve", help=HELP, add_arguments=add_arguments, run=run)
