"""`GET /v1/events`: server-sent events of snapshots at the rate a viewer asks for.

Latest-only by construction: a viewer's loop takes a frame, writes it, waits for the next
tick. A write to a slow viewer waits for its socket to drain (aiohttp pauses the writer at
the transport's high-water mark), and the ticks that pass meanwhile are counted as dropped,
never queued; so what is held for a stalled viewer is at most one frame plus the
transport's buffer, and the engine's loop never waits on it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

__all__ = ["DEFAULT_RATE", "RATE_RANGE", "RateError", "Viewer", "ViewerStats", "parse_rates"]

RATE_RANGE = (0.2, 20.0)  # frames per second a viewer may ask for
DEFAULT_RATE = 2.0
RETRY_MS = 1000  # the reconnection delay an EventSource client is told


class RateError(ValueError):
    """A `rate` the events endpoint does not allow; the message says what is allowed."""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse_rates(rate_text: str | None, sessions_text: str | None) -> tuple[float, float]:
    """The `rate` and `sessions_rate` query parameters: frames per second (DEFAULT_RATE when
    absent), and how often a frame carries the session list (default: every frame; 0:
    never). RateError saying what is allowed."""
    low, high = RATE_RANGE
    rate = DEFAULT_RATE if rate_text is None else _number(rate_text)
    if not (math.isfinite(rate) and low <= rate <= high):
        raise RateError(
            f"rate={str(rate_text)[:40]!r}: must be a number of frames per second "
            f"from {low:g} to {high:g}"
        )
    if sessions_text is None:
        return rate, rate
    sessions = _number(sessions_text)
    if not (math.isfinite(sessions) and 0 <= sessions <= rate):
        raise RateError(
            f"sessions_rate={sessions_text[:40]!r}: must be a number of frames per second "
            f"from 0 (never) to the rate, {rate:g}"
        )
    return rate, sessions


@dataclass(frozen=True, slots=True)
class ViewerStats:
    """One connected viewer: who, its rates (frames, and frames with the session list),
    frames sent and dropped (ticks missed while a write waited on its socket), and the bytes
    waiting in the transport for it now."""

    peer: str
    rate: float
    sessions_rate: float
    frames_sent: int
    frames_dropped: int
    pending_bytes: int


class Viewer:
    """Feeds one SSE response with frames from `frame(max_age)` until `closing` is set or the
    client goes away."""

    def __init__(
        self,
        peer: str,
        rate: float,
        sessions_rate: float,
        response: web.StreamResponse,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        self.peer = peer
        self.rate = rate
        self.sessions_rate = sessions_rate
        self.response = response
        self.transport = transport
        self.frames_sent = 0
        self._dropped = 0  # ticks skipped after writes that outlasted them
        self._due = math.inf  # when the frame being written (or the next one) is due
        self.writing = False

    @property
    def frames_dropped(self) -> int:
        """Ticks that passed without a frame: skipped after slow writes, plus those passing
        now while a write waits on the viewer's socket."""
        late = asyncio.get_running_loop().time() - self._due if self.writing else 0.0
        return self._dropped + max(0, math.floor(late * self.rate))

    def stats(self) -> ViewerStats:
        """The viewer's figures now."""
        pending = 0
        if isinstance(self.transport, asyncio.WriteTransport) and not self.transport.is_closing():
            pending = self.transport.get_write_buffer_size()
        return ViewerStats(
            self.peer, self.rate, self.sessions_rate, self.frames_sent, self.frames_dropped, pending
        )

    def abort(self) -> None:
        """Drop the connection at once (shutdown, for a viewer stuck on a full socket)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # type: ignore[attr-defined]

    async def run(
        self, frame: Callable[[float, bool], Awaitable[bytes]], closing: asyncio.Event
    ) -> None:
        """Send a frame per tick; return when closing or when the client is gone.
        `frame(max_age, sessions)` gives the encoded snapshot, with or without sessions."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        max_age = min(period / 2, 0.05)
        every = 1.0 / self.sessions_rate if self.sessions_rate else math.inf
        sessions_at = -math.inf  # when a frame last carried the session list
        self._due = loop.time()
        await self._write(f"retry: {RETRY_MS}\n\n".encode())
        while not closing.is_set():
            now = loop.time()
            sessions = self.frames_sent == 0 or now - sessions_at >= every - period / 2
            if sessions:
                sessions_at = now
            data = await frame(max_age, sessions)
            await self._write(
                b"event: snapshot\nid: %d\ndata: %s\n\n" % (self.frames_sent + 1, data)
            )
            self.frames_sent += 1
            self._due += period
            now = loop.time()
            if now > self._due:  # the write outlasted the tick(s): skip them, no catching up
                missed = math.ceil((now - self._due) / period)
                self._dropped += missed
                self._due += missed * period
            try:
                async with asyncio.timeout(self._due - now):
                    await closing.wait()
            except TimeoutError:
                pass
        await self._write(b'event: closing\ndata: {"reason":"the server is stopping"}\n\n')

    async def _write(self, data: bytes) -> None:
        self.writing = True
        try:
            await self.response.write(data)
        finally:
            self.writing = False
