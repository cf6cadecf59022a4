"""AdjustableLimiter: a FIFO concurrency cap whose limit can change while sessions hold it.

`asyncio.Semaphore` cannot change its limit, so this is our own. The one counter that
matters is `in_use`, the permits really handed out (including ones reserved for a woken
waiter that has not run yet). Grants happen only while `in_use < limit`, so a shrink needs no
"debt" bookkeeping and a later grow can never over-grant.

Every permit belongs to a holder, as in trio's and anyio's CapacityLimiter: the task that
called `acquire()` (or the object given to `acquire_on_behalf_of`), recorded the moment the
permit is granted, reserved ones included, so `in_use` is always the sum of the holders'
permits. A release must come from a holder with a permit left: a second release for one
acquire raises instead of letting an extra task in.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

__all__ = ["AdjustableLimiter", "Limiter", "LimiterStats", "check_limit"]


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A point-in-time view of one limiter."""

    limit: int
    in_use: int
    waiting: int
    granted_total: int


class Limiter(Protocol):
    """What sessions and the engine use of a concurrency cap: AdjustableLimiter (one
    process) and the cluster's ClusterLimiter (permits leased from Redis) both offer it."""

    @property
    def limit(self) -> int: ...
    @property
    def in_use(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    def stats(self) -> LimiterStats: ...
    def locked(self) -> bool: ...
    async def acquire(self) -> None: ...
    async def acquire_on_behalf_of(self, holder: Hashable) -> None: ...
    def release(self) -> None: ...
    def release_on_behalf_of(self, holder: Hashable) -> None: ...
    def resize(self, limit: int) -> None: ...
    async def __aenter__(self) -> None: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AdjustableLimiter:
    """A concurrency cap: `async with limiter:` holds one permit for the block's duration.

    Waiters are served strictly first come, first served. Growing the limit wakes up to
    (limit - in_use) waiters with their permit already reserved, so no newcomer can take it;
    shrinking never takes a permit from a holder; a waiter cancelled after its grant hands the
    permit to the next one in line. `acquire()`/`release()` hold for the current task; one
    task may hold several permits, and must release each once.
    """

    def __init__(self, limit: int) -> None:
        check_limit(limit)
        self._limit = limit
        self._in_use = 0
        self._granted_total = 0
        # Each waiter's future and the holder its permit will belong to.
        self._waiters: collections.deque[tuple[asyncio.Future[None], Hashable]] = (
            collections.deque()
        )
        self._holders: dict[Hashable, int] = {}  # holder -> permits it holds (granted ones too)

    @property
    def limit(self) -> int:
        """How many holders are allowed at once."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Permits held now; may exceed `limit` right after a shrink."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Tasks queued for a permit."""
        return len(self._waiters)

    def stats(self) -> LimiterStats:
        """The limiter's figures in one frozen object."""
        return LimiterStats(self._limit, self._in_use, len(self._waiters), self._granted_total)

    def locked(self) -> bool:
        """True when an `acquire` now would have to wait."""
        return self._in_use >= self._limit or bool(self._waiters)

    async def acquire(self) -> None:
        """Take a permit for the current task, waiting in FIFO order while none is free."""
        await self.acquire_on_behalf_of(_current_task())

    async def acquire_on_behalf_of(self, holder: Hashable) -> None:
        """Take a permit that `holder` (any hashable object) will give back."""
        if not self.locked():
            self._take(holder)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, holder)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted, then cancelled before it could run: pass the permit on.
                self.release_on_behalf_of(holder)
            else:
                waiter.cancel()
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        """Give back a permit the current task holds; hand it to the oldest waiter if the
        limit allows. RuntimeError when the task holds none (a release without an acquire,
        or a second release for one acquire)."""
        self.release_on_behalf_of(_current_task())

    def release_on_behalf_of(self, holder: Hashable) -> None:
        """Give back a permit `holder` holds; RuntimeError when it holds none."""
        held = self._holders.get(holder, 0)
        if held <= 0:
            raise RuntimeError(
                "release() without a matching acquire(): this holder has no permit "
                "(released twice, or acquired by another task?)"
            )
        if held == 1:
            del self._holders[holder]
        else:
            self._holders[holder] = held - 1
        self._in_use -= 1
        self._grant()

    def resize(self, limit: int) -> None:
        """Change the limit now; growing wakes waiters, shrinking lets holders finish."""
        check_limit(limit)
        self._limit = limit
        self._grant()

    def _take(self, holder: Hashable) -> None:
        self._in_use += 1
        self._granted_total += 1
        self._holders[holder] = self._holders.get(holder, 0) + 1

    def _grant(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter, holder = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._take(holder)  # reserved for the woken waiter before it runs

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _current_task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("acquire()/release() outside a task: use the *_on_behalf_of forms")
    return task


def check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
