"""The auto-tune benchmark (`sluice bench --only autotune`): each controller against a
loopback server whose capacity it does not know, side by side with fixed limits.

- **claude**: a loopback Anthropic server serving at most C streams (429 + retry-after
  above that); 60 sessions kept busy (each a worker sending prompts one after another),
  run three ways at once: AIMD from limit 16, a fixed 16, and an oracle fixed at C. Goals:
  the auto limit ends in [0.8C, 1.2C], completion <= 1.2x the oracle's, 429 share after
  convergence (the auto limit first inside that range) < 5%, nothing lost.
- **ollama**: a loopback Ollama server serving C requests at once and queueing the rest, so
  TTFT grows with the queue; the gradient from C/2, a fixed 16 and the oracle at C, at once.
  Goals: the gradient ends in [0.7C, 1.3C]; its p99 TTFT (from send) <= 1.5x the oracle's.
- **maxsize**: demo sessions into a sleep consumer whose call time steps from 10 ms to 100 ms
  mid-run, maxsize auto under a memory ceiling. Goals: buffered bytes under the ceiling at
  every sample; maxsize settles (its last move) within 10 s of the step.

Time-scaled so the whole part takes about a minute: short answers, one-second windows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sluice.bench.capacity import LoopbackHTTP, QueueingOllama, ThrottlingAnthropic
from sluice.engine.backends.base import Backend
from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.backends.ollama import OllamaBackend
from sluice.engine.config import Config
from sluice.engine.consumers import SleepConsumer
from sluice.engine.engine import Engine
from sluice.engine.session import Session

__all__ = [
    "QUICK_SPEC",
    "AutotuneResult",
    "AutotuneSpec",
    "BufferRun",
    "LimitRun",
    "autotune_goals",
    "markdown_table",
    "run_autotune",
]

SAMPLE_EVERY = 0.1  # seconds between samples of the limits and the buffers


@dataclass(frozen=True, slots=True)
class AutotuneSpec:
    """The sizes of one run (the defaults: about a minute on 2 cores)."""

    sessions: int = 60  # workers, each keeping one session going
    claude_capacity: int = 10
    claude_rounds: int = 5  # prompts per worker
    claude_start: int = 16
    claude_deltas: int = 20
    ollama_capacity: int = 8
    ollama_rounds: int = 4
    ollama_chunks: int = 20
    ollama_ttft: float = 0.2
    fixed: int = 16
    pace: float = 0.02  # seconds between streamed chunks
    window: float = 1.0  # autotune.window_s
    retry_after_ms: int = 500
    buffer_sessions: int = 8
    buffer_before: float = 5.0  # seconds at 10 ms a call
    buffer_after: float = 12.0  # seconds at 100 ms a call
    buffer_ceiling_mb: float = 0.1


# A sanity run of a few seconds (`sluice bench --quick`, the smoke test): sizes only.
QUICK_SPEC = AutotuneSpec(
    sessions=8,
    claude_capacity=3,
    claude_rounds=2,
    claude_start=6,
    claude_deltas=4,
    ollama_capacity=3,
    ollama_rounds=2,
    ollama_chunks=4,
    ollama_ttft=0.02,
    fixed=6,
    pace=0.005,
    window=0.2,
    retry_after_ms=50,
    buffer_sessions=3,
    buffer_before=0.6,
    buffer_after=0.8,
)


@dataclass(frozen=True, slots=True)
class LimitRun:
    """One way of running a limit scenario, and what it gave."""

    name: str
    start_limit: int
    final_limit: int
    mean_limit_last_half: float
    completion_s: float
    sessions: int
    failed: int
    lost: int
    requests: int  # requests the server answered (claude) or served (ollama)
    throttled: int  # 429s the server sent (claude)
    converged_s: float | None  # the auto limit first inside the goal's range
    throttled_after: int  # 429s after convergence (the whole run for fixed limits)
    requests_after: int
    ttft_p50: float | None  # from send, seconds (ollama)
    ttft_p99: float | None
    trace: tuple[tuple[float, int], ...] = ()  # (seconds, limit), on change

    @property
    def throttle_share_after(self) -> float | None:
        """429s / requests after convergence."""
        return self.throttled_after / self.requests_after if self.requests_after else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trace"] = [list(p) for p in self.trace]
        out["throttle_share_after"] = self.throttle_share_after
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LimitRun:
        values = {k: v for k, v in data.items() if k != "throttle_share_after"}
        values["trace"] = tuple((float(t), int(v)) for t, v in data.get("trace", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class BufferRun:
    """The maxsize scenario: what the auto buffer did around the consumer's step."""

    ceiling: int
    max_buffered: int
    samples: int
    over_ceiling: int  # samples with buffered bytes above the ceiling
    step_at: float
    maxsize_start: int
    maxsize_before_step: int
    maxsize_end: int
    moves_after_step: int
    settled_s: float | None  # the last move after the step, from the step
    lost: int
    trace: tuple[tuple[float, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trace"] = [list(p) for p in self.trace]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BufferRun:
        values = dict(data)
        values["trace"] = tuple((float(t), int(v)) for t, v in data.get("trace", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AutotuneResult:
    """The three scenarios."""

    spec: AutotuneSpec
    claude: tuple[LimitRun, ...]
    ollama: tuple[LimitRun, ...]
    buffer: BufferRun
    wall_s: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": asdict(self.spec),
            "claude": [r.to_dict() for r in self.claude],
            "ollama": [r.to_dict() for r in self.ollama],
            "buffer": self.buffer.to_dict(),
            "wall_s": self.wall_s,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutotuneResult:
        return cls(
            spec=AutotuneSpec(**data["spec"]),
            claude=tuple(LimitRun.from_dict(r) for r in data["claude"]),
            ollama=tuple(LimitRun.from_dict(r) for r in data["ollama"]),
            buffer=BufferRun.from_dict(data["buffer"]),
            wall_s=data.get("wall_s", 0.0),
            notes=tuple(data.get("notes", ())),
        )

    def run(self, scenario: str, name: str) -> LimitRun:
        """One run by scenario (`claude`, `ollama`) and name (`auto`, `oracle`, `fixed 16`)."""
        runs = self.claude if scenario == "claude" else self.ollama
        return next(r for r in runs if r.name == name)


GoalRow = tuple[str, str, str, bool]  # name, target, measured, met (report.Goal's fields)


def autotune_goals(result: AutotuneResult) -> list[GoalRow]:
    """The issue's goals for the three scenarios, as (name, target, measured, met)."""
    spec = result.spec
    goals: list[GoalRow] = []
    c = spec.claude_capacity
    auto, oracle = result.run("claude", "auto"), result.run("claude", "oracle")
    within = 0.8 * c <= auto.final_limit <= 1.2 * c
    goals.append(
        (
            "autotune claude: AIMD limit at the end",
            f"in [{0.8 * c:g}, {1.2 * c:g}]",
            f"{auto.final_limit} (C = {c})",
            within,
        )
    )
    ratio = auto.completion_s / oracle.completion_s if oracle.completion_s else math.inf
    goals.append(
        (
            "autotune claude: completion vs the oracle at C",
            "<= 1.2x",
            f"{auto.completion_s:.1f} s vs {oracle.completion_s:.1f} s ({ratio:.2f}x)",
            ratio <= 1.2,
        )
    )
    share = auto.throttle_share_after
    shown = "no convergence"
    if share is not None:
        shown = f"{share:.1%} ({auto.throttled_after}/{auto.requests_after})"
    goals.append(
        (
            "autotune claude: 429 share after convergence",
            "< 5%",
            shown,
            share is not None and share < 0.05,
        )
    )
    goals.append(
        (
            "autotune claude: lost",
            "0",
            f"{auto.lost} tokens, {auto.failed} failed sessions",
            auto.lost == 0 and auto.failed == 0,
        )
    )
    c = spec.ollama_capacity
    auto, oracle = result.run("ollama", "auto"), result.run("ollama", "oracle")
    goals.append(
        (
            "autotune ollama: gradient limit at the end",
            f"in [{0.7 * c:g}, {1.3 * c:g}]",
            f"{auto.final_limit} (C = {c})",
            0.7 * c <= auto.final_limit <= 1.3 * c,
        )
    )
    if auto.ttft_p99 is not None and oracle.ttft_p99:
        ratio = auto.ttft_p99 / oracle.ttft_p99
        ms = f"{auto.ttft_p99 * 1000:.0f} ms vs {oracle.ttft_p99 * 1000:.0f} ms ({ratio:.2f}x)"
    else:
        ratio, ms = math.inf, "no TTFT"
    goals.append(("autotune ollama: p99 TTFT vs the oracle at C", "<= 1.5x", ms, ratio <= 1.5))
    buf = result.buffer
    goals.append(
        (
            "autotune maxsize: buffered bytes under the ceiling",
            "at every sample",
            f"max {buf.max_buffered} B of {buf.ceiling} B; "
            f"{buf.over_ceiling} of {buf.samples} samples over",
            buf.over_ceiling == 0,
        )
    )
    goals.append(
        (
            "autotune maxsize: settled after the consumer's step",
            "<= 10 s",
            "no move" if buf.settled_s is None else f"{buf.settled_s:.1f} s",
            buf.settled_s is not None and buf.settled_s <= 10.0,
        )
    )
    return goals


# -- the limit scenarios --------------------------------------------------------------------


def _config(kind: str, limit: int, auto: bool, spec: AutotuneSpec) -> Config:
    return Config().with_values(
        {
            f"limits.{kind}": limit,
            f"autotune.{kind}": auto,
            "autotune.window_s": spec.window,
            f"autotune.{kind}_max": 64,
            "consumer.kind": "null",
            "queue.maxsize": 64,
            "queue.batch_max": 64,
        }
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


async def _limit_run(
    name: str,
    kind: str,
    backend: Backend,
    config: Config,
    spec: AutotuneSpec,
    rounds: int,
    server: LoopbackHTTP,
    low: float,
    high: float,
    capacity: int,
) -> LimitRun:
    """`spec.sessions` workers, each sending `rounds` prompts one after another."""
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[Session]] = {}
    sessions: list[Session] = []
    start_limit = config[f"limits.{kind}"]
    trace: list[tuple[float, int]] = [(0.0, start_limit)]
    async with Engine(config, backends={kind: backend}, history=None) as engine:
        engine.on_session_end(
            lambda s: done[s.id].set_result(s) if s.id in done and not done[s.id].done() else None
        )
        started = loop.time()

        async def worker(n: int) -> None:
            for r in range(rounds):
                session_id = f"{name}-{n}-{r}"
                done[session_id] = loop.create_future()
                sessions.append(engine.add_session(f"prompt {n} {r}", kind, session_id=session_id))
                await done[session_id]

        async def sample() -> None:
            while True:
                limit = engine.limiters[kind].limit
                if limit != trace[-1][1]:
                    trace.append((loop.time() - started, limit))
                await asyncio.sleep(SAMPLE_EVERY)

        sampler = loop.create_task(sample())
        await asyncio.gather(*(worker(n) for n in range(spec.sessions)))
        completion = loop.time() - started
        sampler.cancel()
        final = engine.limiters[kind].limit
        totals = engine.snapshot().totals
    converged = _converged(trace, low, high, capacity) if name == "auto" else 0.0
    log = getattr(server, "log", [])
    after_from = started + (converged if converged is not None else math.inf)
    after = [status for at, status in log if at >= after_from]
    ttfts = [
        s.first_chunk_at - s.sent_at
        for s in sessions
        if s.first_chunk_at is not None and s.sent_at is not None
    ]
    half = completion / 2
    weighted = _time_mean([(t, v) for t, v in trace], half, completion)
    return LimitRun(
        name=name,
        start_limit=start_limit,
        final_limit=final,
        mean_limit_last_half=weighted,
        completion_s=completion,
        sessions=len(sessions),
        failed=sum(1 for s in sessions if s.state == "failed"),
        lost=totals.tokens_lost,
        requests=len(log) if log else getattr(server, "served", 0),
        throttled=sum(1 for _, status in log if status == 429),
        converged_s=converged,
        throttled_after=sum(1 for status in after if status == 429),
        requests_after=len(after),
        ttft_p50=_percentile(ttfts, 0.5),
        ttft_p99=_percentile(ttfts, 0.99),
        trace=tuple(trace),
    )


def _converged(
    trace: list[tuple[float, int]], low: float, high: float, capacity: int
) -> float | None:
    """When the auto limit converged: it first came down to the capacity or below (the cut
    that found it) and stayed within [low, high] from there to the end; None if it never did."""
    for i, (t, value) in enumerate(trace):
        if value <= capacity and all(low <= v <= high for _, v in trace[i:]):
            return t
    return None


def _time_mean(trace: list[tuple[float, int]], start: float, end: float) -> float:
    """The time-weighted mean of a step trace over [start, end]."""
    if end <= start:
        return float(trace[-1][1])
    total = 0.0
    for i, (t, v) in enumerate(trace):
        t_next = trace[i + 1][0] if i + 1 < len(trace) else end
        lo, hi = max(t, start), min(t_next, end)
        if hi > lo:
            total += v * (hi - lo)
    return total / (end - start)


async def run_claude(spec: AutotuneSpec) -> tuple[LimitRun, ...]:
    """AIMD from 16, a fixed 16 and the oracle at C, side by side."""
    c = spec.claude_capacity
    plans = [
        ("auto", spec.claude_start, True),
        (f"fixed {spec.fixed}", spec.fixed, False),
        ("oracle", c, False),
    ]
    servers = [
        ThrottlingAnthropic(
            c, deltas=spec.claude_deltas, pace=spec.pace, retry_after_ms=spec.retry_after_ms
        )
        for _ in plans
    ]
    for server in servers:
        server.start()
    backends = [
        ClaudeBackend(
            api_key="bench-key",
            model="bench",
            max_tokens=64,
            base_url=server.url,
            timeout_s=30,
            retries=20,
        )
        for server in servers
    ]
    try:
        runs = await asyncio.gather(
            *(
                _limit_run(
                    name,
                    "claude",
                    backend,
                    _config("claude", limit, auto, spec),
                    spec,
                    spec.claude_rounds,
                    server,
                    0.8 * c,
                    1.2 * c,
                    c,
                )
                for (name, limit, auto), backend, server in zip(
                    plans, backends, servers, strict=True
                )
            )
        )
    finally:
        for backend in backends:
            await backend.aclose()
        for server in servers:
            server.stop()
    return tuple(runs)


async def run_ollama(spec: AutotuneSpec) -> tuple[LimitRun, ...]:
    """The TTFT gradient from C/2, a fixed 16 and the oracle at C, side by side."""
    c = spec.ollama_capacity
    plans = [
        ("auto", max(1, c // 2), True),
        (f"fixed {spec.fixed}", spec.fixed, False),
        ("oracle", c, False),
    ]
    servers = [
        QueueingOllama(c, chunks=spec.ollama_chunks, pace=spec.pace, ttft=spec.ollama_ttft)
        for _ in plans
    ]
    for server in servers:
        server.start()
    backends = [
        OllamaBackend(host=server.url, model="bench", timeout_s=60, retries=0) for server in servers
    ]
    try:
        runs = await asyncio.gather(
            *(
                _limit_run(
                    name,
                    "ollama",
                    backend,
                    _config("ollama", limit, auto, spec),
                    spec,
                    spec.ollama_rounds,
                    server,
                    0.7 * c,
                    1.3 * c,
                    c,
                )
                for (name, limit, auto), backend, server in zip(
                    plans, backends, servers, strict=True
                )
            )
        )
    finally:
        for backend in backends:
            await backend.aclose()
        for server in servers:
            server.stop()
    return tuple(runs)


# -- the maxsize scenario -------------------------------------------------------------------


async def run_buffer(spec: AutotuneSpec) -> BufferRun:
    """Demo sessions into a consumer stepping from 10 ms to 100 ms a call; maxsize auto."""
    consumer = SleepConsumer(10.0)
    config = Config().with_values(
        {
            "autotune.maxsize": True,
            "autotune.window_s": spec.window,
            "autotune.memory_ceiling_mb": spec.buffer_ceiling_mb,
            "limits.demo": spec.buffer_sessions,
            "demo.rate": 200.0,
            "demo.tokens": 400,
            "demo.ttft_ms": 0.0,
            "queue.maxsize": 16,
            "queue.batch_max": 16,
        }
    )
    ceiling = int(spec.buffer_ceiling_mb * (1 << 20))
    loop = asyncio.get_running_loop()
    buffered: list[int] = []
    trace: list[tuple[float, int]] = []
    async with Engine(config, consumer=consumer, history=50) as engine:
        started = loop.time()
        trace.append((0.0, engine.knob("queue.maxsize")))

        def top_up() -> None:
            running_now = sum(1 for s in engine.sessions.values() if not s.finished)
            engine.add_demo_sessions(max(0, spec.buffer_sessions - running_now))

        step_at = spec.buffer_before
        end_at = spec.buffer_before + spec.buffer_after
        before_step = engine.knob("queue.maxsize")
        while (now := loop.time() - started) < end_at:
            top_up()
            if now >= step_at and consumer.delay_ms != 100.0:
                before_step = engine.knob("queue.maxsize")
                consumer.delay_ms = 100.0
            buffered.append(engine.snapshot(sessions=False).totals.buffered_bytes)
            value = engine.knob("queue.maxsize")
            if value != trace[-1][1]:
                trace.append((now, value))
            await asyncio.sleep(SAMPLE_EVERY / 2)
        engine.cancel_all()
        await engine.wait_idle()
        lost = engine.snapshot().totals
    moves = [(t, v) for t, v in trace if t >= step_at]
    return BufferRun(
        ceiling=ceiling,
        max_buffered=max(buffered, default=0),
        samples=len(buffered),
        over_ceiling=sum(1 for b in buffered if b > ceiling),
        step_at=step_at,
        maxsize_start=trace[0][1],
        maxsize_before_step=before_step,
        maxsize_end=trace[-1][1],
        moves_after_step=len(moves),
        settled_s=(moves[-1][0] - step_at) if moves else None,
        lost=lost.tokens_lost - lost.tokens_lost_cancelled,
        trace=tuple(trace),
    )


async def run_autotune(spec: AutotuneSpec | None = None) -> AutotuneResult:
    """The three scenarios, one after another (each runs its variants side by side)."""
    spec = spec or AutotuneSpec()
    started = time.monotonic()
    claude = await run_claude(spec)
    ollama = await run_ollama(spec)
    buffer = await run_buffer(spec)
    return AutotuneResult(spec, claude, ollama, buffer, wall_s=time.monotonic() - started)


def markdown_table(result: AutotuneResult) -> str:
    """The side-by-side tables as markdown (the goals are in `sluice bench`'s goal table)."""
    spec = result.spec
    lines = [
        f"claude: hidden capacity C = {spec.claude_capacity}, {spec.sessions} sessions x "
        f"{spec.claude_rounds} prompts, {spec.claude_deltas} deltas at {spec.pace * 1000:g} ms, "
        f"retry-after {spec.retry_after_ms} ms, window {spec.window:g} s",
        "",
        "| run | start | end | mean (2nd half) | completion | 429s / requests "
        "| 429 share after conv. | failed | lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.claude:
        share = r.throttle_share_after
        lines.append(
            f"| {r.name} | {r.start_limit} | {r.final_limit} | {r.mean_limit_last_half:.1f} | "
            f"{r.completion_s:.1f} s | {r.throttled} / {r.requests} | "
            f"{'-' if share is None else f'{share:.1%}'} | {r.failed} | {r.lost} |"
        )
    lines += [
        "",
        f"ollama: capacity C = {spec.ollama_capacity} (the rest queue), {spec.sessions} sessions x "
        f"{spec.ollama_rounds} prompts, TTFT {spec.ollama_ttft * 1000:g} ms unqueued, "
        f"{spec.ollama_chunks} chunks at {spec.pace * 1000:g} ms",
        "",
        "| run | start | end | mean (2nd half) | completion | TTFT p50 | TTFT p99 | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.ollama:
        p50 = "-" if r.ttft_p50 is None else f"{r.ttft_p50 * 1000:.0f} ms"
        p99 = "-" if r.ttft_p99 is None else f"{r.ttft_p99 * 1000:.0f} ms"
        lines.append(
            f"| {r.name} | {r.start_limit} | {r.final_limit} | {r.mean_limit_last_half:.1f} | "
            f"{r.completion_s:.1f} s | {p50} | {p99} | {r.failed} |"
        )
    b = result.buffer
    path = " -> ".join(f"{v} ({t:.1f}s)" for t, v in b.trace)
    lines += [
        "",
        f"maxsize: {spec.buffer_sessions} demo sessions, consumer 10 ms -> 100 ms a call at "
        f"{b.step_at:g} s, ceiling {b.ceiling} B; maxsize {path}",
    ]
    return "\n".join(lines)
