"""The original scenario, time-scaled: 12 demo sessions, 4 at a time, a 50 ms consumer call,
a model at 40 tokens/s.

The write-up's rates are kept (so the consumer falls 20 tokens/s, 1,200 tokens/min, behind
each streaming session) and only the responses are shortened, so a run takes seconds. Modes:

- `generation`: a null consumer, unbounded: what the model alone needs (the lower bound);
- `unbounded`: maxsize 0, one chunk per call (the naive push);
- `bounded`: maxsize 16, one chunk per call (the write-up's fix);
- `batched`: maxsize 16, up to 16 chunks per call.

`expected_duration` and `makespan` are the same schedule computed without a clock, from the
demo model's mean pacing, as a cross-check of the measured times.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sluice.bench.measure import rss
from sluice.engine.config import Config
from sluice.engine.engine import Engine

__all__ = [
    "MODES",
    "ScenarioResult",
    "ScenarioSpec",
    "expected_duration",
    "makespan",
    "run_scenario",
    "scenario_config",
]

# mode -> (maxsize, batch_max or None for the spec's batch, consumer kind)
MODES: dict[str, tuple[int | None, int | None, str]] = {
    "generation": (0, 1, "null"),
    "unbounded": (0, 1, "sleep"),
    "bounded": (None, 1, "sleep"),
    "batched": (None, None, "sleep"),
}


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """The scenario's sizes. Defaults: the write-up's rates, 120 tokens per response."""

    sessions: int = 12
    limit: int = 4
    delay_ms: float = 50.0
    rate: float = 40.0
    tokens: int = 120
    ttft_ms: float = 300.0
    seed: int = 0
    maxsize: int = 16
    batch_max: int = 16
    sample_interval: float = 0.05


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One mode's figures. Times in seconds, memory in bytes.

    `high_water` is the deepest any session's buffer got (exact); `peak_buffered_bytes` is
    the most one session held, sampled every `sample_interval`; `rss_start`/`peak_rss` are
    the process's RSS before and at its highest during the run. `estimate_s` is the
    clock-free schedule for the same lengths. `series` rows: (t, chunks buffered in all
    sessions, bytes buffered in all sessions, RSS).
    """

    mode: str
    maxsize: int
    batch_max: int
    consumer: str
    sessions: int
    tokens_expected: int
    tokens_in: int
    tokens_out: int
    tokens_lost: int
    failed: int
    completion_s: float
    estimate_s: float
    high_water: int
    peak_buffered_bytes: int
    rss_start: int
    peak_rss: int
    queue_wait_p50: float | None
    queue_wait_p99: float | None
    token_age_p99: float | None
    stall_ratio: float
    series: tuple[tuple[float, int, int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["series"] = [list(row) for row in self.series]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        """The inverse of `to_dict` (results come back from worker processes as JSON)."""
        values = dict(data)
        values["series"] = tuple(tuple(row) for row in data["series"])
        return cls(**values)


def mode_knobs(mode: str, spec: ScenarioSpec) -> tuple[int, int, str]:
    """(maxsize, batch_max, consumer kind) of a mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: must be one of {', '.join(MODES)}")
    maxsize, batch_max, kind = MODES[mode]
    return (
        spec.maxsize if maxsize is None else maxsize,
        spec.batch_max if batch_max is None else batch_max,
        kind,
    )


def scenario_config(mode: str, spec: ScenarioSpec) -> Config:
    """The engine config of one mode."""
    maxsize, batch_max, kind = mode_knobs(mode, spec)
    return Config().with_values(
        {
            "queue.maxsize": maxsize,
            "queue.batch_max": batch_max,
            "limits.demo": spec.limit,
            "consumer.kind": kind,
            "consumer.delay_ms": spec.delay_ms,
            "demo.sessions": spec.sessions,
            "demo.tokens": spec.tokens,
            "demo.rate": spec.rate,
            "demo.ttft_ms": spec.ttft_ms,
            "demo.seed": spec.seed,
        }
    )


def expected_duration(
    tokens: int, *, ttft: float, rate: float, delay: float, batch_max: int
) -> float:
    """Seconds from slot to last chunk processed, at the model's mean pacing (no jitter).

    Chunk i arrives at `ttft + i / rate`; the consumer, when free, takes every chunk that has
    arrived (up to `batch_max`) and each call takes `delay`. Back-pressure does not change
    this: the demo model's send buffer lets generation run ahead of a full client buffer.
    """
    free = 0.0
    i = 0
    while i < tokens:
        arrival = ttft + i / rate
        start = max(free, arrival)
        # every chunk that has arrived by `start`, at most batch_max of them
        arrived = int((start - ttft) * rate + 1e-9) + 1
        take = max(1, min(batch_max, arrived - i, tokens - i))
        free = start + delay
        i += take
    return free


def makespan(durations: Sequence[float], slots: int) -> float:
    """When the last of `durations` ends if they take `slots` in order, first come first served."""
    if slots < 1:
        raise ValueError("slots must be >= 1")
    ends: list[float] = []
    finish = 0.0
    for duration in durations:
        start = heapq.heappop(ends) if len(ends) == slots else 0.0
        end = start + duration
        heapq.heappush(ends, end)
        finish = max(finish, end)
    return finish


async def run_scenario(mode: str, spec: ScenarioSpec | None = None) -> ScenarioResult:
    """Run one mode of the scenario to the end and measure it."""
    spec = spec or ScenarioSpec()
    maxsize, batch_max, kind = mode_knobs(mode, spec)
    config = scenario_config(mode, spec)
    gc.collect()
    rss_start = rss()
    series: list[tuple[float, int, int, int]] = []
    peak_session_bytes = 0
    peak_rss = rss_start
    async with Engine(config, history=None) as engine:
        started = time.monotonic()
        sessions = engine.add_demo_sessions(spec.sessions)
        lengths = [engine.demo.length_for(s.prompt) for s in sessions]

        def sample() -> None:
            nonlocal peak_session_bytes, peak_rss
            depth = held = 0
            for s in sessions:
                b = s.buffer.buffered_bytes
                depth += s.buffer.depth
                held += b
                if b > peak_session_bytes:
                    peak_session_bytes = b
            now_rss = rss()
            peak_rss = max(peak_rss, now_rss)
            series.append((round(time.monotonic() - started, 4), depth, held, now_rss))

        async def sampler() -> None:
            while True:
                sample()
                await asyncio.sleep(spec.sample_interval)

        task = asyncio.create_task(sampler())
        try:
            await engine.wait_idle()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        completion = time.monotonic() - started
        sample()
        snap = engine.snapshot()
    totals = snap.totals
    streaming = sum(s.streaming_time for s in snap.sessions)
    stall = sum(s.stall for s in snap.sessions)
    delay = spec.delay_ms / 1000.0 if kind == "sleep" else 0.0
    estimate = makespan(
        [
            expected_duration(
                n, ttft=spec.ttft_ms / 1000.0, rate=spec.rate, delay=delay, batch_max=batch_max
            )
            for n in lengths
        ],
        spec.limit,
    )
    expected = sum(lengths)
    return ScenarioResult(
        mode=mode,
        maxsize=maxsize,
        batch_max=batch_max,
        consumer=kind,
        sessions=spec.sessions,
        tokens_expected=expected,
        tokens_in=totals.tokens_in,
        tokens_out=totals.tokens_out,
        tokens_lost=max(totals.tokens_lost, expected - totals.tokens_out),
        failed=sum(1 for s in snap.sessions if s.state != "done"),
        completion_s=completion,
        estimate_s=estimate,
        high_water=totals.high_water,
        peak_buffered_bytes=peak_session_bytes,
        rss_start=rss_start,
        peak_rss=peak_rss,
        queue_wait_p50=totals.queue_wait.p50,
        queue_wait_p99=totals.queue_wait.p99,
        token_age_p99=totals.token_age.p99,
        stall_ratio=stall / streaming if streaming > 0 else 0.0,
        series=tuple(series),
    )
