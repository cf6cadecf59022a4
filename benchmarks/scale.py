"""Scale: thousands of concurrent demo sessions, and the memory of an idle (queued) session.

`run_scale` starts N demo sessions at once (the demo limit raised to N, the null consumer, so
the engine's own cost is what is measured), lets them reach steady streaming, then measures
over a window: CPU, event-loop lag p99 (the engine's sampler: how late a 100 ms sleep wakes),
chunks per second delivered against the nominal N x rate, and memory per session beyond the
chunks buffered, two ways (RSS growth, and the engine's own `memory_bytes` accounting).

`idle_session_memory` queues N sessions behind a held slot and counts the Python heap they
allocate with tracemalloc, grouped by source file.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import math
import pstats
import time
import tracemalloc
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from sluice.bench.measure import cpu_seconds, machine_busy_seconds, rss
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.histogram import Histogram

__all__ = [
    "IdleResult",
    "ScaleResult",
    "SteadyResult",
    "idle_session_memory",
    "run_scale",
    "streaming_session_memory",
]


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """Steady-state figures of N concurrent sessions over a `window_s` measurement window.

    Loop lag two ways: `loop_lag_p99` from the engine's own sampler (a 100 ms sleep, so a
    5 s window has ~50 samples and its p99 is nearly the max), and `probe_lag_*` from a
    10 ms sleep probe (~500 samples); `idle_lag_p99` is the same probe for one second
    before any session starts: the machine's own noise (other processes). `gc_pauses`
    counts the collector's runs in the window, with the longest and the total time they
    stopped the loop. `others_cpu_percent` is the CPU every other process on the machine
    used during the window (percent of one core): the competition for the cores.

    `bookkeeping_rss` is (RSS during - RSS before - bytes buffered) / N; `bookkeeping_engine`
    the mean of the engine's per-session `memory_bytes - buffered_bytes` (what the UI shows).
    `profile` lists the functions with the most own time when run with profiling, as
    (function, share of all own time) pairs; profiling slows everything, so those runs'
    other figures are not comparable.
    """

    sessions: int
    rate: float
    batch_max: int
    window_s: float
    streaming: int
    nominal_cps: float
    delivered_cps: float
    cpu_percent: float
    others_cpu_percent: float
    loop_lag_p99: float | None
    idle_lag_p99: float | None
    probe_lag_p50: float | None
    probe_lag_p99: float | None
    probe_lag_max: float | None
    gc_pauses: int
    gc_pause_max: float
    gc_pause_total: float
    rss_before: int
    rss_during: int
    buffered_bytes: int
    bookkeeping_rss: float
    bookkeeping_engine: float
    profiled: bool
    gc_frozen: bool
    profile: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["profile"] = [list(row) for row in self.profile]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScaleResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["profile"] = tuple((str(a), float(b)) for a, b in data["profile"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class IdleResult:
    """Heap bytes per queued session (tracemalloc) and what the engine reports for one."""

    sessions: int
    bytes_per_session: float
    engine_reported: float
    by_file: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["by_file"] = [list(row) for row in self.by_file]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdleResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["by_file"] = tuple((str(a), float(b)) for a, b in data["by_file"])
        return cls(**values)


def scale_config(sessions: int, rate: float, tokens: int, batch_max: int) -> Config:
    """N demo sessions allowed at once, null consumer."""
    return Config().with_values(
        {
            "queue.maxsize": 16,
            "queue.batch_max": batch_max,
            "limits.demo": max(1, sessions),
            "consumer.kind": "null",
            "demo.sessions": sessions,
            "demo.tokens": tokens,
            "demo.rate": rate,
            "demo.ttft_ms": 300.0,
        }
    )


async def run_scale(
    sessions: int = 1000,
    *,
    rate: float = 20.0,
    window: float = 5.0,
    warmup: float = 1.5,
    batch_max: int = 16,
    profile: bool = False,
    gc_freeze: bool = False,
    top: int = 12,
) -> ScaleResult:
    """Start `sessions` demo sessions, wait `warmup` s, measure for `window` s, cancel.

    `gc_freeze` (an experiment, not engine behaviour) moves every object alive after the
    warm-up out of the collector's reach, so full collections no longer walk them."""
    # Long enough responses that nobody finishes inside the window, even when slowed down.
    tokens = max(10, math.ceil(rate * (warmup + window) * 3))
    config = scale_config(sessions, rate, tokens, batch_max)
    gc.collect()
    rss_before = rss()
    profiler = cProfile.Profile() if profile else None
    async with Engine(config, history=None) as engine:
        idle = Histogram()
        idle_task = asyncio.create_task(_lag_probe(idle))
        await asyncio.sleep(min(1.0, window))
        idle_task.cancel()
        await asyncio.gather(idle_task, return_exceptions=True)
        engine.add_demo_sessions(sessions)
        await asyncio.sleep(warmup)
        if gc_freeze:
            gc.collect()
            gc.freeze()
        engine.sampler.reset_lag()
        probe = Histogram()
        pauses: list[float] = []
        probe_task = asyncio.create_task(_lag_probe(probe))
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                pauses.append(time.perf_counter() - gc_started[0])

        gc.callbacks.append(on_gc)
        out_before = sum(s.tokens_out for s in engine.sessions.values())
        cpu_before = cpu_seconds()
        busy_before = machine_busy_seconds()
        started = time.monotonic()
        if profiler is not None:
            profiler.enable()
        rss_during = rss()
        held = 0
        # A deadline, not a count of sleeps: an overloaded loop wakes sleepers late.
        while time.monotonic() - started < window:
            await asyncio.sleep(min(0.5, max(0.0, window - (time.monotonic() - started))))
            now_rss = rss()
            if now_rss >= rss_during:
                rss_during = now_rss
                held = sum(s.buffer.buffered_bytes for s in engine.sessions.values())
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(on_gc)
        probe_task.cancel()
        await asyncio.gather(probe_task, return_exceptions=True)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds() - cpu_before
        others = max(0.0, machine_busy_seconds() - busy_before - cpu)
        out_after = sum(s.tokens_out for s in engine.sessions.values())
        snap = engine.snapshot()
        streaming = sum(1 for s in snap.sessions if s.state == "streaming")
        bookkeeping_engine = sum(s.memory_bytes - s.buffered_bytes for s in snap.sessions) / max(
            1, len(snap.sessions)
        )
        lag = snap.process.loop_lag_p99
    if gc_freeze:
        gc.unfreeze()
    return ScaleResult(
        sessions=sessions,
        rate=rate,
        batch_max=batch_max,
        window_s=elapsed,
        streaming=streaming,
        nominal_cps=sessions * rate,
        delivered_cps=(out_after - out_before) / elapsed,
        cpu_percent=100.0 * cpu / elapsed,
        others_cpu_percent=100.0 * others / elapsed,
        loop_lag_p99=lag,
        idle_lag_p99=idle.quantile(0.99),
        probe_lag_p50=probe.quantile(0.50),
        probe_lag_p99=probe.quantile(0.99),
        probe_lag_max=probe.max if probe.count else None,
        gc_pauses=len(pauses),
        gc_pause_max=max(pauses, default=0.0),
        gc_pause_total=sum(pauses),
        rss_before=rss_before,
        rss_during=rss_during,
        buffered_bytes=held,
        bookkeeping_rss=(rss_during - rss_before - held) / max(1, sessions),
        bookkeeping_engine=bookkeeping_engine,
        profiled=profile,
        gc_frozen=gc_freeze,
        profile=_top_functions(profiler, top) if profiler is not None else (),
    )


async def _lag_probe(hist: Histogram, interval: float = 0.010) -> None:
    """Record how late a short sleep wakes up, forever (cancel to stop)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        hist.record(max(0.0, loop.time() - started - interval))


def _top_functions(profiler: cProfile.Profile, top: int) -> tuple[tuple[str, float], ...]:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    out = []
    for (filename, line, name), row in ranked:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        out.append((f"{name} ({where})", row[2] / total))
    return tuple(out)


async def idle_session_memory(sessions: int = 1000) -> IdleResult:
    """Heap bytes one queued session holds: N sessions wait behind a slot that never frees."""
    config = Config().with_values(
        {
            "limits.demo": 1,
            "consumer.kind": "null",
            "demo.sessions": 1,
            "demo.tokens": 1,
            "demo.rate": 1.0,
            "demo.ttft_ms": 600_000.0,
        }
    )
    async with Engine(config, history=None) as engine:
        engine.add_demo_sessions(1)  # takes the only slot and waits out its 10-minute ttft
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            queued = engine.add_demo_sessions(sessions)
            for _ in range(3):
                await asyncio.sleep(0)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        if any(s.state != "queued" for s in queued):
            raise RuntimeError("idle sessions were expected to be queued")
        reported = [engine.sessions[s.id].snapshot().memory_bytes for s in queued]
        diff = after.compare_to(before, "filename")
        total = sum(d.size_diff for d in diff)
        by_file = sorted(
            ((_short(d.traceback[0].filename), d.size_diff / sessions) for d in diff),
            key=lambda row: row[1],
            reverse=True,
        )
    return IdleResult(
        sessions=sessions,
        bytes_per_session=total / sessions,
        engine_reported=sum(reported) / len(reported),
        by_file=tuple(row for row in by_file if abs(row[1]) >= 1.0)[:10],
    )


def _short(filename: str) -> str:
    path = Path(filename)
    return f"{path.parent.name}/{path.name}"


@dataclass(frozen=True, slots=True)
class SteadyResult:
    """Heap bytes per streaming session in steady state (tracemalloc), beyond its buffered
    chunks, once every session has received `chunks_each` chunks (the text tail of 200 and
    the demo model's 256-chunk send buffer are then full), grouped by source file.

    `model_state` is what the demo model's stream itself holds (its RNG, its send-buffer
    timestamps, the generator), measured alone; a real backend's state differs, so
    `engine_per_session` (the total minus that) is the engine's bookkeeping."""

    sessions: int
    chunks_each: int
    bytes_per_session: float
    model_state: float
    engine_per_session: float
    buffered_per_session: float
    engine_reported: float
    by_file: tuple[tuple[str, float], ...]
    by_line: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["by_file"] = [list(row) for row in self.by_file]
        out["by_line"] = [list(row) for row in self.by_line]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SteadyResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["by_file"] = tuple((str(a), float(b)) for a, b in data["by_file"])
        values["by_line"] = tuple((str(a), float(b)) for a, b in data["by_line"])
        return cls(**values)


async def streaming_session_memory(
    sessions: int = 100, *, rate: float = 100.0, chunks_each: int = 300
) -> SteadyResult:
    """Heap bytes per streaming session beyond its buffer, once `chunks_each` chunks came in.

    A faster model (`rate`) gets there sooner; per-session state does not depend on the rate.
    """
    config = scale_config(sessions, rate, chunks_each * 4, 16)
    gc.collect()
    tracemalloc.start()
    try:
        async with Engine(config, history=None) as engine:
            await asyncio.sleep(0.2)  # the sampler's first allocations, outside the count
            gc.collect()
            before = tracemalloc.take_snapshot()
            engine.add_demo_sessions(sessions)
            live = list(engine.sessions.values())
            deadline = time.monotonic() + 120.0
            while True:
                if min(s.tokens_in for s in live) >= chunks_each:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("streaming sessions did not reach steady state in 120 s")
                await asyncio.sleep(0.05)
            gc.collect()
            after = tracemalloc.take_snapshot()
            held = sum(s.buffer.buffered_bytes for s in live)
            snap = engine.snapshot()
            reported = sum(s.memory_bytes - s.buffered_bytes for s in snap.sessions)
    finally:
        tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    total = sum(d.size_diff for d in diff)
    by_file = sorted(
        ((_short(d.traceback[0].filename), d.size_diff / sessions) for d in diff),
        key=lambda row: row[1],
        reverse=True,
    )
    lines = sorted(
        (
            (
                f"{_short(d.traceback[0].filename)}:{d.traceback[0].lineno}",
                d.size_diff / sessions,
            )
            for d in after.compare_to(before, "lineno")
        ),
        key=lambda row: row[1],
        reverse=True,
    )
    model = await _model_state(sessions, chunks_each)
    return SteadyResult(
        sessions=sessions,
        chunks_each=chunks_each,
        bytes_per_session=(total - held) / sessions,
        model_state=model,
        engine_per_session=(total - held) / sessions - model,
        buffered_per_session=held / sessions,
        engine_reported=reported / sessions,
        by_file=tuple(row for row in by_file if abs(row[1]) >= 1.0)[:10],
        by_line=tuple(lines[:15]),
    )


async def _model_state(streams: int, chunks_each: int) -> float:
    """Heap bytes one demo stream holds after `chunks_each` chunks, with nothing kept of
    what it yielded (generation made instant so this takes no time)."""
    from sluice.engine.backends.base import StreamInfo
    from sluice.engine.backends.demo import DemoModel

    model = DemoModel(rate=1e6, ttft_ms=0.0, tokens=chunks_each * 4, jitter=0.0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        gens = [model.stream(f"demo prompt {i}", StreamInfo()) for i in range(1, streams + 1)]
        for gen in gens:
            for _ in range(chunks_each):
                await anext(gen)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    for gen in gens:
        await cast(AsyncGenerator[Chunk, None], gen).aclose()
    return sum(d.size_diff for d in after.compare_to(before, "filename")) / streams
