"""Frozen engine snapshots for the app's screenshot tests: fixed numbers, no clock."""

from __future__ import annotations

from types import MappingProxyType

from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import (
    SESSION_STATES,
    BackendSnapshot,
    EngineSnapshot,
    ProcessSnapshot,
    SessionDetail,
    SessionSnapshot,
    Totals,
)

MB = 1024 * 1024
STATES = ("streaming", "streaming", "streaming", "streaming", "queued", "queued", "done", "failed")


def pct(base: float) -> Percentiles:
    """A latency summary around `base` seconds."""
    return Percentiles(100, base, base, base * 1.8, base * 2.5, base * 3)


def session(i: int, t: int) -> SessionSnapshot:
    """Session number `i` at step `t` of the replay."""
    state = STATES[i % len(STATES)]
    running = state == "streaming"
    depth = (i * 3 + t) % 17 if running else 0
    tokens_in = 20 * i + 5 * t if state != "queued" else 0
    tokens_out = max(0, tokens_in - depth)
    return SessionSnapshot(
        id=f"demo-{i:04d}",
        backend="demo",
        state=state,
        error="backend: BackendError: upstream closed the stream" if state == "failed" else None,
        attempts=1,
        slot_wait=None if state == "queued" else 0.25 * i,
        ttft=None if state == "queued" else 0.3,
        itl=pct(0.025),
        queue_wait=pct(0.05 * (i + 1)),
        token_age=pct(0.07 * (i + 1)),
        consumer_call=pct(0.05),
        stall=0.1 * i,
        stall_ratio=min(0.9, 0.07 * i),
        depth=min(depth, 16),
        maxsize=16,
        high_water=16 if running else 0,
        buffered_bytes=min(depth, 16) * 930,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_lost=0,
        rate_in=40.0 if running else 0.0,
        rate_out=20.0 if running else 0.0,
        memory_bytes=min(depth, 16) * 930 + 4096,
        elapsed=10.0 + t,
        streaming_time=5.0 + t if state != "queued" else 0.0,
        input_tokens=None,
        output_tokens=None,
        stop_reason="max_tokens" if state == "done" else None,  # a cut answer, marked
    )


def snapshot(t: int, sessions: int = 12) -> EngineSnapshot:
    """The whole engine at replay step `t` (one step = one second)."""
    rows = tuple(session(i, t) for i in range(1, sessions + 1))
    states = dict.fromkeys(SESSION_STATES, 0)
    for s in rows:
        states[s.state] += 1
    knobs = MappingProxyType(
        {
            "queue.maxsize": 16,
            "queue.batch_max": 1,
            "limits.claude": 4,
            "limits.ollama": 6,
            "limits.demo": 4,
            "limits.agent": 2,
            "consumer.delay_ms": 50.0,
            "demo.rate": 40.0,
            "demo.sessions": sessions,
        }
    )
    wave = (t % 10) / 10
    totals = Totals(
        sessions=len(rows),
        states=MappingProxyType(states),
        tokens_in=sum(s.tokens_in for s in rows),
        tokens_out=sum(s.tokens_out for s in rows),
        tokens_lost=0,
        rate_in=120.0 + 40 * wave,
        rate_out=80.0,
        depth=sum(s.depth for s in rows),
        buffered_bytes=sum(s.buffered_bytes for s in rows),
        memory_bytes=sum(s.memory_bytes for s in rows),
        high_water=16,
        stall=3.0,
        queue_wait=pct(0.4 + wave),
        token_age=pct(0.6),
        consumer_call=pct(0.05),
        ttft=pct(0.3),
        slot_wait=pct(1.0),
        queue_wait_10s=pct(0.4 + wave),  # the frozen run's waits do not change over time
    )
    process = ProcessSnapshot(
        rss=(60 + t // 6) * MB,
        cpu_percent=12.0,
        memory_limit=2048 * MB,
        machine_memory=8192 * MB,
        loop_lag=0.0012,
        loop_lag_p99=0.004,
        peak_rss=70 * MB,
        loop_lag_p99_10s=0.003,
    )
    backends = (
        BackendSnapshot("claude", 4, 0, 0),
        BackendSnapshot("ollama", 6, 0, 0),
        BackendSnapshot("demo", 4, 4, states["queued"]),
    )
    return EngineSnapshot(
        taken_at=1000.0 + t,
        sessions=rows,
        backends=backends,
        knobs=knobs,
        process=process,
        totals=totals,
    )


def details(snap: EngineSnapshot) -> dict[str, SessionDetail]:
    """A detail for every session of `snap`."""
    text = "Back-pressure moves the waiting upstream; it does not remove it. " * 6
    return {
        s.id: SessionDetail(
            snapshot=s,
            prompt=f"demo prompt {s.id[-2:]}",
            tail=text,
            error_detail=(
                "backend: engine.backends.base.BackendError: upstream closed the stream "
                "after 120 chunks (no end-of-message marker)"
                if s.error
                else None
            ),
            stop_reason=s.stop_reason,
            model="demo-1",
        )
        for s in snap.sessions
    }


class FrozenClock:
    """0.0 on the first call (the app's start), 65.0 ever after."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return 0.0 if self.calls == 1 else 65.0
