"""TokenBuffer: the bounded, live-resizable FIFO between one session's producer and consumer.

`put` waits while the buffer is full (that wait is the back-pressure), `get_batch` hands the
consumer everything waiting up to a cap, and `close`/`fail` end the stream without a sentinel
so neither side can hang when the other one dies. `maxsize=0` means unbounded: the naive push
mode, kept only so its damage can be measured beside the bounded one.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["BufferClosed", "BufferStats", "TokenBuffer"]


class BufferClosed(Exception):
    """Raised by `put` once the buffer was closed or failed: nobody will read more items."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A point-in-time view of a buffer, cheap to take and safe to hand to another thread."""

    depth: int
    maxsize: int
    high_water: int
    buffered_bytes: int
    stall_seconds: float
    waiting_producers: int
    waiting_consumers: int
    closed: bool


def default_sizeof(item: Any) -> int:
    """Bytes an item holds: its own `nbytes` when it knows them, else `sys.getsizeof`."""
    nbytes = getattr(item, "nbytes", None)
    return nbytes if isinstance(nbytes, int) else sys.getsizeof(item)


class TokenBuffer(Generic[T]):
    """A FIFO for one session whose capacity can change while both sides run.

    Invariants: items leave in the order they came, none is dropped or duplicated, and depth
    exceeds maxsize only by what a shrink left behind (producers then wait until depth falls
    below the new size).
    """

    def __init__(
        self,
        maxsize: int = 16,
        *,
        sizeof: Callable[[Any], int] = default_sizeof,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_maxsize(maxsize)
        self._maxsize = maxsize
        self._items: collections.deque[T] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        # Waiters are few (one producer and one consumer per session), so plain lists are
        # cheaper to hold than deques.
        self._putters: list[asyncio.Future[None]] = []
        self._getters: list[asyncio.Future[None]] = []
        self._closed = False
        self._error: BaseException | None = None
        self._high_water = 0
        self._bytes = 0
        self._stall = 0.0
        self._stall_started: float | None = None
        self._sizeof = sizeof
        self._clock = clock

    # -- read-only state -------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Items held right now."""
        return len(self._items)

    @property
    def maxsize(self) -> int:
        """Current capacity; 0 means unbounded."""
        return self._maxsize

    @property
    def high_water(self) -> int:
        """The largest depth ever reached."""
        return self._high_water

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by the items in the buffer right now."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """True once `close` or `fail` was called."""
        return self._closed

    @property
    def stall_seconds(self) -> float:
        """Total time producers spent blocked on a full buffer, including a wait in progress."""
        if self._stall_started is not None:
            return self._stall + (self._clock() - self._stall_started)
        return self._stall

    def full(self) -> bool:
        """True while a `put` would have to wait."""
        return 0 < self._maxsize <= len(self._items)

    def stats(self) -> BufferStats:
        """Everything above in one frozen object."""
        return BufferStats(
            depth=len(self._items),
            maxsize=self._maxsize,
            high_water=self._high_water,
            buffered_bytes=self._bytes,
            stall_seconds=self.stall_seconds,
            waiting_producers=sum(1 for f in self._putters if not f.done()),
            waiting_consumers=sum(1 for f in self._getters if not f.done()),
            closed=self._closed,
        )

    # -- producer side ---------------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Append `item`, waiting while the buffer is full; raise `BufferClosed` once closed."""
        while True:
            if self._closed:
                raise BufferClosed("put() on a closed buffer")
            if not 0 < self._maxsize <= len(self._items):
                break
            putter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            started = self._clock()
            if self._stall_started is None:
                self._stall_started = started
            try:
                await putter
            except BaseException:
                putter.cancel()
                _discard(self._putters, putter)
                # If we were woken and are leaving, hand the wake-up to the next producer.
                if not self.full() and not self._closed:
                    self._wake_putters()
                raise
            finally:
                if not self._putters and self._stall_started is not None:
                    self._stall += self._clock() - self._stall_started
                    self._stall_started = None
        items = self._items
        items.append(item)
        size = self._sizeof(item)
        self._sizes.append(size)
        self._bytes += size
        depth = len(items)
        if depth > self._high_water:
            self._high_water = depth
        if self._getters:
            self._wake_one(self._getters)

    # -- consumer side ---------------------------------------------------------------------

    async def get_batch(self, max_items: int = 1) -> list[T]:
        """Wait for at least one item and return up to `max_items` of them, oldest first.

        Returns `[]` once the buffer is closed and drained; after `fail(exc)` the items put
        before the failure are returned first and then `exc` is raised.
        """
        if not isinstance(max_items, int) or isinstance(max_items, bool):
            raise TypeError(
                f"max_items must be an int, got {type(max_items).__name__} {max_items!r}"
            )
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                return []
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                _discard(self._getters, getter)
                if self._items:
                    self._wake_one(self._getters)
                raise
        items = self._items
        sizes = self._sizes
        n = min(max_items, len(items))
        if n == 1:
            batch = [items.popleft()]
            self._bytes -= sizes.popleft()
        else:
            batch = [items.popleft() for _ in range(n)]
            self._bytes -= sum(sizes.popleft() for _ in range(n))
        if self._putters:
            self._wake_putters()
        return batch

    # -- ending and resizing ---------------------------------------------------------------

    def close(self) -> None:
        """End the stream: consumers drain what is left, then get `[]`; `put` raises."""
        if self._closed:
            return
        self._closed = True
        self._wake_all()

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error that consumers see after draining what came before."""
        if self._closed:
            return
        self._error = exc
        self._closed = True
        self._wake_all()

    def discard(self) -> int:
        """Close the buffer and drop what it still holds; returns how many items. For a
        stream that ended without its consumer (a failed or cancelled session): those
        chunks will never be processed, so holding their memory serves nobody."""
        self.close()
        dropped = len(self._items)
        self._items.clear()
        self._sizes.clear()
        self._bytes = 0
        return dropped

    def resize(self, maxsize: int) -> None:
        """Change capacity at once; growing wakes waiting producers, shrinking drops nothing."""
        _check_maxsize(maxsize)
        self._maxsize = maxsize
        self._wake_putters()

    # -- internals -------------------------------------------------------------------------

    def _free_slots(self) -> int:
        if self._maxsize == 0:
            return len(self._putters)
        return max(0, self._maxsize - len(self._items))

    def _wake_putters(self) -> None:
        """Wake as many waiting producers as there are free slots, oldest first."""
        free = self._free_slots()
        while free and self._putters:
            putter = self._putters.pop(0)
            if not putter.done():
                putter.set_result(None)
                free -= 1

    @staticmethod
    def _wake_one(waiters: list[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        for waiters in (self._putters, self._getters):
            while waiters:
                waiter = waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(None)


def _check_maxsize(maxsize: object) -> None:
    if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
        raise ValueError(f"maxsize must be an integer >= 0 (0 = unbounded), got {maxsize!r}")


def _discard(waiters: list[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass
