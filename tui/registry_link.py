"""`RegistryLink`: the app on every served node of a cluster, found in its Redis registry
(`sluice attach redis://...`).

A `RemoteLink` whose node list follows the registry: a `RegistryWatch` reads the live nodes
every second and `set_urls` attaches to the ones that serve, drops the ones whose card
expired and adds newcomers. Nodes without a usable control URL are listed, not attached.
While Redis cannot be read the nodes already attached stay followed (each over its own
link), the registry is retried with backoff, and the header says `cluster: disconnected
since ...`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sluice.engine.cluster.options import ClusterOptions
from sluice.engine.cluster.registry import CONNECTED, NodeInfo, RegistryStatus, RegistryWatch
from sluice.engine.control.client import ControlClient, NodeStatus, check_url
from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import ClusterSnapshot, EngineSnapshot
from sluice.engine.tasks import cancel_and_wait
from sluice.tui.link import NOT_SERVED, NodeView, RemoteLink, Report

__all__ = ["SERVE_HINT", "RegistryLink"]

SERVE_HINT = "no control API: run it under `sluice serve` to attach to it"


class RegistryLink(RemoteLink):
    """Every live node of the cluster `options` names, attached by the URL its card gives."""

    def __init__(
        self,
        options: ClusterOptions,
        *,
        client: Callable[[str], ControlClient] = ControlClient,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 1.0,
        backoff: tuple[float, float] = (0.5, 8.0),
    ) -> None:
        super().__init__((), client=client, clock=clock)
        self.options = options
        self.watch = RegistryWatch(options, self._found, interval_s=interval_s, backoff=backoff)
        self._unattachable: list[NodeView] = []
        self._watching: asyncio.Task[None] | None = None

    def _found(self, nodes: list[NodeInfo]) -> None:
        """Attach to exactly the live nodes that serve; list the others with why not."""
        urls: list[str] = []
        others: list[NodeView] = []
        for info in nodes:
            url = info.attach_url
            why = SERVE_HINT
            if url is not None:
                try:
                    check_url(url)
                except ValueError as exc:
                    why, url = f"its card's URL cannot be used: {exc}", None
            if url is not None:
                urls.append(url)
                continue
            status = NodeStatus("", NOT_SERVED, self.clock(), info.node, why)
            others.append(NodeView(f"registry:{info.id}", status, None))
        self._unattachable = others
        try:
            self.set_urls(urls)
        except ValueError:  # a client refused one (SLUICE_TOKEN with credentials in a URL)
            self.set_urls([u for u in urls if _usable(self._make_client, u)])

    def registry(self) -> RegistryStatus:
        """Where the registry stands."""
        return self.watch.status

    def nodes(self) -> Sequence[NodeView]:
        """The attached nodes, then the live ones that cannot be attached."""
        return [*super().nodes(), *self._unattachable]

    async def run(self, report: Report) -> None:
        """Follow the registry and every node it lists until the app ends."""
        self._watching = asyncio.get_running_loop().create_task(
            self.watch.run(), name="sluice-registry"
        )
        await super().run(report)

    async def aclose(self) -> None:
        """Stop reading the registry, then close every node's link (bounded)."""
        task, self._watching = self._watching, None
        await cancel_and_wait([task])
        await super().aclose()

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        """The nodes merged, with the cluster as the registry sees it: its live nodes
        counted (attached or not), and disconnected while the registry cannot be read."""
        snap = super().snapshot(sessions=sessions)
        status = self.watch.status
        up = status.state == CONNECTED
        cluster = snap.cluster
        if cluster is None:
            cluster = ClusterSnapshot(
                name=status.name,
                node="",
                redis=status.redis,
                connected=up,
                disconnected_since=None if up else status.since,
                nodes=len(status.nodes),
                lease_s=max((n.lease_s for n in status.nodes), default=0.0),
                shared=(),
                grant_latency=Percentiles.empty(),
                error=status.error,
            )
        else:
            cluster = replace(
                cluster, nodes=len(status.nodes) if self.watch.reads else cluster.nodes
            )
            if not up:
                since = min(status.since, cluster.disconnected_since or status.since)
                error = cluster.error or status.error
                cluster = replace(cluster, connected=False, disconnected_since=since, error=error)
        return replace(snap, cluster=cluster)


def _usable(make: Callable[[str], Any], url: str) -> bool:
    try:
        make(url)
    except ValueError:
        return False
    return True
