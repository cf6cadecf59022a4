"""Consumers: the slow per-token work at the end of each session (a write, a webhook, a render).

A consumer is anything with `async process(batch)`; an optional `async aclose()` is called
when the engine shuts down. `batch_max = 1` makes every call carry one chunk (the per-token
consumer of the original pattern); a larger `batch_max` lets a call take all that is waiting.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from sluice.engine.chunk import Chunk

__all__ = [
    "CONSUMER_KINDS",
    "Consumer",
    "NullConsumer",
    "SleepConsumer",
    "SqliteConsumer",
    "StdoutConsumer",
    "make_consumer",
]

CONSUMER_KINDS = ("sleep", "sqlite", "stdout", "null")


@runtime_checkable
class Consumer(Protocol):
    """Processes one batch of chunks (all from the same session, in stream order)."""

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Do the work for `batch`; raising fails only the session that sent it."""
        ...


class NullConsumer:
    """Does nothing: measures the engine's own cost."""

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Return at once."""
        return None


class SleepConsumer:
    """Simulated slow work: each call waits `delay_ms` (optionally jittered), whatever the
    batch size, like one round trip to a database or webhook."""

    def __init__(self, delay_ms: float = 50.0, jitter: float = 0.0, seed: int = 0) -> None:
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.delay_ms = float(delay_ms)
        self.jitter = jitter
        self._rng = random.Random(seed)

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Wait the configured delay (zero delay still yields to the loop)."""
        delay = self.delay_ms / 1000.0
        if self.jitter:
            delay *= self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        await asyncio.sleep(delay)


class StdoutConsumer:
    """Writes each chunk's text to a stream (stdout by default), one write per batch."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Write the batch's text and flush."""
        stream = self._stream or sys.stdout
        stream.write("".join(chunk.text for chunk in batch))
        stream.flush()


class SqliteConsumer:
    """Real writes: one transaction per batch into a `chunks` table, off the event loop.

    One worker thread owns the connection (sqlite3 connections are per thread), so writes
    from all sessions are serialised the way a single database connection serialises them.
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS chunks ("
        " session_id TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,"
        " received_at REAL NOT NULL)"
    )
    _INSERT = "INSERT INTO chunks (session_id, idx, text, received_at) VALUES (?, ?, ?, ?)"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-sqlite")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(self._SCHEMA)
            conn.commit()
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def _write(self, rows: list[tuple[str, int, str, float]]) -> None:
        conn = self._connection()
        with conn:  # one transaction: commit on success, roll back on error
            conn.executemany(self._INSERT, rows)

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Insert the batch in one transaction on the writer thread."""
        if self._closed:
            raise RuntimeError("sqlite consumer is closed")
        rows = [(c.session_id, c.index, c.text, c.received_at) for c in batch]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, rows)

    def _close_connections(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()

    async def aclose(self) -> None:
        """Close the connection and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connections)
        self._executor.shutdown(wait=True)


def make_consumer(kind: str, *, delay_ms: float = 50.0, path: str | Path = "sluice.db") -> Consumer:
    """Build a built-in consumer by its config name."""
    if kind == "sleep":
        return SleepConsumer(delay_ms)
    if kind == "sqlite":
        return SqliteConsumer(path)
    if kind == "stdout":
        return StdoutConsumer()
    if kind == "null":
        return NullConsumer()
    raise ValueError(f"unknown consumer kind {kind!r}: must be one of {', '.join(CONSUMER_KINDS)}")
