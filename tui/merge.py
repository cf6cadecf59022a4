"""Several nodes' snapshots as one: the cluster view `sluice attach URL URL...` shows.

Counts, rates, bytes and depths are summed; the high water and the loop lag are the largest;
a latency summary keeps the summed count, the count-weighted mean and the worst node's
percentiles (percentiles of different nodes cannot be merged exactly without their
histograms, and the worst is the figure that matters). Backends are summed by name, except
a cluster-wide cap's limit (one limit for every node: the largest is kept, not the sum). The
cluster member: shared caps as one node's answer from Redis (the cluster's own figures),
this view's nodes' parts summed; disconnected when any node is, since the earliest. Each
session becomes a `NodeSession`, the same snapshot plus the node it runs on and a row key
unique across nodes (ids may repeat from node to node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import (
    BackendSnapshot,
    ClusterSnapshot,
    EngineSnapshot,
    ProcessSnapshot,
    SessionSnapshot,
    Totals,
)

__all__ = [
    "NodeSession",
    "has_figures",
    "merge",
    "merge_clusters",
    "row_key",
    "split_key",
    "with_node",
]

KEY_SEP = "\x1f"  # between a node's key and a session id in a row key (never in a node key)


@dataclass(frozen=True, slots=True)
class NodeSession(SessionSnapshot):
    """A session of a served engine: its snapshot, the node's name, and its row key."""

    node: str = ""
    key: str = ""


def row_key(session: SessionSnapshot) -> str:
    """The table's key for a session: its id in the app's own engine; node and id when it
    comes from a served one."""
    return session.key if isinstance(session, NodeSession) else session.id


def split_key(key: str) -> tuple[str, str]:
    """(node key, session id) of a row key made by `with_node`."""
    node, _, session_id = key.partition(KEY_SEP)
    return node, session_id


_SESSION_FIELDS = tuple(f.name for f in fields(SessionSnapshot))


def with_node(session: SessionSnapshot, node_key: str, node: str) -> NodeSession:
    """`session` marked as running on `node` (whose key, unique in this app, is
    `node_key`)."""
    values = {name: getattr(session, name) for name in _SESSION_FIELDS}
    return NodeSession(**values, node=node, key=f"{node_key}{KEY_SEP}{session.id}")


def _percentiles(parts: Sequence[Percentiles]) -> Percentiles:
    count = sum(p.count for p in parts)
    if not count:
        return Percentiles.empty()
    mean = sum((p.mean or 0.0) * p.count for p in parts) / count

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    return Percentiles(
        count,
        mean,
        worst([p.p50 for p in parts]),
        worst([p.p90 for p in parts]),
        worst([p.p99 for p in parts]),
        worst([p.max for p in parts]),
    )


def _totals(parts: Sequence[Totals]) -> Totals:
    states: dict[str, int] = {}
    for t in parts:
        for state, n in t.states.items():
            states[state] = states.get(state, 0) + n
    summed: dict[str, Any] = {}
    for f in fields(Totals):
        values = [getattr(t, f.name) for t in parts]
        if f.name == "states":
            summed[f.name] = MappingProxyType(states)
        elif f.name == "high_water":
            summed[f.name] = max(values)
        elif isinstance(values[0], Percentiles):
            summed[f.name] = _percentiles(values)
        else:
            summed[f.name] = sum(values)
    return Totals(**summed)


def _process(parts: Sequence[ProcessSnapshot]) -> ProcessSnapshot:
    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    limits = [p.memory_limit for p in parts]
    return ProcessSnapshot(
        rss=sum(p.rss for p in parts),
        cpu_percent=sum(p.cpu_percent for p in parts),
        memory_limit=None if None in limits else sum(x for x in limits if x is not None),
        machine_memory=sum(p.machine_memory for p in parts),
        loop_lag=max(p.loop_lag for p in parts),
        loop_lag_p99=worst([p.loop_lag_p99 for p in parts]),
        peak_rss=sum(p.peak_rss for p in parts),
        loop_lag_p99_10s=worst([p.loop_lag_p99_10s for p in parts]),
    )


def _backends(
    parts: Sequence[Sequence[BackendSnapshot]], shared: frozenset[str] = frozenset()
) -> tuple[BackendSnapshot, ...]:
    by_name: dict[str, list[int]] = {}
    for backends in parts:
        for b in backends:
            sums = by_name.setdefault(b.name, [0, 0, 0])
            # A cluster-wide cap is one limit, not one per node.
            sums[0] = max(sums[0], b.limit) if b.name in shared else sums[0] + b.limit
            sums[1] += b.in_use
            sums[2] += b.waiting
    return tuple(BackendSnapshot(name, *sums) for name, sums in by_name.items())


def merge_clusters(parts: Sequence[ClusterSnapshot]) -> ClusterSnapshot:
    """Several nodes' views of their cluster as one (at least one). The cluster's own
    figures (caps, live nodes) come from a connected node's last answer from Redis (the
    first such node), this view's nodes' parts (`node_in_use`, `node_waiting`) are summed;
    disconnected when any node is (since the earliest, with its reason)."""
    up = [c for c in parts if c.connected]
    base = up[0] if up else parts[0]
    mine: dict[str, list[int]] = {}
    for c in parts:
        for cap in c.shared:
            sums = mine.setdefault(cap.backend, [0, 0])
            sums[0] += cap.node_in_use
            sums[1] += cap.node_waiting
    shared = tuple(
        replace(cap, node_in_use=mine[cap.backend][0], node_waiting=mine[cap.backend][1])
        for cap in base.shared
    )
    down = [c for c in parts if not c.connected and c.disconnected_since is not None]
    failed = [c for c in down if c.error is not None]
    worst = min(failed or down, key=lambda c: c.disconnected_since or 0.0, default=None)
    return ClusterSnapshot(
        name=base.name,
        node=", ".join(dict.fromkeys(c.node for c in parts)),
        redis=base.redis,
        connected=worst is None,
        disconnected_since=worst.disconnected_since if worst is not None else None,
        nodes=max(c.nodes for c in up) if up else base.nodes,
        lease_s=max(c.lease_s for c in parts),
        shared=shared,
        grant_latency=_percentiles([c.grant_latency for c in parts]),
        error=worst.error if worst is not None else None,
    )


def merge(
    snapshots: Sequence[EngineSnapshot],
    sessions: Sequence[SessionSnapshot],
    knobs: Mapping[str, Any],
    taken_at: float,
) -> EngineSnapshot:
    """One snapshot of several nodes: `sessions` (already marked with their nodes) and
    `knobs` as given, the rest merged; `taken_at` on the viewer's clock. At least one."""
    clusters = [s.cluster for s in snapshots if s.cluster is not None]
    cluster = merge_clusters(clusters) if clusters else None
    if len(snapshots) == 1:
        only = snapshots[0]
        backends, process, totals = only.backends, only.process, only.totals
    else:
        shared = frozenset(cap.backend for c in clusters for cap in c.shared)
        backends = _backends([s.backends for s in snapshots], shared)
        process = _process([s.process for s in snapshots])
        totals = _totals([s.totals for s in snapshots])
    return EngineSnapshot(
        taken_at,
        tuple(sessions),
        backends,
        MappingProxyType(dict(knobs)),
        process,
        totals,
        cluster,
    )


def has_figures(snap: EngineSnapshot) -> bool:
    """False for the snapshot of no engine the link gives with every node down (a real
    engine always knows its machine's memory)."""
    return snap.process.machine_memory > 0
