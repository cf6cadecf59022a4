"""AdjustableLimiter: a FIFO concurrency cap whose limit can change while sessions hold it.

`asyncio.Semaphore` cannot change its limit, so this is our own. The one counter that
matters is `in_use`, the permits really handed out (including ones reserved for a woken
waiter that has not run yet). Grants happen only while `in_use < limit`, so a shrink needs no
"debt" bookkeeping and a later grow can never over-grant.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from types import TracebackType

__all__ = ["AdjustableLimiter", "LimiterStats"]


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A point-in-time view of one limiter."""

    limit: int
    in_use: int
    waiting: int
    granted_total: int


class AdjustableLimiter:
    """A concurrency cap: `async with limiter:` holds one permit for the block's duration.

    Waiters are served strictly first come, first served. Growing the limit wakes up to
    (limit - in_use) waiters with their permit already reserved, so no newcomer can take it;
    shrinking never takes a permit from a holder; a waiter cancelled after its grant hands the
    permit to the next one in line.
    """

    def __init__(self, limit: int) -> None:
        _check_limit(limit)
        self._limit = limit
        self._in_use = 0
        self._granted_total = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

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
        """Take a permit, waiting in FIFO order while none is free."""
        if not self.locked():
            self._in_use += 1
            self._granted_total += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted, then cancelled before it could run: pass the permit on.
                self.release()
            else:
                waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        """Give a permit back and hand it to the oldest waiter if the limit allows."""
        if self._in_use <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._in_use -= 1
        self._grant()

    def resize(self, limit: int) -> None:
        """Change the limit now; growing wakes waiters, shrinking lets holders finish."""
        _check_limit(limit)
        self._limit = limit
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._in_use += 1
            self._granted_total += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
