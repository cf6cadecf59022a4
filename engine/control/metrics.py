"""`GET /metrics`: the engine in Prometheus' text format, read at scrape time.

A custom `prometheus_client` collector reads one engine snapshot and the merged latency
histograms when Prometheus asks, so nothing is counted twice and the engine's hot path does
no Prometheus work at all; a cluster node adds `sluice_cluster_*` gauges. Histogram buckets
are the engine's own log buckets summed at powers of two (exact: every power of two is an
engine bucket bound), never invented values.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from sluice.engine.engine import Engine
from sluice.engine.histogram import Histogram
from sluice.engine.session import SUMMARY_REFRESH
from sluice.engine.snapshot import ClusterSnapshot

__all__ = [
    "BUCKET_BOUNDS",
    "CONTENT_TYPE",
    "EngineCollector",
    "MetricsRenderer",
    "cluster_families",
    "histogram_family",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# 2 us to 68 min, one bucket per power of two: 32 buckets plus +Inf per histogram.
BUCKET_BOUNDS: tuple[float, ...] = tuple(2.0**k for k in range(-19, 13))

_LATENCIES = (
    (
        "queue_wait",
        "per chunk: received from the backend to the end of the consumer call that processed it",
    ),
    (
        "token_age",
        "per chunk: generated upstream to processed (backends that know when they generated)",
    ),
    ("consumer_call", "duration of each consumer process(batch) call that returned"),
    ("ttft", "per session: slot granted to the first chunk with text"),
    ("slot_wait", "per session: requested to a slot granted by its backend's limiter"),
)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes floats (repr: exact, round-trips)."""
    return repr(bound)


def histogram_family(name: str, documentation: str, hist: Histogram) -> HistogramMetricFamily:
    """`hist` as a Prometheus histogram with cumulative buckets at BUCKET_BOUNDS.

    A bucket counts the values below its bound (a value exactly on a bound is counted in the
    next one: the engine's buckets are closed below); `+Inf` is the total count."""
    buckets = hist.buckets()
    cumulative: list[tuple[str, float]] = []
    seen = 0
    i = 0
    for bound in BUCKET_BOUNDS:
        while i < len(buckets) and buckets[i][0] <= bound:
            seen += buckets[i][1]
            i += 1
        cumulative.append((_le(bound), float(seen)))
    cumulative.append(("+Inf", float(hist.count)))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=hist.total)


def cluster_families(cluster: ClusterSnapshot) -> Iterator[Metric]:
    """A cluster node's view of its cluster: Redis reachable, live nodes, and each shared
    backend's cap across every node (as of Redis's last answer)."""
    yield GaugeMetricFamily(
        "sluice_cluster_connected",
        "1 while this node reaches the cluster's Redis (0: shared backends admit nobody new)",
        value=1 if cluster.connected else 0,
    )
    yield GaugeMetricFamily(
        "sluice_cluster_nodes", "live nodes in the cluster's registry", value=cluster.nodes
    )
    shared_gauges = (
        ("sluice_cluster_shared_in_use", "permits held across every node", "in_use"),
        ("sluice_cluster_shared_limit", "the cap across every node (limits.<backend>)", "limit"),
        ("sluice_cluster_shared_waiting", "sessions of every node waiting", "waiting"),
    )
    for name, doc, attr in shared_gauges:
        family = GaugeMetricFamily(name, f"shared backend: {doc}", labels=["backend"])
        for cap in cluster.shared:
            family.add_metric([cap.backend], getattr(cap, attr))
        yield family


class EngineCollector:
    """Collects `engine`'s figures at scrape time; `node` labels the `sluice_node_info`."""

    def __init__(self, engine: Engine, node: str) -> None:
        self.engine = engine
        self.node = node

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the engine's backends at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family, from one snapshot taken now."""
        engine = self.engine
        snap = engine.snapshot()
        totals = snap.totals
        process = snap.process

        info = GaugeMetricFamily(
            "sluice_node_info", "always 1; the node label names this engine", labels=["node"]
        )
        info.add_metric([self.node], 1)
        yield info

        backend_gauges = (
            ("sluice_backend_in_use", "sessions holding a slot of the backend's limiter", "in_use"),
            ("sluice_backend_limit", "the backend's concurrency limit (limits.<backend>)", "limit"),
            ("sluice_backend_waiting", "sessions queued for a slot of the backend", "waiting"),
        )
        for name, doc, attr in backend_gauges:
            family = GaugeMetricFamily(name, doc, labels=["backend"])
            for backend in snap.backends:
                family.add_metric([backend.name], getattr(backend, attr))
            yield family

        states = GaugeMetricFamily(
            "sluice_sessions",
            "sessions by state (finished ones beyond the engine's history included)",
            labels=["state"],
        )
        for state, count in totals.states.items():
            states.add_metric([state], count)
        yield states

        yield CounterMetricFamily(
            "sluice_chunks_in", "chunks received from the backends", value=totals.tokens_in
        )
        yield CounterMetricFamily(
            "sluice_chunks_out", "chunks the consumers processed", value=totals.tokens_out
        )
        yield CounterMetricFamily(
            "sluice_chunks_lost",
            "chunks received but never processed (failed or cancelled sessions)",
            value=totals.tokens_lost,
        )
        yield CounterMetricFamily(
            "sluice_stall_seconds",
            "time producers spent blocked on a full buffer (back-pressure), summed",
            value=totals.stall,
        )
        yield GaugeMetricFamily(
            "sluice_buffered_bytes",
            "bytes of the chunks held in every session's buffer now",
            value=totals.buffered_bytes,
        )
        yield GaugeMetricFamily(
            "sluice_buffered_chunks",
            "chunks held in every session's buffer now",
            value=totals.depth,
        )
        yield GaugeMetricFamily(
            "sluice_session_memory_bytes",
            "memory the sessions hold: buffers plus bookkeeping (not a share of RSS)",
            value=totals.memory_bytes,
        )

        knobs = GaugeMetricFamily(
            "sluice_knob", "live knob values by dotted config name", labels=["knob"]
        )
        for name, value in engine.knobs.items():
            knobs.add_metric([name], float(value))
        yield knobs

        # The snapshot above merged them (or did within SUMMARY_REFRESH): do not merge twice.
        for name, hist in engine.latency_histograms(max_age=SUMMARY_REFRESH).items():
            doc = dict(_LATENCIES)[name]
            yield histogram_family(f"sluice_{name}_seconds", doc, hist)
        yield histogram_family(
            "sluice_loop_lag_seconds",
            "how late the event loop ran a 0.1 s timer",
            engine.sampler.lag_histogram,
        )

        if snap.cluster is not None:
            yield from cluster_families(snap.cluster)

        yield GaugeMetricFamily(
            "sluice_process_resident_memory_bytes",
            "resident set size of the process (sampled at most every 0.5 s)",
            value=process.rss,
        )
        if process.memory_limit is not None:
            yield GaugeMetricFamily(
                "sluice_process_memory_limit_bytes",
                "the container's memory limit (cgroup)",
                value=process.memory_limit,
            )


class MetricsRenderer:
    """One registry holding one EngineCollector; `render()` is the scrape's body."""

    def __init__(self, engine: Engine, node: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(engine, node))

    def render(self) -> bytes:
        """The text exposition of every family, read from the engine now."""
        return generate_latest(self.registry)
