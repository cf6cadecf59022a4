"""Consumers: the slow per-token work at the end of each session (a write, a webhook, a render).

A consumer is anything with `async process(batch)`; an optional `async aclose()` is called
when the engine shuts down. `batch_max = 1` makes every call carry one chunk (the per-token
consumer of the original pattern); a larger `batch_max` lets a call take all that is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import queue
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from sluice.engine.chunk import Chunk

__all__ = [
    "BUSY_TIMEOUT",
    "CONSUMER_KINDS",
    "Consumer",
    "ConsumerError",
    "NullConsumer",
    "SleepConsumer",
    "SqliteConsumer",
    "StdoutConsumer",
    "check_sqlite_path",
    "close_consumer",
    "discard_broken_output",
    "make_consumer",
]

CONSUMER_KINDS = ("sleep", "sqlite", "stdout", "null")
BUSY_TIMEOUT = 5.0  # seconds a sqlite write waits for a database locked by another process


class ConsumerError(ValueError):
    """A consumer cannot be built from the config (an unusable sqlite path, say); the
    message is the one line the user sees."""


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
    """Writes each batch's text to stdout (or `stream`), on a writer thread.

    A reader that stops reading blocks that thread, never the event loop; each call waits
    for its own write, so back-pressure reaches the session and at most one batch per
    session is in flight. A reader that went away (`| true`) fails the session with one
    line; later calls fail at once, and the descriptor is pointed at /dev/null so nothing
    else (the interpreter's last flush included) trips over the closed pipe.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: sys.stdout, looked up at the first call
        self._jobs: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._broken: str | None = None
        self._closed = False

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Hand the batch's text to the writer thread and wait until it is written."""
        if self._broken is not None:
            raise BrokenPipeError(self._broken)
        if self._closed:
            raise RuntimeError("stdout consumer is closed")
        loop = asyncio.get_running_loop()
        job = _Write("".join([chunk.text for chunk in batch]), loop)
        if self._thread is None:
            self._start(self._stream or sys.stdout)
        self._jobs.put(job)
        try:
            await job.done
        except asyncio.CancelledError:
            job.skip = True  # not written yet: the thread drops it
            raise

    def _start(self, stream: TextIO) -> None:
        stream.flush()  # what Python buffered so far goes first
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name="sluice-stdout", daemon=True
        )
        self._thread.start()

    def _run(self, stream: TextIO) -> None:
        """The writer thread: write each job in turn and tell its loop how it went."""
        try:
            fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None  # a stream without a descriptor (a StringIO): write through it
        encoding = getattr(stream, "encoding", None) or "utf-8"
        errors = getattr(stream, "errors", None) or "strict"
        while (job := self._jobs.get()) is not None:
            if job.skip:
                continue
            error: Exception | None = None
            try:
                if self._broken is not None:
                    raise BrokenPipeError(self._broken)
                if fd is None:
                    stream.write(job.text)
                    stream.flush()
                else:
                    _write_all(fd, job.text.encode(encoding, errors))
            except BrokenPipeError:
                name = getattr(stream, "name", None)
                where = name if isinstance(name, str) else "the output"
                self._broken = f"{where} was closed by its reader"
                discard_broken_output(stream)
                error = BrokenPipeError(self._broken)
            except Exception as exc:
                error = exc
            job.finish(error)

    async def aclose(self) -> None:
        """Stop the writer thread once it has written what it holds (not waiting for it)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)


class _Write:
    """One batch's text on its way to the writer thread, and the future its caller awaits."""

    __slots__ = ("done", "loop", "skip", "text")

    def __init__(self, text: str, loop: asyncio.AbstractEventLoop) -> None:
        self.text = text
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self.skip = False

    def finish(self, error: Exception | None) -> None:
        """From the writer thread: resolve the future on its loop (if that still runs)."""
        try:
            self.loop.call_soon_threadsafe(self._resolve, error)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    def _resolve(self, error: Exception | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_DISCARDED: set[int] = set()  # descriptors pointed at /dev/null after their reader left


def discard_broken_output(stream: TextIO) -> None:
    """After EPIPE on `stream`, point its descriptor at /dev/null, as the Python docs advise
    for SIGPIPE: later writes and the interpreter's final flush then succeed silently
    (`output_discarded` then says so, for whoever still has something to tell)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    _DISCARDED.add(fd)


def output_discarded(stream: TextIO) -> bool:
    """True when `stream`'s reader went away and its writes now go nowhere."""
    try:
        return stream.fileno() in _DISCARDED
    except (AttributeError, OSError, ValueError):
        return False


class SqliteConsumer:
    """Real writes: one transaction per batch into a `chunks` table, off the event loop.

    One worker thread owns the connection (sqlite3 connections are per thread), so writes
    from all sessions are serialised the way a single database connection serialises them.
    A write waits at most `BUSY_TIMEOUT` for a database locked by another process; writes
    queued behind one that gave up then get a single immediate try instead of a wait of
    their own, so N sessions failing on a locked database take one timeout, not N. Errors
    name the file. An unusable `path` is refused when the consumer is built.
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS chunks ("
        " session_id TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,"
        " received_at REAL NOT NULL)"
    )
    _INSERT = "INSERT INTO chunks (session_id, idx, text, received_at) VALUES (?, ?, ?, ?)"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_sqlite_path(self.path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-sqlite")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._gave_up_at = -math.inf  # when a write last gave up waiting for a lock
        self._closed = False

    def _connection(self, busy: float) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=busy)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(self._SCHEMA)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            self._connections.append(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
        return conn

    def _write(self, rows: list[tuple[str, int, str, float]], queued_at: float) -> None:
        # Queued while another write waited out the lock: one try, no wait of its own.
        busy = 0.0 if queued_at < self._gave_up_at else BUSY_TIMEOUT
        try:
            conn = self._connection(busy)
            with conn:  # one transaction: commit on success, roll back on error
                conn.executemany(self._INSERT, rows)
        except sqlite3.Error as exc:
            locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            if locked:
                self._gave_up_at = time.monotonic()
                waited = f" (gave up after {busy:g}s)" if busy else " (still locked)"
            else:
                waited = ""
            raise type(exc)(f"{self.path}: {exc}{waited}") from exc

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Insert the batch in one transaction on the writer thread.

        Cancelled while its transaction runs (which cannot be stopped), it waits for the
        outcome and returns if the batch committed, so the session counts it as delivered.
        """
        if self._closed:
            raise RuntimeError("sqlite consumer is closed")
        rows = [(c.session_id, c.index, c.text, c.received_at) for c in batch]
        work = self._executor.submit(self._write, rows, time.monotonic())
        try:
            await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            if work.cancel() or work.cancelled():
                raise  # never started: nothing was written
            try:
                await asyncio.wrap_future(work)
            except Exception:
                raise asyncio.CancelledError from None  # it failed: nothing was written

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


def check_sqlite_path(path: Path) -> None:
    """Refuse a database path sqlite could not write (folder missing or read-only, a
    directory, a read-only file) with a ConsumerError naming it."""
    where = f"[consumer] path = {json.dumps(str(path))}"
    folder = path.parent
    if path.is_dir():
        raise ConsumerError(f"{where}: is a directory; expected a database file")
    if not folder.is_dir():
        raise ConsumerError(f"{where}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConsumerError(
            f"{where}: folder {folder} is not writable (sqlite keeps its journal there)"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConsumerError(f"{where}: the file is not writable")


async def close_consumer(consumer: Consumer) -> None:
    """Call a consumer's optional `aclose()`; a failure to close is not the caller's problem."""
    closer = getattr(consumer, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


def make_consumer(
    kind: str,
    *,
    delay_ms: float = 50.0,
    path: str | Path = "sluice.db",
    text_out: TextIO | None = None,
) -> Consumer:
    """Build a built-in consumer by its config name; `text_out` is where `stdout` writes
    (default: stdout). Raises ConsumerError for an unusable sqlite path."""
    if kind == "sleep":
        return SleepConsumer(delay_ms)
    if kind == "sqlite":
        return SqliteConsumer(path)
    if kind == "stdout":
        return StdoutConsumer(text_out)
    if kind == "null":
        return NullConsumer()
    raise ValueError(f"unknown consumer kind {kind!r}: must be one of {', '.join(CONSUMER_KINDS)}")
