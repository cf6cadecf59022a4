"""Snapshots: the frozen, plain-data view of the engine that the UI, the JSON output and the
benchmarks read. Field names follow the metric glossary in docs/architecture.md.

The UI only ever sees these objects, never live engine state; that narrow seam is what lets
the same app watch an engine elsewhere later.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar

from sluice.engine.fastinit import fast_frozen_init
from sluice.engine.histogram import Percentiles
from sluice.engine.settings import SETTINGS

__all__ = [
    "SESSION_STATES",
    "STOP_WARNINGS",
    "AutoKnobSnapshot",
    "BackendSnapshot",
    "ClusterSnapshot",
    "EngineSnapshot",
    "ProcessSnapshot",
    "SessionDetail",
    "SessionSnapshot",
    "SharedCap",
    "Totals",
]

SESSION_STATES = ("queued", "streaming", "draining", "done", "failed", "cancelled")
# Stop reasons that mean the answer is not whole, and what to call that: the token limit
# (Claude's max_tokens, Ollama's length, a full context window) or a refusal.
STOP_WARNINGS: Mapping[str, str] = {
    "max_tokens": "truncated",
    "length": "truncated",
    "model_context_window_exceeded": "truncated",
    "refusal": "refused",
}
# Tables whose knobs the run's JSON gathers in one object under the table's name (their keys,
# `claude` or `maxsize`, would clash with other tables' keys).
NESTED_KNOB_TABLES = ("limits", "autotune")
LATENCY_FIELDS = ("itl", "queue_wait", "token_age", "consumer_call")
_PERCENTILE_KEYS = ("count", "mean", "p50", "p90", "p99", "max")

D = TypeVar("D")


_PLAIN, _SUMMARY, _MAPPING = 0, 1, 2
_Plan = tuple[tuple[str, int, tuple[str, ...]], ...]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """Per field of a snapshot class: its name, how it is flattened, and for a latency
    summary its six JSON keys. Worked out once per class from the declared field types, so
    flattening 1,000 sessions for a 10 Hz event stream stays cheap."""
    cached = _PLANS.get(cls)
    if cached is not None:
        return cached
    plan = []
    for f in fields(cls):
        kind = str(f.type)
        if kind == "Percentiles":
            plan.append((f.name, _SUMMARY, tuple(f"{f.name}_{k}" for k in _PERCENTILE_KEYS)))
        elif kind.startswith("Mapping"):
            plan.append((f.name, _MAPPING, ()))
        else:
            plan.append((f.name, _PLAIN, ()))
    _PLANS[cls] = result = tuple(plan)
    return result


def _flatten(obj: Any) -> dict[str, Any]:
    """Dataclass fields to a JSON-ready dict: a latency summary becomes `<name>_count`,
    `<name>_mean`, `<name>_p50`, `<name>_p90`, `<name>_p99`, `<name>_max`."""
    out: dict[str, Any] = {}
    for name, kind, keys in _plan(type(obj)):
        value = getattr(obj, name)
        if kind == _PLAIN:
            out[name] = value
        elif kind == _SUMMARY:
            out[keys[0]] = value.count
            out[keys[1]] = value.mean
            out[keys[2]] = value.p50
            out[keys[3]] = value.p90
            out[keys[4]] = value.p99
            out[keys[5]] = value.max
        else:
            out[name] = dict(value)
    return out


def _unflatten(cls: type[D], data: Mapping[str, Any]) -> D:
    """The inverse of `_flatten`: a dataclass from its JSON dict (what a remote app receives).

    A field typed `Percentiles` is rebuilt from its six `<name>_*` keys, a mapping field is
    frozen again; unknown keys are ignored, so a newer server's extra members do no harm.
    KeyError or TypeError when a member is missing or malformed."""
    values: dict[str, Any] = {}
    defaults = {f.name for f in fields(cls) if f.default is not MISSING}  # type: ignore[arg-type]
    for name, kind, keys in _plan(cls):
        if kind == _SUMMARY:
            if keys[0] not in data and name in defaults:
                continue  # an older server's JSON: the field's default
            values[name] = Percentiles(*(data[key] for key in keys))
        elif kind == _MAPPING:
            values[name] = MappingProxyType(dict(data[name]))
        elif name in data or name not in defaults:  # a field with a default may be absent
            values[name] = data[name]
    return cls(**values)


NO_LATENCY = Percentiles.empty()  # a latency summary of nothing (a default)


@fast_frozen_init  # built for every session every second: half the cost of the generated one
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
    stop_reason: str | None = None  # why the model stopped, as the backend said (None: unknown)
    # The agent backend's result and the deltas it counted but did not deliver as text (None
    # for backends that do not report them).
    cost_usd: float | None = None
    turns: int | None = None
    tool_deltas: int | None = None
    thinking_deltas: int | None = None

    @property
    def finished(self) -> bool:
        """True once the session reached done, failed or cancelled."""
        return self.state in ("done", "failed", "cancelled")

    @property
    def stop_warning(self) -> str | None:
        """`truncated` or `refused` when the stop reason says the answer is not whole."""
        return STOP_WARNINGS.get(self.stop_reason or "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; latency summaries flatten to `<name>_p50` and so on."""
        return _flatten(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionSnapshot:
        """The inverse of `to_dict` (one of `sessions[]` in the JSON)."""
        return _unflatten(cls, data)


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendSnapshot:
        """The inverse of `to_dict` (one of `backends[]` in the JSON)."""
        return _unflatten(cls, data)


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessSnapshot:
        """The inverse of `to_dict` (the `process` member of the JSON)."""
        return _unflatten(cls, data)


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
    # The part of tokens_lost held by cancelled sessions: dropped on request, not by a fault.
    tokens_lost_cancelled: int = 0
    # queue_wait of the chunks processed in the last RECENT_S seconds only (the whole run's
    # p99 never comes down after a retune; this one does).
    queue_wait_10s: Percentiles = NO_LATENCY

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, latency summaries flattened as in `SessionSnapshot.to_dict`."""
        return _flatten(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Totals:
        """The inverse of `to_dict` (the `totals` member of the JSON)."""
        return _unflatten(cls, data)


def knobs_from_json(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knob values by dotted name from either JSON shape: the control API's entries by
    dotted name (each with a `value`), or the run's `knobs` object (`maxsize`, `limits`...),
    whose keys are matched to their tables through the settings registry."""
    if any("." in name for name in knobs):
        return {name: entry["value"] for name, entry in knobs.items()}
    tables = {
        s.key: s.table for s in SETTINGS.values() if s.live and s.table not in NESTED_KNOB_TABLES
    }
    values: dict[str, Any] = {}
    for key, value in knobs.items():
        if key in NESTED_KNOB_TABLES:
            values.update({f"{key}.{name}": item for name, item in value.items()})
        elif key in tables:
            values[f"{tables[key]}.{key}"] = value
    return values


@dataclass(frozen=True, slots=True)
class SharedCap:
    """A shared backend's cap across the cluster: `limit`, permits held by all nodes
    (`in_use`) and sessions of all nodes waiting (`waiting`), as of Redis's last answer;
    `node_in_use` / `node_waiting` are this node's part."""

    backend: str
    limit: int
    in_use: int
    waiting: int
    node_in_use: int
    node_waiting: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedCap:
        """The inverse of `to_dict`."""
        return _unflatten(cls, data)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """The cluster as one node sees it (None in the snapshot of a standalone engine).
    `disconnected_since` is Unix time (None while connected); `redis` never shows
    credentials; `grant_latency` is the time Redis added to getting a permit, per grant."""

    name: str
    node: str
    redis: str
    connected: bool
    disconnected_since: float | None
    nodes: int
    lease_s: float
    shared: tuple[SharedCap, ...]
    grant_latency: Percentiles
    error: str | None = None
    autotune_leader: str | None = None  # the node whose auto-tune moves the knobs, if any

    @property
    def state(self) -> str:
        """`connected`, `connecting` (the first attempt is under way), or `disconnected
        since HH:MM:SS` (local time; since the start when Redis was never reached)."""
        if self.connected or self.disconnected_since is None:
            return "connected"
        if self.error is None:
            return "connecting"
        since = time.localtime(self.disconnected_since)
        return f"disconnected since {time.strftime('%H:%M:%S', since)}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, `state` in words, `shared` as a list of objects,
        the latency flattened like the sessions' (`grant_latency_p50`, ...)."""
        out = _flatten(self)
        out["shared"] = [cap.to_dict() for cap in self.shared]
        out["state"] = self.state
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterSnapshot:
        """The inverse of `to_dict` (the `cluster` member of the JSON)."""
        values = dict(data)
        values["shared"] = tuple(SharedCap.from_dict(cap) for cap in data["shared"])
        return _unflatten(cls, values)


@dataclass(frozen=True, slots=True)
class AutoKnobSnapshot:
    """One auto-tuned knob: its switch, the last move and why, and its recent history.

    `points` are (taken_at, value, signal) over the last minutes, one about a second; the
    signal is what drives the knob, named by `signal` (`429s` per point for the claude
    limit, `ttft p50 ms` for the ollama limit, `call ms` for maxsize; None when no sample
    came in). `baseline` is the TTFT baseline in ms (the ollama limit's, else None);
    `retry_after` the seconds still to wait that a server asked for (claude, else None)."""

    knob: str
    switch: str
    on: bool
    reason: str | None
    moved_at: float | None
    signal: str
    baseline: float | None
    retry_after: float | None
    points: tuple[tuple[float, float, float | None], ...]
    led_by: str | None = None  # in a cluster, on a node that is not the leader: the leader

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (points as lists of three)."""
        out = asdict(self)
        out["points"] = [list(p) for p in self.points]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoKnobSnapshot:
        """The inverse of `to_dict` (one of `autotune[]` in the JSON)."""
        values = dict(data)
        values["points"] = tuple(
            (float(t), float(v), None if x is None else float(x)) for t, v, x in data["points"]
        )
        return _unflatten(cls, values)


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Everything the UI shows, taken at `taken_at` (monotonic seconds)."""

    taken_at: float
    sessions: tuple[SessionSnapshot, ...]
    backends: tuple[BackendSnapshot, ...]
    knobs: Mapping[str, Any]  # live knob values by dotted config name (`queue.maxsize`)
    process: ProcessSnapshot
    totals: Totals
    cluster: ClusterSnapshot | None = None  # None: a standalone engine
    # The auto-tuned knobs (switched on now, or earlier in this run), in registry order.
    autotune: tuple[AutoKnobSnapshot, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSnapshot:
        """A snapshot from its JSON: the control API's `/v1/snapshot` document (knobs as
        entries by dotted name, each with a `value`) or `sluice run --json` (knobs by key,
        the limits in one object; `taken_at` is then 0.0). See docs/json.md."""
        parsed = MappingProxyType(knobs_from_json(data["knobs"]))
        return cls(
            taken_at=float(data.get("taken_at", 0.0)),
            sessions=tuple(SessionSnapshot.from_dict(s) for s in data["sessions"]),
            backends=tuple(BackendSnapshot.from_dict(b) for b in data["backends"]),
            knobs=parsed,
            process=ProcessSnapshot.from_dict(data["process"]),
            totals=Totals.from_dict(data["totals"]),
            cluster=ClusterSnapshot.from_dict(data["cluster"]) if data.get("cluster") else None,
            autotune=tuple(AutoKnobSnapshot.from_dict(a) for a in data.get("autotune", ())),
        )
