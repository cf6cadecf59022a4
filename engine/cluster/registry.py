"""The node registry: which nodes of a cluster are alive, and how to reach them.

Each node's heartbeat keeps its card (`NodeInfo`: name, control URL when it serves, start
time, pid) under the cluster's prefix with an expiry of one lease. `list_nodes` reads the
live ones: what `sluice attach redis://...` needs to find every node.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sluice.engine.cluster import scripts
from sluice.engine.cluster.keys import Keys
from sluice.engine.cluster.options import ClusterOptions

__all__ = ["NodeInfo", "list_nodes", "read_nodes"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One live node: `node` (its name), `id` (name/random, unique per process), `url` (its
    control API, None unless it serves), `started` and `expires` (Unix seconds; `expires`
    by Redis's clock), `pid`, `host`, the backends it shares and its lease."""

    node: str
    id: str
    url: str | None
    started: float
    expires: float
    pid: int
    host: str
    shared: tuple[str, ...]
    lease_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["shared"] = list(self.shared)
        return out


async def read_nodes(client: Any, keys: Keys) -> list[NodeInfo]:
    """The live nodes, by name, read with `client` (a redis.asyncio client)."""
    _now, flat = await client.register_script(scripts.NODES)(
        keys=[keys.nodes], args=[keys.node_info_prefix]
    )
    nodes = []
    for card, expiry in zip(flat[::2], flat[1::2], strict=True):
        try:
            data = json.loads(card)
            nodes.append(
                NodeInfo(
                    node=str(data["node"]),
                    id=str(data["id"]),
                    url=data.get("url"),
                    started=float(data["started"]),
                    expires=float(expiry) / 1000,
                    pid=int(data["pid"]),
                    host=str(data["host"]),
                    shared=tuple(data.get("shared", ())),
                    lease_s=float(data["lease_s"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a card this version cannot read
    return sorted(nodes, key=lambda n: (n.node, n.id))


async def list_nodes(options: ClusterOptions) -> list[NodeInfo]:
    """The live nodes of the cluster `options` names (one short connection)."""
    from sluice.engine.cluster.link import connect

    client = connect(options)
    try:
        return await read_nodes(client, Keys(options.name))
    finally:
        await client.aclose()
