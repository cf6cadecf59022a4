"""Runs the benchmark parts, each in a fresh Python process by default, and collects results.

A fresh process per part gives every memory figure a clean start (Python keeps freed memory,
so a part run after another would inherit its high-water RSS). The scenario's four modes
run side by side (they mostly sleep, and sharing the machine's load keeps them comparable),
together with the two memory counts; the CPU-bound parts (overhead, scale) run one at a time.
`isolate=False` runs everything in this process, for tests.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sluice.bench.agent_flood import FloodResult, agent_missing, measure_flood
from sluice.bench.app_cost import AppCostResult, measure_app_cost, tmux_missing
from sluice.bench.autotune import QUICK_SPEC, AutotuneResult, AutotuneSpec, run_autotune
from sluice.bench.cluster import ClusterResult, redis_missing, run_cluster
from sluice.bench.long_response import LongResult, run_long
from sluice.bench.measure import child_env, machine
from sluice.bench.overhead import OverheadResult, run_overhead
from sluice.bench.scale import (
    IdleResult,
    ScaleResult,
    SteadyResult,
    idle_session_memory,
    run_scale,
    streaming_session_memory,
)
from sluice.bench.scenario import MODES, ScenarioResult, ScenarioSpec, run_scenario
from sluice.bench.serve import ServeResult, run_serve

__all__ = ["BenchParams", "BenchResult", "result_from_dict", "run_bench", "run_job"]

PARTS = (
    "scenario",
    "memory",
    "overhead",
    "scale",
    "long",
    "serve",
    "app",
    "agent",
    "cluster",
    "autotune",
)
_SCENARIO = ScenarioSpec()


@dataclass(frozen=True, slots=True)
class BenchParams:
    """What `sluice bench` runs; the defaults take about three minutes on 2 cores (the app
    part two of them)."""

    parts: tuple[str, ...] = PARTS
    # The scenario's sizes, defaulting to ScenarioSpec's (one place for the write-up's rates).
    tokens: int = _SCENARIO.tokens
    sessions: int = _SCENARIO.sessions
    limit: int = _SCENARIO.limit
    delay_ms: float = _SCENARIO.delay_ms
    rate: float = _SCENARIO.rate
    ttft_ms: float = _SCENARIO.ttft_ms
    overhead_chunks: int = 60_000
    overhead_rounds: int = 5
    scale_sizes: tuple[int, ...] = (1000, 5000)
    scale_rate: float = 20.0
    scale_window: float = 5.0
    scale_warmup: float = 1.5
    idle_sessions: int = 1000
    steady_sessions: int = 100
    long_sizes: tuple[int, ...] = (20_000, 80_000)
    long_rounds: int = 3
    serve_sessions: int = 1000
    serve_window: float = 3.0
    serve_rounds: int = 3
    serve_scrapes: int = 20
    profile: bool = False
    gc_freeze: bool = False
    # (demo sessions, demo limit): the shipped app (12 sessions, 4 streaming), and 1,000
    # sessions with 64 streaming (the limit slider's top).
    app_sizes: tuple[tuple[int, int], ...] = ((12, 4), (1000, 64))
    app_warmup: float = 5.0
    app_window: float = 10.0
    app_presses: int = 25
    # The agent part: deltas the fake CLI writes against a paused consumer, and the session
    # buffer sizes tried (16: bounded; 0: unbounded, the contrast).
    agent_deltas: int = 20_000
    agent_maxsizes: tuple[int, ...] = (16, 0)
    # Cluster: serve nodes sharing one Claude limit through Redis (benchmarks/cluster.py).
    cluster_sizes: tuple[int, ...] = (2, 4, 8)
    cluster_window: float = 8.0
    cluster_knob_changes: int = 20
    cluster_lease_s: float = 5.0
    autotune_quick: bool = False  # the autotune part at QUICK_SPEC's sizes (a few seconds)

    def spec(self) -> ScenarioSpec:
        """The scenario part's sizes."""
        return replace(
            _SCENARIO,
            sessions=self.sessions,
            limit=self.limit,
            delay_ms=self.delay_ms,
            rate=self.rate,
            tokens=self.tokens,
            ttft_ms=self.ttft_ms,
        )


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Everything one run measured, with the machine and the parameters."""

    machine: dict[str, Any]
    params: dict[str, Any]
    wall_s: float
    scenario: tuple[ScenarioResult, ...] = ()
    overhead: OverheadResult | None = None
    scale: tuple[ScaleResult, ...] = ()
    idle: IdleResult | None = None
    steady: SteadyResult | None = None
    long: LongResult | None = None
    serve: ServeResult | None = None
    errors: tuple[str, ...] = field(default=())
    app: tuple[AppCostResult, ...] = ()
    app_skipped: str | None = None  # why the app part did not run (no tmux)
    agent: tuple[FloodResult, ...] = ()
    agent_skipped: str | None = None  # why the agent part did not run (no extra)
    cluster: ClusterResult | None = None
    cluster_skipped: str | None = None  # why the cluster part did not run (no redis-server)
    autotune: AutotuneResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "machine": self.machine,
            "params": self.params,
            "wall_s": self.wall_s,
            "scenario": [r.to_dict() for r in self.scenario],
            "overhead": self.overhead.to_dict() if self.overhead else None,
            "scale": [r.to_dict() for r in self.scale],
            "idle": self.idle.to_dict() if self.idle else None,
            "steady": self.steady.to_dict() if self.steady else None,
            "long": self.long.to_dict() if self.long else None,
            "serve": self.serve.to_dict() if self.serve else None,
            "errors": list(self.errors),
            "app": [r.to_dict() for r in self.app],
            "app_skipped": self.app_skipped,
            "agent": [r.to_dict() for r in self.agent],
            "agent_skipped": self.agent_skipped,
            "cluster": self.cluster.to_dict() if self.cluster else None,
            "cluster_skipped": self.cluster_skipped,
            "autotune": self.autotune.to_dict() if self.autotune else None,
        }


def result_from_dict(data: dict[str, Any]) -> BenchResult:
    """Rebuild a BenchResult from `BenchResult.to_dict()` output (a saved `--json` run)."""
    return BenchResult(
        machine=data["machine"],
        params=data["params"],
        wall_s=data["wall_s"],
        scenario=tuple(ScenarioResult.from_dict(r) for r in data["scenario"]),
        overhead=OverheadResult.from_dict(data["overhead"]) if data["overhead"] else None,
        scale=tuple(ScaleResult.from_dict(r) for r in data["scale"]),
        idle=IdleResult.from_dict(data["idle"]) if data["idle"] else None,
        steady=SteadyResult.from_dict(data["steady"]) if data["steady"] else None,
        long=LongResult.from_dict(data["long"]) if data.get("long") else None,
        serve=ServeResult.from_dict(data["serve"]) if data.get("serve") else None,
        errors=tuple(data["errors"]),
        app=tuple(AppCostResult.from_dict(r) for r in data.get("app", [])),
        app_skipped=data.get("app_skipped"),
        agent=tuple(FloodResult.from_dict(r) for r in data.get("agent", [])),
        agent_skipped=data.get("agent_skipped"),
        cluster=ClusterResult.from_dict(data["cluster"]) if data.get("cluster") else None,
        cluster_skipped=data.get("cluster_skipped"),
        autotune=AutotuneResult.from_dict(data["autotune"]) if data.get("autotune") else None,
    )


def _jobs(params: BenchParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(jobs run side by side, jobs run one at a time)."""
    spec = asdict(params.spec())
    together: list[dict[str, Any]] = []
    alone: list[dict[str, Any]] = []
    if "scenario" in params.parts:
        together += [{"kind": "scenario", "mode": mode, "spec": spec} for mode in MODES]
    if "memory" in params.parts:
        together.append({"kind": "idle", "sessions": params.idle_sessions})
        together.append({"kind": "steady", "sessions": params.steady_sessions})
    if "overhead" in params.parts:
        alone.append(
            {"kind": "overhead", "chunks": params.overhead_chunks, "rounds": params.overhead_rounds}
        )
    if "scale" in params.parts:
        alone += [
            {
                "kind": "scale",
                "sessions": n,
                "rate": params.scale_rate,
                "window": params.scale_window,
                "warmup": params.scale_warmup,
                "profile": params.profile,
                "gc_freeze": params.gc_freeze,
            }
            for n in params.scale_sizes
        ]
    if "long" in params.parts:
        alone.append(
            {"kind": "long", "sizes": list(params.long_sizes), "rounds": params.long_rounds}
        )
    if "serve" in params.parts:
        alone.append(
            {
                "kind": "serve",
                "sessions": params.serve_sessions,
                "window": params.serve_window,
                "rounds": params.serve_rounds,
                "scrapes": params.serve_scrapes,
            }
        )
    if "app" in params.parts and tmux_missing() is None:
        alone += [
            {
                "kind": "app",
                "sessions": n,
                "limit": limit,
                "warmup": params.app_warmup,
                "window": params.app_window,
                "presses": params.app_presses,
            }
            for n, limit in params.app_sizes
        ]
    if "agent" in params.parts and agent_missing() is None:
        alone += [
            {"kind": "agent", "deltas": params.agent_deltas, "maxsize": maxsize}
            for maxsize in params.agent_maxsizes
        ]
    if "cluster" in params.parts and redis_missing() is None:
        alone.append(
            {
                "kind": "cluster",
                "sizes": list(params.cluster_sizes),
                "window": params.cluster_window,
                "knob_changes": params.cluster_knob_changes,
                "lease_s": params.cluster_lease_s,
            }
        )
    if "autotune" in params.parts:
        alone.append({"kind": "autotune", "quick": params.autotune_quick})
    return together, alone


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job description in this process and return its result as a dict."""
    kind = job["kind"]
    if kind == "scenario":
        spec = ScenarioSpec(**job["spec"])
        return asyncio.run(run_scenario(job["mode"], spec)).to_dict()
    if kind == "overhead":
        return asyncio.run(run_overhead(job["chunks"], job["rounds"])).to_dict()
    if kind == "scale":
        result = run_scale(
            job["sessions"],
            rate=job["rate"],
            window=job["window"],
            warmup=job["warmup"],
            profile=job["profile"],
            gc_freeze=job["gc_freeze"],
        )
        return asyncio.run(result).to_dict()
    if kind == "idle":
        return asyncio.run(idle_session_memory(job["sessions"])).to_dict()
    if kind == "steady":
        return asyncio.run(streaming_session_memory(job["sessions"])).to_dict()
    if kind == "long":
        return asyncio.run(run_long(tuple(job["sizes"]), job["rounds"])).to_dict()
    if kind == "serve":
        served = run_serve(
            job["sessions"], window=job["window"], rounds=job["rounds"], scrapes=job["scrapes"]
        )
        return asyncio.run(served).to_dict()
    if kind == "app":
        return measure_app_cost(
            job["sessions"],
            job["limit"],
            warmup=job["warmup"],
            window=job["window"],
            presses=job["presses"],
        ).to_dict()
    if kind == "agent":
        return asyncio.run(measure_flood(job["deltas"], job["maxsize"])).to_dict()
    if kind == "cluster":
        clustered = run_cluster(
            tuple(job["sizes"]),
            window=job["window"],
            knob_changes=job["knob_changes"],
            lease_s=job["lease_s"],
        )
        return asyncio.run(clustered).to_dict()
    if kind == "autotune":
        sizes = QUICK_SPEC if job["quick"] else AutotuneSpec()
        return asyncio.run(run_autotune(sizes)).to_dict()
    raise ValueError(f"unknown job kind {kind!r}")


def _start(job: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.bench.worker", json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def _run_alone(job: dict[str, Any]) -> dict[str, Any]:
    """Start one job's worker and wait for it (no other job runs beside it)."""
    return _finish(job, _start(job))


def _finish(job: dict[str, Any], proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{job['kind']} job failed (exit {proc.returncode}): {last}")
    return dict(json.loads(out))


def run_bench(
    params: BenchParams,
    *,
    isolate: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every part `params` names and return the collected results."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    info = machine()
    together, alone = _jobs(params)
    outputs: list[tuple[dict[str, Any], dict[str, Any] | str]] = []

    def record(jobs: Sequence[dict[str, Any]], parallel: bool) -> None:
        if not jobs:
            return
        say(", ".join(_label(j) for j in jobs))
        if not isolate:
            for job in jobs:
                outputs.append((job, _guard(functools.partial(run_job, job))))
            return
        if parallel:
            procs = [(job, _start(job)) for job in jobs]
            for job, proc in procs:
                outputs.append((job, _guard(functools.partial(_finish, job, proc))))
        else:
            for job in jobs:
                outputs.append((job, _guard(functools.partial(_run_alone, job))))

    record(together, parallel=True)
    record(alone, parallel=False)
    return _collect(info, params, time.monotonic() - started, outputs)


def _label(job: dict[str, Any]) -> str:
    kind = job["kind"]
    if kind == "scenario":
        return f"scenario:{job['mode']}"
    if kind in ("scale", "idle", "steady", "serve", "app"):
        return f"{kind}:{job['sessions']}"
    if kind == "agent":
        return f"agent:maxsize={job['maxsize']}"
    if kind == "cluster":
        return f"cluster:{','.join(map(str, job['sizes']))} nodes"
    return str(kind)


def _guard(fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    try:
        return fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _collect(
    info: dict[str, Any],
    params: BenchParams,
    wall: float,
    outputs: list[tuple[dict[str, Any], dict[str, Any] | str]],
) -> BenchResult:
    scenario: list[ScenarioResult] = []
    scale: list[ScaleResult] = []
    app: list[AppCostResult] = []
    agent: list[FloodResult] = []
    overhead = idle = steady = None
    long = None
    serve = None
    cluster = None
    autotune = None
    errors: list[str] = []
    for job, out in outputs:
        if isinstance(out, str):
            errors.append(f"{_label(job)}: {out}")
            continue
        kind = job["kind"]
        if kind == "scenario":
            scenario.append(ScenarioResult.from_dict(out))
        elif kind == "overhead":
            overhead = OverheadResult.from_dict(out)
        elif kind == "scale":
            scale.append(ScaleResult.from_dict(out))
        elif kind == "idle":
            idle = IdleResult.from_dict(out)
        elif kind == "steady":
            steady = SteadyResult.from_dict(out)
        elif kind == "long":
            long = LongResult.from_dict(out)
        elif kind == "serve":
            serve = ServeResult.from_dict(out)
        elif kind == "app":
            app.append(AppCostResult.from_dict(out))
        elif kind == "agent":
            agent.append(FloodResult.from_dict(out))
        elif kind == "cluster":
            cluster = ClusterResult.from_dict(out)
        elif kind == "autotune":
            autotune = AutotuneResult.from_dict(out)
    params_dict = asdict(params)
    params_dict["parts"] = list(params.parts)
    params_dict["scale_sizes"] = list(params.scale_sizes)
    params_dict["long_sizes"] = list(params.long_sizes)
    params_dict["app_sizes"] = [list(size) for size in params.app_sizes]
    params_dict["agent_maxsizes"] = list(params.agent_maxsizes)
    params_dict["cluster_sizes"] = list(params.cluster_sizes)
    return BenchResult(
        machine=info,
        params=params_dict,
        wall_s=wall,
        scenario=tuple(scenario),
        overhead=overhead,
        scale=tuple(scale),
        idle=idle,
        steady=steady,
        long=long,
        serve=serve,
        errors=tuple(errors),
        app=tuple(app),
        app_skipped=tmux_missing() if "app" in params.parts else None,
        agent=tuple(agent),
        agent_skipped=agent_missing() if "agent" in params.parts else None,
        cluster=cluster,
        cluster_skipped=redis_missing() if "cluster" in params.parts else None,
        autotune=autotune,
    )
