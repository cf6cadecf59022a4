"""ClusterLimiter: a shared backend's cap, counted across every node through Redis.

It offers what the engine uses of AdjustableLimiter (acquire / release / resize, `limit`,
`in_use`, `waiting`, `stats()`), but a permit is a lease granted by the Lua scripts in
`scripts.py`. Locally it keeps the sessions waiting in FIFO order, each with a ticket in
the cluster's queue; one worker task per limiter does all the talking to Redis in order
(resize, then releases, then the acquire call that enqueues new tickets and claims the ones
whose turn has come), woken by a local poke, by this node's wake channel, or at the latest
by a bounded poll. `in_use` and `waiting` are this node's; the cluster's totals are in
`cluster_in_use` / `cluster_waiting` (from the last answer Redis gave).

Fail closed: while Redis cannot be reached nothing is granted (waiters wait); releases are
kept and sent once it is back, and the leases run out by themselves meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sluice.engine.limiter import LimiterStats, check_limit
from sluice.engine.tasks import cancel_and_wait, wait_event

if TYPE_CHECKING:
    from sluice.engine.cluster.link import ClusterLink

__all__ = ["ClusterLimiter"]

log = logging.getLogger("sluice.cluster")


class ClusterLimiter:
    """The cluster-wide cap of one backend; made by `ClusterLink.limiter(backend, limit)`."""

    def __init__(self, link: ClusterLink, backend: str, limit: int) -> None:
        check_limit(limit)
        self.link = link
        self.backend = backend
        self.keys = link.keys.semaphore(backend)
        self._limit = limit
        self._in_use = 0
        self._granted_total = 0
        # ticket -> (future, holder, requested at, sent to Redis yet)
        self._waiters: collections.OrderedDict[
            str, tuple[asyncio.Future[None], Hashable, float]
        ] = collections.OrderedDict()
        self._unsent: list[str] = []  # waiting tickets Redis has not seen yet
        self._resent: set[str] = set()  # waiting tickets sent again after a reconnection
        self._holders: dict[Hashable, list[str]] = {}  # holder -> tickets it holds
        self._to_release: set[str] = set()
        self._resize_to: int | None = limit  # told to Redis by the worker
        self._poke: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.cluster_limit: int | None = None
        self.cluster_in_use = 0
        self.cluster_waiting = 0

    # -- what the engine reads -------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The cap across the cluster."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Permits this node holds."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Sessions on this node waiting for a permit."""
        return len(self._waiters)

    def held_tickets(self) -> list[str]:
        """Every ticket this node holds (what its heartbeat renews)."""
        return [t for tickets in self._holders.values() for t in tickets]

    def stats(self) -> LimiterStats:
        """This node's figures against the cluster's limit."""
        return LimiterStats(self._limit, self._in_use, len(self._waiters), self._granted_total)

    def locked(self) -> bool:
        """True when an acquire now would wait: the cluster's cap is full (as of Redis's
        last answer) or sessions are queued already."""
        return self.cluster_in_use >= self._limit or bool(self._waiters)

    # -- acquiring and releasing ------------------------------------------------------------

    async def acquire(self) -> None:
        """Take a permit for the current task."""
        await self.acquire_on_behalf_of(_current_task())

    async def acquire_on_behalf_of(self, holder: Hashable) -> None:
        """Wait in the cluster's FIFO for a permit that `holder` will give back."""
        ticket = self.link.new_ticket()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = (waiter, holder, time.perf_counter())
        self._unsent.append(ticket)
        self.poke()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release_on_behalf_of(holder)  # granted, then cancelled: give it back
            else:
                waiter.cancel()
                self._waiters.pop(ticket, None)
                self._resent.discard(ticket)
                if ticket in self._unsent:
                    self._unsent.remove(ticket)
                # Take it out of the cluster's queue (it may be on its way there right now;
                # releasing a ticket Redis never saw changes nothing).
                self._to_release.add(ticket)
                self.poke()
            raise

    def release(self) -> None:
        """Give back a permit the current task holds."""
        self.release_on_behalf_of(_current_task())

    def release_on_behalf_of(self, holder: Hashable) -> None:
        """Give back a permit `holder` holds; RuntimeError when it holds none."""
        tickets = self._holders.get(holder)
        if not tickets:
            raise RuntimeError(
                "release() without a matching acquire(): this holder has no permit "
                "(released twice, or acquired by another task?)"
            )
        ticket = tickets.pop()
        if not tickets:
            del self._holders[holder]
        self._in_use -= 1
        self._to_release.add(ticket)
        self.poke()

    def resize(self, limit: int) -> None:
        """Set the cluster's cap (sent to Redis by the worker, in order with the rest)."""
        check_limit(limit)
        self._limit = limit
        self._resize_to = limit
        self.poke()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- the worker ----------------------------------------------------------------------

    def poke(self) -> None:
        """Ask the worker to talk to Redis soon (a new waiter, a release, a wake message)."""
        if self._poke is not None:
            self._poke.set()

    def start(self) -> None:
        """Start the worker (in the running loop)."""
        if self._task is None:
            self._poke = asyncio.Event()
            self._poke.set()
            self._task = asyncio.get_running_loop().create_task(
                self._work(), name=f"sluice-cluster-{self.backend}"
            )

    async def stop(self) -> None:
        """Stop the worker; then hand back whatever can still be handed back (bounded)."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        self._to_release.update(self.held_tickets())
        self._to_release.update(t for t in self._waiters if t not in self._unsent)
        if self._to_release and self.link.connected:
            try:
                await self._release()
            except Exception:
                pass  # the leases run out by themselves

    def release_again(self, tickets: set[str]) -> None:
        """Send releases for `tickets` again (a heartbeat's renewal may have re-added them
        after their first release)."""
        self._to_release.update(tickets)
        self.poke()

    def resync(self) -> None:
        """After a reconnection: send every waiting ticket again (Redis may have lost them;
        those it still has keep their place) and the limit."""
        self._unsent = list(self._waiters)
        self._resent = set(self._waiters)
        self._resize_to = self._limit
        self.poke()

    async def _work(self) -> None:
        assert self._poke is not None
        while True:
            timeout = self.link.poll_s if self._waiters else None
            await wait_event(self._poke, timeout)
            self._poke.clear()
            if not self.link.connected:
                await self.link.wait_connected()
                continue
            try:
                await self._talk()
            except self.link.unreachable_errors as exc:
                self.link.lost(exc)
            except Exception as exc:  # a bug or a Redis error reply: logged, retried later
                log.error("cluster: %s cap: %s: %s", self.backend, type(exc).__name__, exc)
                await asyncio.sleep(self.link.poll_s)

    async def _talk(self) -> None:
        if self._resize_to is not None:
            limit = self._resize_to
            self._resize_to = None
            try:
                self._read(await self.link.call_resize(self.keys, self.backend, limit))
            except BaseException:
                if self._resize_to is None:
                    self._resize_to = limit
                raise
        if self._to_release:
            await self._release()
        if self._unsent or self._waiters:
            await self._acquire()

    async def _release(self) -> None:
        tickets = list(self._to_release)
        answer = await self.link.call_release(self.keys, self.backend, tickets)
        self._to_release.difference_update(tickets)
        self._read(answer)

    def _read(self, answer: Any) -> None:
        mine, holders, queued = (int(x) for x in answer)
        self.cluster_in_use, self.cluster_waiting = holders, queued
        if mine and self._waiters:
            self.poke()

    async def _acquire(self) -> None:
        sent = list(self._unsent)
        started = time.perf_counter()
        epoch, granted, limit, holders, queued, fence_ms = await self.link.call_acquire(
            self.keys, self.backend, self._limit, sent
        )
        done = time.perf_counter()
        self.link.saw_epoch(epoch)
        done_sending = set(sent)
        self._unsent = [t for t in self._unsent if t not in done_sending]
        self.cluster_limit = int(limit)
        self.cluster_in_use, self.cluster_waiting = int(holders), int(queued)
        for ticket in granted:
            entry = self._waiters.pop(ticket, None)
            if entry is None or entry[0].done():  # its session went away meanwhile
                self._to_release.add(ticket)
                self.poke()
                continue
            waiter, holder, requested = entry
            waiter.set_result(None)
            self._in_use += 1
            self._granted_total += 1
            self._holders.setdefault(holder, []).append(ticket)
            # Redis's share of the wait: all of it for a ticket granted by the call that
            # first sent it (nobody was ahead), else the round trip of the granting call.
            first_call = ticket in sent and ticket not in self._resent
            self.link.grant_latency.record(done - requested if first_call else done - started)
            self._resent.discard(ticket)
        if int(fence_ms) > 0 and self._waiters:
            await asyncio.sleep(min(int(fence_ms) / 1000, self.link.poll_s))
            self.poke()


def _current_task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("acquire()/release() outside a task: use the *_on_behalf_of forms")
    return task
