"""Snapshots: the frozen, plain-data view of the engine that the UI, the JSON output and the
benchmarks read. Field names follow the metric glossary in docs/architecture.md.

The UI only ever sees these objects, never live engine state; that narrow seam is what lets
the same app watch an engine elsewhere later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from sluice.engine.histogram import Percentiles

__all__ = [
    "SESSION_STATES",
    "BackendSnapshot",
    "EngineSnapshot",
    "Knobs",
    "ProcessSnapshot",
    "SessionDetail",
    "SessionSnapshot",
    "Totals",
]

SESSION_STATES = ("queued", "streaming", "draining", "done", "failed", "cancelled")
LATENCY_FIELDS = ("itl", "queue_wait", "token_age", "consumer_call")


def _flatten(obj: Any) -> dict[str, Any]:
    """Dataclass fields to a JSON-ready dict: a latency summary becomes `<name>_count`,
    `<name>_mean`, `<name>_p50`, `<name>_p90`, `<name>_p99`, `<name>_max`."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Percentiles):
            out[f"{f.name}_count"] = value.count
            for key in ("mean", "p50", "p90", "p99", "max"):
                out[f"{f.name}_{key}"] = getattr(value, key)
        elif isinstance(value, Mapping):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


@dataclass(frozen=True, slots=True)
class Knobs:
    """The live-tunable settings. `limits` maps backend name to its concurrency cap."""

    maxsize: int
    batch_max: int
    limits: Mapping[str, int]
    delay_ms: float
    rate: float
    sessions: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _flatten(self)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """One session's state and metrics at the moment of the snapshot (times in seconds)."""

    id: str
    backend: str
    state: str
    error: str | None
    attempts: int
    slot_wait: float | None
    ttft: float | None
    itl: Percentiles
    queue_wait: Percentiles
    token_age: Percentiles
    consumer_call: Percentiles
    stall: float
    stall_ratio: float
    depth: int
    maxsize: int
    high_water: int
    buffered_bytes: int
    tokens_in: int
    tokens_out: int
    tokens_lost: int
    rate_in: float
    rate_out: float
    memory_bytes: int
    elapsed: float
    streaming_time: float
    input_tokens: int | None
    output_tokens: int | None

    @property
    def finished(self) -> bool:
        """True once the session reached done, failed or cancelled."""
        return self.state in ("done", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; latency summaries flatten to `<name>_p50` and so on."""
        return _flatten(self)


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """What the detail view needs beyond the snapshot: prompt, text tail, the full error."""

    snapshot: SessionSnapshot
    prompt: str
    tail: str
    error_detail: str | None
    stop_reason: str | None
    model: str | None


@dataclass(frozen=True, slots=True)
class BackendSnapshot:
    """One backend's limiter: permits held, the cap, and sessions queued for a permit."""

    name: str
    limit: int
    in_use: int
    waiting: int


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """Process-wide figures. `memory_limit` is the cgroup limit where one is set, else None;
    `machine_memory` is the host's total. Loop lag's p99 is over the whole run
    (`loop_lag_p99`) and over the last 10 s (`loop_lag_p99_10s`, what a live screen shows)."""

    rss: int
    cpu_percent: float
    memory_limit: int | None
    machine_memory: int
    loop_lag: float
    loop_lag_p99: float | None
    peak_rss: int
    loop_lag_p99_10s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Totals:
    """Figures summed or merged across all sessions in the snapshot."""

    sessions: int
    states: Mapping[str, int]
    tokens_in: int
    tokens_out: int
    tokens_lost: int
    rate_in: float
    rate_out: float
    depth: int
    buffered_bytes: int
    memory_bytes: int
    high_water: int
    stall: float
    queue_wait: Percentiles
    token_age: Percentiles
    consumer_call: Percentiles
    ttft: Percentiles
    slot_wait: Percentiles

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, latency summaries flattened as in `SessionSnapshot.to_dict`."""
        return _flatten(self)


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Everything the UI shows, taken at `taken_at` (monotonic seconds)."""

    taken_at: float
    sessions: tuple[SessionSnapshot, ...]
    backends: tuple[BackendSnapshot, ...]
    knobs: Knobs
    process: ProcessSnapshot
    totals: Totals
