"""Cluster: N `sluice serve` nodes sharing one Claude limit through one Redis.

For each N (2, 4, 8 by default) the nodes run `cluster_workload` (each keeps sessions in
flight so the shared cap always has waiters) against one paced Anthropic-format upstream
that counts concurrent streams (`cluster_upstream`). Measured per N: the most streams the
upstream saw at once against the limit; chunks/s over a window, against one node with the
same limit and the same sessions in flight; Redis's share of getting a permit (grant
latency: the nodes' p50 median and p99 max); the time a knob changed on one node takes to
show on every node (polled on each node's API, p50 and p99); and, after `kill -9` of a node
holding permits, the time until Redis holds none of its leases (vs `lease_s`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from sluice.bench.cluster_upstream import Upstream
from sluice.bench.measure import child_env, median
from sluice.bench.redis_server import REDIS_SERVER, RedisServer
from sluice.engine.cluster.keys import Keys

__all__ = ["ClusterFigures", "ClusterResult", "redis_missing", "run_cluster"]

NODE_CONFIG = """\
[limits]
claude = {limit}
[consumer]
kind = "null"
[claude]
model = "bench-model"
timeout_s = 60
retries = 0
[cluster]
redis_url = "{url}"
name = "{name}"
node = "{node}"
shared = ["claude"]
lease_s = {lease}
"""


def redis_missing() -> str | None:
    """Why the cluster part cannot run here, or None."""
    if REDIS_SERVER is None:
        return "needs redis-server (apt-get install redis-server)"
    return None


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """One cluster size: `nodes`, the upstream's peak against `limit`, chunks/s and its ratio
    to one node, grant latency (seconds), knob propagation (seconds) and the recovery of a
    killed node's permits (seconds; None when no node could be caught holding one)."""

    nodes: int
    limit: int
    peak: int
    peak_ratio: float
    chunks_per_s: float
    vs_one_node: float
    grants: int
    grant_p50: float | None
    grant_p99: float | None
    knob_changes: int
    knob_p50: float
    knob_p99: float
    recovered_s: float | None


@dataclass(frozen=True, slots=True)
class ClusterResult:
    """The cluster part: its settings, the one-node baseline and one entry per size."""

    limit: int
    inflight: int
    deltas: int
    pace: float
    lease_s: float
    window_s: float
    one_node_cps: float
    sizes: tuple[ClusterFigures, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["sizes"] = [asdict(s) for s in self.sizes]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterResult:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["sizes"] = tuple(ClusterFigures(**s) for s in data["sizes"])
        return cls(**values)


class _Node:
    """One `sluice serve` node running the workload."""

    def __init__(self, folder: Path, name: str, cluster: str, redis_url: str, upstream: str,
                 limit: int, inflight: int, lease_s: float) -> None:  # fmt: skip
        self.name = name
        self.log = folder / f"{name}.log"  # its operator lines, for a failure's message
        config = folder / f"{name}.toml"
        config.write_text(
            NODE_CONFIG.format(limit=limit, url=redis_url, name=cluster, node=name, lease=lease_s)
        )
        env = child_env()
        env.update(
            ANTHROPIC_API_KEY="bench-key",
            ANTHROPIC_BASE_URL=upstream,
            SLUICE_BENCH_INFLIGHT=str(inflight),
            NO_PROXY="127.0.0.1,localhost",
        )
        env.pop("SLUICE_REDIS_URL", None)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sluice", "serve", "--bind", "127.0.0.1:0"),
                *("--config", str(config), "sluice.bench.cluster_workload:main"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            env=env,
            cwd=folder,
        )
        self.url = ""

    async def started(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 120)
        if not line.startswith("http://"):
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"node {self.name} did not start: {' '.join(tail)}")
        self.url = line.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def _knob_propagation(clients: list[httpx.AsyncClient], changes: int) -> list[float]:
    """Change `queue.maxsize` on each node in turn; seconds until every node shows it."""
    times = []
    for n in range(changes):
        value = 100 + n
        origin = clients[n % len(clients)]
        started = time.perf_counter()
        await origin.patch("/v1/knobs", json={"queue.maxsize": value})
        pending = set(range(len(clients)))
        while pending:
            answers = await asyncio.gather(*(clients[i].get("/v1/knobs") for i in pending))
            for i, answer in zip(list(pending), answers, strict=True):
                if answer.json()["knobs"]["queue.maxsize"]["value"] == value:
                    pending.discard(i)
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return times


async def _kill_and_recover(
    nodes: list[_Node], redis_url: str, keys: Keys, lease_s: float
) -> float | None:
    """SIGKILL a node holding permits; seconds until Redis holds none of its leases."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    holders = keys.semaphore("claude").holders
    try:
        victim = nodes[-1]
        prefix = f"{victim.name}/"
        for _ in range(500):
            if any(str(t).startswith(prefix) for t in await client.zrange(holders, 0, -1)):
                break
            await asyncio.sleep(0.01)
        else:
            return None
        victim.proc.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        deadline = killed + lease_s * 3
        while time.perf_counter() < deadline:
            if not any(str(t).startswith(prefix) for t in await client.zrange(holders, 0, -1)):
                return time.perf_counter() - killed
            await asyncio.sleep(0.01)
        return None
    finally:
        await client.aclose()


async def _snapshot_latency(
    clients: list[httpx.AsyncClient],
) -> tuple[int, float | None, float | None]:
    docs = [(await c.get("/v1/snapshot")).json()["cluster"] for c in clients]
    p50s = [d["grant_latency_p50"] for d in docs if d["grant_latency_p50"] is not None]
    p99s = [d["grant_latency_p99"] for d in docs if d["grant_latency_p99"] is not None]
    count = sum(int(d["grant_latency_count"]) for d in docs)
    return count, (median(p50s) if p50s else None), (max(p99s) if p99s else None)


async def _run_size(
    folder: Path,
    count: int,
    redis_url: str,
    upstream: Upstream,
    *,
    limit: int,
    inflight: int,
    lease_s: float,
    window: float,
    warmup: float,
    knob_changes: int,
    kill: bool,
) -> tuple[float, int, tuple[int, float | None, float | None], list[float], float | None]:
    """N nodes; returns (chunks/s, peak, grant latency, knob times, recovery seconds)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    keys = Keys(name)
    per_node = max(1, -(-inflight // count))
    upstream.gate.clear()
    nodes = [
        _Node(folder, f"b{count}n{i + 1}", name, redis_url, upstream.url, limit, per_node, lease_s)
        for i in range(count)
    ]
    clients: list[httpx.AsyncClient] = []
    try:
        await asyncio.gather(*(node.started() for node in nodes))
        clients = [httpx.AsyncClient(base_url=node.url, timeout=120) for node in nodes]
        if redis_url:  # every node in the cluster before the first answer flows
            await _all_joined(clients, count)
        upstream.reset_peak()  # from the first grant on: the start is where a cap is tested
        upstream.gate.set()
        for _ in range(1200):  # the nodes' clients are built on their first session
            if upstream.now >= limit:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(warmup)
        chunks = upstream.chunks
        started = time.perf_counter()
        await asyncio.sleep(window)
        cps = (upstream.chunks - chunks) / (time.perf_counter() - started)
        latency = await _snapshot_latency(clients) if redis_url else (0, None, None)
        knobs = await _knob_propagation(clients, knob_changes) if knob_changes else []
        recovered = await _kill_and_recover(nodes, redis_url, keys, lease_s) if kill else None
        return cps, upstream.peak, latency, knobs, recovered
    finally:
        for c in clients:
            await c.aclose()
        await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes))


async def _all_joined(clients: list[httpx.AsyncClient], count: int) -> None:
    for _ in range(1200):
        docs = [(await c.get("/v1/snapshot")).json()["cluster"] for c in clients]
        if all(d["connected"] and d["nodes"] == count for d in docs):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the {count} nodes did not all join the cluster within a minute")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_cluster(
    sizes: tuple[int, ...] = (2, 4, 8),
    *,
    limit: int = 8,
    inflight: int = 24,
    deltas: int = 20,
    pace: float = 0.025,
    lease_s: float = 5.0,
    window: float = 8.0,
    warmup: float = 2.0,
    knob_changes: int = 20,
) -> ClusterResult:
    """Measure one standalone node, then each cluster size in `sizes` (see the module's
    docstring)."""
    reason = redis_missing()
    if reason is not None:
        raise RuntimeError(f"the cluster part {reason}")
    with tempfile.TemporaryDirectory(prefix="sluice-bench-cluster-") as tmp:
        folder = Path(tmp)
        server = RedisServer(folder)
        upstream = await Upstream(deltas, pace).start()
        try:
            await asyncio.to_thread(server.start)
            common: dict[str, Any] = {
                "limit": limit,
                "inflight": inflight,
                "lease_s": lease_s,
                "window": window,
                "warmup": warmup,
            }
            # The baseline: one standalone node (no Redis) with the same limit and sessions.
            one_cps, *_ = await _run_size(
                folder, 1, "", upstream, knob_changes=0, kill=False, **common
            )
            figures = []
            for count in sizes:
                cps, peak, (grants, g50, g99), knobs, recovered = await _run_size(
                    folder,
                    count,
                    server.url,
                    upstream,
                    knob_changes=knob_changes,
                    kill=True,
                    **common,
                )
                figures.append(
                    ClusterFigures(
                        nodes=count,
                        limit=limit,
                        peak=peak,
                        peak_ratio=peak / limit,
                        chunks_per_s=cps,
                        vs_one_node=cps / one_cps if one_cps else 0.0,
                        grants=grants,
                        grant_p50=g50,
                        grant_p99=g99,
                        knob_changes=len(knobs),
                        knob_p50=_quantile(knobs, 0.5) if knobs else 0.0,
                        knob_p99=_quantile(knobs, 0.99) if knobs else 0.0,
                        recovered_s=recovered,
                    )
                )
        finally:
            await upstream.stop()
            server.stop()
    return ClusterResult(
        limit=limit,
        inflight=inflight,
        deltas=deltas,
        pace=pace,
        lease_s=lease_s,
        window_s=window,
        one_node_cps=one_cps,
        sizes=tuple(figures),
    )


if __name__ == "__main__":  # a quick look: python -m sluice.bench.cluster
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    print(asyncio.run(run_cluster()).to_dict())
