"""Ending background tasks for sure: cancel, wait, and cancel again while they go on.

A task may swallow one cancel and carry on: on Python 3.11 `asyncio.wait_for` returns the
inner result instead of raising when the cancel lands as the inner awaitable finishes, and
a client library may catch `CancelledError` while it closes a connection. A plain
`task.cancel(); await task` then waits forever, and whatever closes it (the app's `q`, a
SIGTERM) hangs with it. `cancel_and_wait` repeats the cancel until the task ends, and gives
up on a task that still runs after `grace` seconds rather than holding shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

__all__ = ["RECANCEL_S", "cancel_and_wait", "close_quietly", "wait_event"]

log = logging.getLogger(__name__)

RECANCEL_S = 0.05  # how often a task that is still running is cancelled again


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any] | None], *, grace: float = 5.0
) -> list[asyncio.Future[Any]]:
    """Cancel `tasks` (None entries skipped) and wait until every one has ended, cancelling
    again each RECANCEL_S while one goes on. Returns the ones still running after `grace`
    seconds (abandoned, and logged); their outcomes are retrieved, never raised here."""
    given = [t for t in tasks if t is not None]
    pending = {t for t in given if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for task in given:
        if task.done():
            _retrieve(task)
    for task in pending:
        log.warning("task %r still running %.1f s after its cancel: abandoned", task, grace)
    return sorted(pending, key=id)


async def close_quietly(closing: Awaitable[Any], seconds: float) -> None:
    """Await `closing` (a connection closed on the way out) for at most `seconds`, its
    failure ignored. A cancel of the caller still propagates: 3.11's `wait_for` can lose
    one that lands as `closing` finishes, `asyncio.timeout` does not."""
    try:
        async with asyncio.timeout(seconds):
            await closing
    except Exception as exc:
        log.debug("ignored while closing: %s: %s", type(exc).__name__, exc)


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until `event` is set or `seconds` pass (None: no limit); True if it was set.
    Cancel-safe, unlike 3.11's `wait_for` (see `close_quietly`)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's exception as seen (it was cancelled on purpose)."""
    if not task.cancelled():
        task.exception()
