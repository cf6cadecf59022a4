"""The node registry: which nodes of a cluster are alive, and how to reach them.

Each node's heartbeat keeps its card (`NodeInfo`: name, control URL when it serves, start
time, pid) under the cluster's prefix with an expiry of one lease. `list_nodes` reads the
live ones once; `RegistryWatch` keeps reading them (what `sluice attach redis://...` follows),
without joining the cluster. Cards are other processes' writing: read as untrusted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluice.engine.cluster import scripts
from sluice.engine.cluster.keys import Keys
from sluice.engine.cluster.options import ClusterOptions
from sluice.engine.redact import redact
from sluice.engine.tasks import close_quietly

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "DISCONNECTED",
    "NodeInfo",
    "RegistryStatus",
    "RegistryWatch",
    "list_nodes",
    "read_nodes",
]

CONNECTING, CONNECTED, DISCONNECTED = "connecting", "connected", "disconnected"
_ANY_HOST = ("0.0.0.0", "::", "")


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

    @property
    def attach_url(self) -> str | None:
        """Where to reach its control API from another machine: its URL, with a wildcard
        bind address (`--bind 0.0.0.0:8321`) replaced by the node's host name; None when
        it does not serve (or the card's URL is not a URL)."""
        if not self.url:
            return None
        try:
            parts = urlsplit(self.url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return None
        if host is None or host.strip("[]") not in _ANY_HOST or not self.host:
            return self.url
        netloc = f"{self.host}:{port}" if port is not None else self.host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
                    url=data["url"] if isinstance(data.get("url"), str) else None,
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


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """What a `RegistryWatch` knows: the cluster's `name`, Redis as it may be shown
    (`redis`, credentials hidden), `state` (connecting / connected / disconnected) since
    `since` (Unix time), why the last read failed (`error`, one line), and the live
    nodes as last read (kept while Redis cannot be reached)."""

    name: str
    redis: str
    state: str
    since: float
    error: str | None
    nodes: tuple[NodeInfo, ...]


class RegistryWatch:
    """Follows the registry of the cluster `options` names without joining it: reads the
    live nodes every `interval_s` and calls `on_nodes` with them after each read. A read
    that fails marks it disconnected (the last list is kept) and is retried after a
    pause that doubles from `backoff[0]` up to `backoff[1]` (jittered). Never raises."""

    def __init__(
        self,
        options: ClusterOptions,
        on_nodes: Callable[[list[NodeInfo]], None],
        *,
        interval_s: float = 1.0,
        backoff: tuple[float, float] = (0.5, 8.0),
    ) -> None:
        self.options = options
        self.keys = Keys(options.name)
        self.on_nodes = on_nodes
        self.interval_s = interval_s
        self.backoff = backoff
        self.reads = 0  # successful reads so far
        self._status = RegistryStatus(
            options.name, options.shown_url, CONNECTING, time.time(), None, ()
        )
        self._client: Any = None

    @property
    def status(self) -> RegistryStatus:
        """Where the watch stands now."""
        return self._status

    def _set(self, state: str, error: str | None, nodes: tuple[NodeInfo, ...]) -> None:
        old = self._status
        keep = state == old.state or (state == DISCONNECTED and old.state == CONNECTING)
        since = old.since if keep else time.time()
        self._status = RegistryStatus(old.name, old.redis, state, since, error, nodes)

    async def run(self) -> None:
        """Read, call back, wait; until cancelled (then the connection is closed)."""
        from sluice.engine.cluster.link import connect

        failures = 0
        try:
            while True:
                try:
                    if self._client is None:
                        self._client = connect(self.options)
                    nodes = await read_nodes(self._client, self.keys)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # unreachable, refused (NOAUTH), a bad answer
                    await self._drop()
                    why = redact(f"{type(exc).__name__}: {exc}").splitlines()
                    self._set(DISCONNECTED, (why or ["?"])[0][:300], self._status.nodes)
                    low, cap = self.backoff
                    delay = min(cap, low * 2**failures) * random.uniform(0.5, 1.0)
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                self.reads += 1
                self._set(CONNECTED, None, tuple(nodes))
                self.on_nodes(nodes)
                await asyncio.sleep(self.interval_s)
        finally:
            await self._drop()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_quietly(client.aclose(), 1.0)
