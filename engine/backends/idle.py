"""The content-idle clock: a stream that delivers no content for `timeout_s` fails.

An HTTP read timeout notices only silence: a server that sends keep-alive `ping` events, or
trickles bytes without ever finishing an event, never trips it, and its session would hold
its concurrency slot forever. `IdleClock` counts the time spent waiting on the stream since
the last content. Time the producer spends elsewhere (blocked on a full buffer, say) is not the
server's silence and does not count.

The cost per read is two clock readings and a few attribute writes: one timer serves the whole
stream and is re-armed only when it fires early (an `asyncio.timeout` per read costs several
microseconds, more than the rest of a read).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TypeVar

__all__ = ["ContentIdle", "IdleClock"]

T = TypeVar("T")


class ContentIdle(Exception):
    """No content arrived for `timeout_s` seconds of waiting on the stream."""


class IdleClock:
    """Reads a stream's items, failing with `ContentIdle` once `timeout_s` seconds of waiting
    have passed without `content()` being called. Make it in the task that reads, after the
    stream opened; `close()` it when done."""

    __slots__ = ("_deadline", "_fired", "_handle", "_loop", "_task", "_waited", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._waited = 0.0  # seconds spent reading since the last content
        self._deadline = math.inf  # when the read under way expires; inf while not reading
        self._fired = False  # the clock cancelled the reading task
        self._handle: asyncio.TimerHandle | None = None

    def content(self) -> None:
        """Content arrived: the clock starts again from zero."""
        self._waited = 0.0

    async def read(self, stream: AsyncIterator[T]) -> T:
        """The stream's next item (`StopAsyncIteration` at its end); `ContentIdle` when the
        wait would take the time without content past `timeout_s`."""
        start = self._loop.time()
        deadline = start + self.timeout_s - self._waited
        if deadline <= start:
            raise ContentIdle
        task = self._task = asyncio.current_task()
        assert task is not None, "IdleClock.read runs in a task"
        cancelling = task.cancelling()
        self._deadline = deadline
        if self._handle is None:
            self._handle = self._loop.call_at(deadline, self._check)
        try:
            item = await anext(stream)
        except asyncio.CancelledError:
            if self._expired(task, cancelling):
                raise ContentIdle from None
            raise
        finally:
            self._deadline = math.inf
            self._waited += self._loop.time() - start
        if self._fired and self._expired(task, cancelling):  # the cancel was swallowed below
            raise ContentIdle
        return item

    def close(self) -> None:
        """Stop the timer (and take back a cancel the stream swallowed)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fired and self._task is not None:
            self._fired = False
            self._task.uncancel()

    def _expired(self, task: asyncio.Task[object], cancelling: int) -> bool:
        """Whether this clock's cancel is the one being delivered (not someone else's too)."""
        if not self._fired:
            return False
        self._fired = False
        return task.uncancel() <= cancelling

    def _check(self) -> None:
        """The timer: cancel the reading task if its deadline passed, else wait again.

        Between reads the timer lapses; the next read arms it. A read's deadline is never
        earlier than the timer set before it, so the timer is never late."""
        deadline = self._deadline
        if deadline == math.inf or self._task is None:
            self._handle = None
        elif self._loop.time() >= deadline:
            self._handle = None
            self._fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(deadline, self._check)
