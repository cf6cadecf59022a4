"""ClusterLink: one node's connection to its cluster's Redis.

It owns the Redis client and the pub/sub connection, the node's heartbeat (its card in the
registry, the renewal of the leases it holds, the cluster's figures), the shared backends'
limiters and the knob sync. One task keeps it connected: connect, heartbeat once (which
re-asserts held leases after a Redis that lost its data), join the knobs, subscribe, then
heartbeat every `heartbeat_s` and read messages until something fails; then it is
disconnected (shared backends admit nobody new) and tries again every `retry_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sluice.engine.cluster import scripts
from sluice.engine.cluster.keys import Keys, SemaphoreKeys
from sluice.engine.cluster.knobs import KnobSync
from sluice.engine.cluster.leader import LEAD, RESIGN, AutotuneLeader
from sluice.engine.cluster.limiter import ClusterLimiter
from sluice.engine.cluster.options import ClusterOptions
from sluice.engine.cluster.registry import NodeInfo, read_nodes
from sluice.engine.histogram import Histogram
from sluice.engine.redact import redact
from sluice.engine.snapshot import ClusterSnapshot, SharedCap
from sluice.engine.tasks import cancel_and_wait, close_quietly, wait_event

if TYPE_CHECKING:
    from sluice.engine.engine import Engine

__all__ = ["ClusterLink", "connect"]

log = logging.getLogger("sluice.cluster")

UNREACHABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)


_LEADER_SCRIPTS = {"lead": LEAD, "resign": RESIGN}


class _Broken(RedisConnectionError):
    """A limiter's or the knob sync's call found Redis unreachable (already recorded)."""


def connect(options: ClusterOptions) -> aioredis.Redis:
    """A client for the cluster's Redis that fails fast (no retries of its own: the link
    decides what a failure means) with timeouts scaled to the lease."""
    timeout = min(5.0, max(1.0, options.lease_s / 2))
    return aioredis.Redis.from_url(
        options.url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=None,
    )


class ClusterLink:
    """A node of the cluster `options` names; the engine makes one when `[cluster]
    redis_url` (or SLUICE_REDIS_URL) is set, and starts and closes it with itself."""

    def __init__(self, options: ClusterOptions, engine: Engine | None = None) -> None:
        self.options = options
        self.keys = Keys(options.name)
        self.node = options.node
        self.node_id = f"{options.node}/{secrets.token_hex(4)}"  # unique per process
        self.lease_ms = int(options.lease_s * 1000)
        self.heartbeat_s = min(1.0, options.lease_s / 3)
        self.poll_s = min(1.0, options.lease_s / 4)
        self.retry_s = min(0.5, options.lease_s / 4)
        self.unreachable_errors = UNREACHABLE
        self.started_at = time.time()
        self.control_url: str | None = None
        self.grant_latency = Histogram()
        self.limiters: dict[str, ClusterLimiter] = {}
        self.knobs = KnobSync(self, engine) if engine is not None else None
        self.leader = AutotuneLeader(self.node_id, options.lease_s)
        self._engine = engine
        self.live_nodes = 0
        self.epoch = ""
        self.connected = False
        self.disconnected_since: float | None = time.time()  # wall clock; None: connected
        self.last_error: str | None = None
        self._ever_up = False
        self._tickets = itertools.count(1)
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._up: asyncio.Event | None = None
        self._broken: asyncio.Event | None = None
        self._beat_now: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def shared(self) -> tuple[str, ...]:
        """The backends whose caps count across the cluster."""
        return self.options.shared

    @property
    def applying(self) -> bool:
        """True while a knob change from another node is being applied here."""
        return self.knobs is not None and self.knobs.applying

    def limiter(self, backend: str, limit: int) -> ClusterLimiter:
        """The cluster-wide cap of `backend` (one per backend)."""
        if backend not in self.limiters:
            self.limiters[backend] = ClusterLimiter(self, backend, limit)
        return self.limiters[backend]

    def new_ticket(self) -> str:
        """A ticket id no other waiter of any node has: `<node id>|<n>`."""
        return f"{self.node_id}|{next(self._tickets)}"

    def advertise(self, url: str | None) -> None:
        """The control API's URL this node serves (`sluice serve`), shown in the registry
        from the next heartbeat on."""
        self.control_url = url
        if self._beat_now is not None:
            self._beat_now.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start the limiters' workers (in the running loop)."""
        if self._task is not None or self._closed:
            return
        self._up = asyncio.Event()
        self._broken = asyncio.Event()
        self._beat_now = asyncio.Event()
        for limiter in self.limiters.values():
            limiter.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sluice-cluster")

    async def aclose(self) -> None:
        """Give back what this node holds and leave the registry (bounded), then close."""
        if self._closed:
            return
        self._closed = True
        for limiter in self.limiters.values():
            await close_quietly(limiter.stop(), 2.0)
        if self.knobs is not None:
            await self.knobs.aclose()
        if self.connected and self._client is not None:
            # On failure the card and the heartbeat expire by themselves.
            await close_quietly(self._leave(), 2.0)
            await close_quietly(self._resign(), 2.0)
        task, self._task = self._task, None
        await cancel_and_wait([task])
        await self._drop_client()

    async def _resign(self) -> None:
        """Give the auto-tune lease back so another node leads without waiting a lease."""
        self.leader.lost()
        await self._script("resign")(keys=[self.keys.autotune_leader], args=[self.node_id])

    @property
    def leads_autotune(self) -> bool:
        """True while this node is the one whose auto-tune moves the cluster's knobs."""
        return self.connected and self.leader.leading

    async def _lead(self) -> None:
        """Take or renew the auto-tune lease while an auto switch is on (leader.py)."""
        if self._engine is None or not self._engine.autotune.any_on():
            if self.leader.leading:
                await self._resign()
            self.leader.lost()
            return
        keys = [self.keys.autotune_leader, self.keys.autotune_throttles]
        await self.leader.beat(
            lambda pending: self._script("lead")(
                keys=keys, args=[self.node_id, self.lease_ms, pending]
            )
        )

    async def _leave(self) -> None:
        await self._script("leave")(
            keys=[self.keys.nodes, self.keys.node_info(self.node_id)], args=[self.node_id]
        )

    # -- connection state ------------------------------------------------------------------

    async def wait_connected(self) -> None:
        """Wait until Redis answers (returns at once when it does)."""
        if self._up is not None:
            await self._up.wait()

    def lost(self, exc: BaseException) -> None:
        """A call found Redis unreachable: disconnected until the link reconnects."""
        if self._broken is not None:
            self._broken.set()
        self.leader.lost()
        self._set_down(exc)

    def _set_down(self, exc: BaseException, *, first: bool = False) -> None:
        self.leader.lost()
        self.last_error = redact(f"{type(exc).__name__}: {exc}")
        if not (self.connected or first):
            return
        if self.connected:
            self.connected = False
            self.disconnected_since = time.time()
        if self._up is not None:
            self._up.clear()
        log.warning(
            "cluster %s: Redis %s unreachable (%s); shared backends (%s) admit nobody new "
            "until it is back; streaming sessions go on",
            self.options.name,
            self.options.shown_url,
            self.last_error,
            ", ".join(self.shared) or "none",
        )

    def _set_up(self) -> None:
        since = self.disconnected_since
        self.connected = True
        self.disconnected_since = None
        self.last_error = None
        assert self._up is not None
        self._up.set()
        down = f" after {time.time() - since:.1f}s" if since and self._ever_up else ""
        self._ever_up = True
        log.info(
            "cluster %s: connected to %s as node %s%s (%d nodes live)",
            self.options.name,
            self.options.shown_url,
            self.node,
            down,
            self.live_nodes,
        )

    async def _run(self) -> None:
        assert self._broken is not None
        first = True
        while True:
            pubsub = None
            try:
                self._client = connect(self.options)
                self._scripts = {}
                await self._heartbeat()  # re-asserts held leases before anything is granted
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.keys.knob_channel, self.keys.wake(self.node_id))
                if self.knobs is not None:
                    await self.knobs.join()
                self._broken.clear()
                self._set_up()
                for limiter in self.limiters.values():
                    limiter.resync()
                await self._until_broken(pubsub)
            except asyncio.CancelledError:
                raise
            except _Broken:
                pass  # a call found Redis gone: already marked and logged (`lost`)
            except Exception as exc:  # unreachable, or an error reply (a misconfigured Redis)
                self._set_down(exc, first=first)
            finally:
                if pubsub is not None:
                    await close_quietly(pubsub.aclose(), 1.0)
                await self._drop_client()
            first = False
            await asyncio.sleep(self.retry_s)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_quietly(client.aclose(), 1.0)

    async def _until_broken(self, pubsub: Any) -> None:
        """Heartbeat and read messages until a call fails or the connection drops."""
        assert self._broken is not None
        beat = asyncio.create_task(self._beat_forever(), name="sluice-cluster-heartbeat")
        listen = asyncio.create_task(self._listen(pubsub), name="sluice-cluster-listen")
        broken = asyncio.create_task(self._broken.wait(), name="sluice-cluster-broken")
        tasks = (beat, listen, broken)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(tasks)
        for task in (beat, listen):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        raise _Broken(self.last_error or "connection lost")

    async def _beat_forever(self) -> None:
        assert self._beat_now is not None
        while True:
            await wait_event(self._beat_now, self.heartbeat_s)
            self._beat_now.clear()
            await self._heartbeat()

    async def _listen(self, pubsub: Any) -> None:
        wake = self.keys.wake(self.node_id)
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            if message["channel"] == wake:
                limiter = self.limiters.get(message["data"])
                if limiter is not None:
                    limiter.poke()
            elif self.knobs is not None:
                self.knobs.on_message(message["data"])

    # -- calls -----------------------------------------------------------------------------

    def _script(self, name: str) -> Any:
        if self._client is None:
            raise RedisConnectionError("not connected")
        script = self._scripts.get(name)
        if script is None:
            source = _LEADER_SCRIPTS.get(name) or getattr(scripts, name.upper())
            script = self._client.register_script(source)
            self._scripts[name] = script
        return script

    def saw_epoch(self, epoch: str) -> None:
        """Remember the data set's epoch (see scripts.py) from a script's answer."""
        self.epoch = epoch

    def _card(self) -> str:
        return json.dumps(
            {
                "node": self.node,
                "id": self.node_id,
                "url": self.control_url,
                "started": round(self.started_at, 3),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "shared": list(self.shared),
                "lease_s": self.options.lease_s,
            }
        )

    async def _heartbeat(self) -> None:
        """Register, renew (or re-assert) every held lease, read the cluster's figures."""
        limiters = list(self.limiters.values())
        keys = [
            self.keys.nodes,
            self.keys.epoch,
            self.keys.fence,
            self.keys.node_info(self.node_id),
            self.keys.knob_seq,
        ]
        args: list[Any] = [
            self.node_id,
            self.lease_ms,
            self.epoch,
            secrets.token_hex(8),
            self._card(),
            self.keys.wake_prefix,
            len(limiters),
        ]
        renewed: dict[str, list[str]] = {}
        for limiter in limiters:
            keys += [limiter.keys.holders, limiter.keys.queue, limiter.keys.limit]
            held = limiter.held_tickets()
            renewed[limiter.backend] = held
            args += [limiter.backend, len(held), *held]
        answer = await self._script("heartbeat")(keys=keys, args=args)
        epoch, live, knob_version, _fence = answer[:4]
        self.saw_epoch(epoch)
        self.live_nodes = int(live)
        for name, limit, holders, queued, mine in answer[4:]:
            limiter = self.limiters[name]
            limiter.cluster_limit = int(limit) if int(limit) > 0 else None
            limiter.cluster_in_use, limiter.cluster_waiting = int(holders), int(queued)
            # A release sent while this heartbeat was on its way may have been undone by
            # it (renewal re-adds): release again what is no longer held.
            gone = set(renewed[name]) - set(limiter.held_tickets())
            if gone:
                limiter.release_again(gone)
            if int(mine):
                limiter.poke()
        if self.knobs is not None:
            self.knobs.check_version(int(knob_version))
        await self._lead()

    async def call_acquire(
        self, keys: SemaphoreKeys, backend: str, limit: int, tickets: list[str]
    ) -> Any:
        """The acquire script (scripts.ACQUIRE) for `tickets`."""
        return await self._script("acquire")(
            keys=[
                keys.holders,
                keys.queue,
                keys.seq,
                keys.limit,
                self.keys.nodes,
                self.keys.epoch,
                self.keys.fence,
            ],
            args=[
                self.node_id,
                self.lease_ms,
                self.epoch,
                secrets.token_hex(8),
                limit,
                self.keys.wake_prefix,
                backend,
                *tickets,
            ],
        )

    async def call_release(self, keys: SemaphoreKeys, backend: str, tickets: list[str]) -> Any:
        """The release script (scripts.RELEASE) for `tickets`."""
        return await self._script("release")(
            keys=[keys.holders, keys.queue, keys.limit, self.keys.nodes, self.keys.fence],
            args=[self.node_id, self.keys.wake_prefix, backend, *tickets],
        )

    async def call_resize(self, keys: SemaphoreKeys, backend: str, limit: int) -> Any:
        """The resize script (scripts.RESIZE)."""
        return await self._script("resize")(
            keys=[keys.holders, keys.queue, keys.limit, self.keys.nodes, self.keys.fence],
            args=[self.node_id, self.keys.wake_prefix, backend, limit],
        )

    async def call_knob_script(self, name: str, values: dict[str, str]) -> Any:
        """KNOB_SET or KNOB_JOIN with `values` (JSON texts by dotted name)."""
        pairs = [item for pair in values.items() for item in pair]
        return await self._script(name)(
            keys=[self.keys.knobs, self.keys.knob_versions, self.keys.knob_seq],
            args=[self.node_id, self.keys.knob_channel, *pairs],
        )

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes of the cluster (from this node's connection)."""
        if self._client is None:
            raise RedisConnectionError("not connected")
        return await read_nodes(self._client, self.keys)

    # -- the view --------------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        """The cluster as this node sees it, for the engine's snapshot."""
        caps = tuple(
            SharedCap(
                backend=name,
                limit=lim.cluster_limit or lim.limit,
                in_use=lim.cluster_in_use,
                waiting=lim.cluster_waiting,
                node_in_use=lim.in_use,
                node_waiting=lim.waiting,
            )
            for name, lim in self.limiters.items()
        )
        return ClusterSnapshot(
            name=self.options.name,
            node=self.node,
            redis=self.options.shown_url,
            connected=self.connected,
            disconnected_since=self.disconnected_since,
            nodes=self.live_nodes,
            lease_s=self.options.lease_s,
            shared=caps,
            grant_latency=self.grant_latency.summary(),
            error=self.last_error,
            autotune_leader=self.leader.leader if self.connected else None,
        )
