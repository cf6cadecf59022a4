"""`sluice bench`: the original scenario (three modes and the generation bound), the engine's
overhead against asyncio.Queue, memory per session, 1,000/5,000-session scale, the CPU
per delta of long Claude responses, what serving costs (a viewer, a scrape), the app's
own cost (CPU and key-to-screen time, driven through tmux), a cluster of serve nodes
sharing one limit through Redis, and auto-tune against servers of hidden capacity.

Prints markdown (or `--json`), optionally writes an SVG of depth and memory over time. The
default run takes a few minutes on 2 cores. Exit codes: 0 ran (goals may still be missed;
the table says), 1 a part failed, 2 bad input. Only the options live here; the benchmarks
are `benchmarks/` (`sluice.bench`), imported when the command runs, so the other commands
never load them. The dependency goes one way: cli -> bench -> engine (and tui, for the
app's cost); `sluice.bench` never imports `sluice.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError
from sluice.engine.config import Config

if TYPE_CHECKING:
    from sluice.bench.runner import BenchParams

__all__ = ["COMMAND", "build_params"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sluice bench`."""
    parser.add_argument(
        "--only",
        metavar="PARTS",
        help="comma-separated parts to run: scenario, memory, overhead, scale, long, serve, app, "
        "agent, cluster, autotune (default: all; app needs tmux, agent the sluice[agent] extra, "
        "cluster redis-server)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        metavar="N",
        help="mean tokens per response in the scenario (default 120: about a minute in all)",
    )
    parser.add_argument(
        "--scale-sizes",
        metavar="N,N",
        help="concurrent sessions for the scale part (default 1000,5000)",
    )
    parser.add_argument(
        "--scale-window", type=float, metavar="S", help="seconds measured per scale size (5)"
    )
    parser.add_argument(
        "--overhead-chunks", type=int, metavar="N", help="chunks per overhead run (60000)"
    )
    parser.add_argument(
        "--app-sizes",
        metavar="N,N",
        help="demo sessions the app part runs the app with, each N (demo limit min(N, 64)) "
        "or N:LIMIT (default 12:4,1000:64)",
    )
    parser.add_argument(
        "--cluster-sizes",
        metavar="N,N",
        help="serve nodes sharing one Claude limit in the cluster part (default 2,4,8)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a sanity run of a few seconds"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the scale part (cProfile; slows it)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() after the scale warm-up (not what the engine does)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every part in this process (memory figures then share one heap)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--plot", metavar="FILE", help="write an SVG of the scenario to FILE")


def build_params(args: argparse.Namespace) -> BenchParams:
    """BenchParams from the options; raises UsageError naming a bad one."""
    from sluice.bench.runner import PARTS, BenchParams

    params = BenchParams()
    if args.quick:
        params = replace(
            params,
            # The consumer (5 ms a call) keeps half the model's pace (400 tokens/s), so
            # even this short run shows the unbounded backlog grow past maxsize.
            tokens=60,
            rate=400.0,
            delay_ms=5.0,
            ttft_ms=30.0,
            overhead_chunks=5_000,
            overhead_rounds=3,
            scale_sizes=(200,),
            scale_window=1.0,
            scale_warmup=0.5,
            idle_sessions=200,
            steady_sessions=20,
            long_sizes=(2_000, 8_000),
            long_rounds=1,
            serve_sessions=100,
            serve_window=0.5,
            serve_rounds=1,
            serve_scrapes=3,
            app_sizes=((12, 4),),
            app_warmup=2.0,
            app_window=2.0,
            app_presses=4,
            agent_deltas=5_000,
            cluster_sizes=(2,),
            cluster_window=2.0,
            cluster_knob_changes=3,
            cluster_lease_s=2.0,
            autotune_quick=True,
        )
    if args.only:
        parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
        bad = [p for p in parts if p not in PARTS]
        if bad or not parts:
            raise UsageError(f"--only {args.only}: parts must be among {', '.join(PARTS)}")
        params = replace(params, parts=parts)
    if "app" in params.parts and args.only:
        from sluice.bench.app_cost import tmux_missing

        reason = tmux_missing()
        if reason is not None:
            raise UsageError(f"--only {args.only}: the app part {reason}")
    if "agent" in params.parts and args.only:
        from sluice.bench.agent_flood import agent_missing

        missing = agent_missing()
        if missing is not None:
            raise UsageError(f"--only {args.only}: the agent part {missing}")
    if "cluster" in params.parts and args.only:
        from sluice.bench.cluster import redis_missing

        reason = redis_missing()
        if reason is not None:
            raise UsageError(f"--only {args.only}: the cluster part {reason}")
    if args.tokens is not None:
        if not 1 <= args.tokens <= 100_000:
            raise UsageError(f"--tokens {args.tokens}: must be an integer from 1 to 100000")
        params = replace(params, tokens=args.tokens)
    if args.scale_sizes is not None:
        sizes = _sizes("--scale-sizes", args.scale_sizes, 100_000, "1000,5000")
        params = replace(params, scale_sizes=sizes)
    if args.app_sizes is not None:
        params = replace(params, app_sizes=_app_sizes(args.app_sizes))
    if args.cluster_sizes is not None:
        sizes = _sizes("--cluster-sizes", args.cluster_sizes, 32, "2,4,8")
        params = replace(params, cluster_sizes=sizes)
    if args.scale_window is not None:
        if not 0.2 <= args.scale_window <= 600:
            raise UsageError(f"--scale-window {args.scale_window:g}: must be seconds in [0.2, 600]")
        params = replace(params, scale_window=args.scale_window)
    if args.overhead_chunks is not None:
        if not 100 <= args.overhead_chunks <= 10_000_000:
            raise UsageError(
                f"--overhead-chunks {args.overhead_chunks}: must be an integer from 100 to 10000000"
            )
        params = replace(params, overhead_chunks=args.overhead_chunks)
    return replace(params, profile=args.profile, gc_freeze=args.gc_freeze)


def _sizes(option: str, text: str, most: int, example: str) -> tuple[int, ...]:
    """Comma-separated session counts; UsageError naming `option` if any is not allowed."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(not 1 <= n <= most for n in sizes):
        raise UsageError(
            f"{option} {text}: must be comma-separated integers from 1 to {most}, like {example}"
        )
    return sizes


def _app_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """`--app-sizes`: N or N:LIMIT, comma-separated; UsageError if any is not allowed."""
    sizes = []
    for part in text.split(","):
        count, _, limit = part.partition(":")
        try:
            n = int(count)
            lim = int(limit) if limit else min(n, 64)
        except ValueError:
            n = lim = 0
        if not (1 <= n <= 10_000 and 1 <= lim <= 10_000):
            raise UsageError(
                f"--app-sizes {text}: must be comma-separated N or N:LIMIT, sessions and demo "
                "limit from 1 to 10000, like 12:4,1000:64"
            )
        sizes.append((n, lim))
    return tuple(sizes)


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Carry out `sluice bench`; returns the exit code. The config is not used: the bench
    sets its own sizes so runs compare across machines."""
    from sluice.bench.plot import scenario_svg
    from sluice.bench.report import goals, markdown
    from sluice.bench.runner import run_bench

    stdout, stderr = io.stdout, io.stderr
    params = build_params(args)
    if os.environ.pop("SLUICE_REDIS_URL", None):  # its engines and nodes: never a real cluster
        stderr.write("sluice bench: SLUICE_REDIS_URL ignored: the benchmarks join no cluster\n")
    plot_path = Path(args.plot) if args.plot else None
    if plot_path is not None and not plot_path.parent.is_dir():
        raise UsageError(f"--plot {args.plot}: folder {plot_path.parent} does not exist")
    tty = stderr.isatty()

    def progress(message: str) -> None:
        if tty:
            stderr.write(f"running {message}\n")
            stderr.flush()

    result = run_bench(params, isolate=not args.in_process, progress=progress)
    if result.app_skipped is not None:
        stderr.write(f"sluice bench: app part skipped: {result.app_skipped}\n")
    if result.cluster_skipped is not None:
        stderr.write(f"sluice bench: cluster part skipped: {result.cluster_skipped}\n")
    if plot_path is not None and result.scenario:
        try:
            plot_path.write_text(scenario_svg(result.scenario), encoding="utf-8")
        except OSError as exc:
            stderr.write(f"sluice bench: cannot write --plot {args.plot}: {exc.strerror}\n")
            return ExitCode.FAILED
    if args.json:
        data = result.to_dict()
        data["goals"] = [g.to_dict() for g in goals(result)]
        stdout.write(json.dumps(data) + "\n")
    else:
        stdout.write(markdown(result) + "\n")
    stdout.flush()
    for error in result.errors:
        stderr.write(f"sluice bench: {error}\n")
    return ExitCode.FAILED if result.errors else ExitCode.OK


COMMAND = Command(
    name="bench",
    help="benchmark the engine and the app: the original scenario, overhead, memory, scale, "
    "long responses, serving, the app's cost, a cluster of serve nodes, auto-tune",
    add_arguments=add_arguments,
    run=run,
)
