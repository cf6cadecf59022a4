"""Built-in consumers (sleep, sqlite, stdout, null) and what batch_max does to the calls."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sluice.engine import consumers
from sluice.engine.chunk import Chunk
from sluice.engine.consumers import (
    CONSUMER_KINDS,
    Consumer,
    ConsumerError,
    NullConsumer,
    SleepConsumer,
    SqliteConsumer,
    StdoutConsumer,
    make_consumer,
)
from sluice.engine.limiter import AdjustableLimiter
from sluice.engine.session import Session
from tests.fakes import RecordingConsumer, ScriptedBackend


def chunks(texts: list[str], session_id: str = "s1") -> list[Chunk]:
    out = []
    for i, text in enumerate(texts):
        chunk = Chunk(text, i, {"type": "delta"})
        chunk.session_id = session_id
        chunk.received_at = 10.0 + i
        out.append(chunk)
    return out


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the consumers' sleep with one that records the delay and only yields."""
    delays: list[float] = []
    real_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(consumers.asyncio, "sleep", fake_sleep)
    return delays


def test_every_built_in_is_a_consumer_and_make_consumer_knows_them_all(tmp_path: Path) -> None:
    built = {kind: make_consumer(kind, path=tmp_path / "x.db") for kind in CONSUMER_KINDS}
    assert set(CONSUMER_KINDS) == {"sleep", "sqlite", "stdout", "null"}
    assert isinstance(built["sleep"], SleepConsumer)
    assert isinstance(built["sqlite"], SqliteConsumer)
    assert isinstance(built["stdout"], StdoutConsumer)
    assert isinstance(built["null"], NullConsumer)
    assert all(isinstance(c, Consumer) for c in built.values())
    with pytest.raises(ValueError, match="sleep, sqlite, stdout, null"):
        make_consumer("webhook")


async def test_null_consumer_does_nothing() -> None:
    assert await NullConsumer().process(chunks(["a"])) is None


async def test_sleep_consumer_waits_its_delay_once_per_call_whatever_the_batch(
    recorded_sleeps: list[float],
) -> None:
    consumer = SleepConsumer(delay_ms=25)
    await consumer.process(chunks(["a"]))
    await consumer.process(chunks(["a", "b", "c", "d"]))
    consumer.delay_ms = 5.0  # the live knob: applies from the next call
    await consumer.process(chunks(["e"]))
    assert recorded_sleeps == pytest.approx([0.025, 0.025, 0.005])


async def test_sleep_consumer_jitter_stays_in_range_and_is_seeded(
    recorded_sleeps: list[float],
) -> None:
    for _ in range(2):
        consumer = SleepConsumer(delay_ms=100, jitter=0.5, seed=4)
        for _ in range(20):
            await consumer.process(chunks(["a"]))
    first, second = recorded_sleeps[:20], recorded_sleeps[20:]
    assert first == second
    assert len(set(first)) > 10
    assert all(0.05 <= d <= 0.15 for d in first)


async def test_sleep_consumer_with_zero_delay_still_yields(recorded_sleeps: list[float]) -> None:
    await SleepConsumer(delay_ms=0).process(chunks(["a"]))
    assert recorded_sleeps == [0.0]


@pytest.mark.parametrize("kwargs", [{"delay_ms": -1}, {"jitter": 1.0}, {"jitter": -0.5}])
def test_sleep_consumer_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SleepConsumer(**kwargs)


async def test_stdout_consumer_writes_the_text_of_each_batch() -> None:
    out = io.StringIO()
    consumer = StdoutConsumer(out)
    await consumer.process(chunks(["Hello", ",", " world"]))
    await consumer.process(chunks(["!"]))
    assert out.getvalue() == "Hello, world!"


async def test_stdout_consumer_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    await StdoutConsumer().process(chunks(["to stdout"]))
    assert capsys.readouterr().out == "to stdout"


async def test_stdout_writes_wait_off_the_loop_when_the_reader_stops() -> None:
    """A pipe nobody reads: the call waits (back-pressure for its session) but the event loop
    keeps running; the text arrives whole once the reader reads again."""
    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "w", encoding="utf-8")
    ticked = threading.Event()
    received = bytearray()

    def reader() -> None:
        ticked.wait(3)  # start reading only once the loop ran beside the blocked write
        while chunk := os.read(read_fd, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    consumer = StdoutConsumer(out)
    big = ["x" * 1000] * 300  # 300 kB: far more than a pipe holds
    call = asyncio.create_task(consumer.process(chunks(big)))
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0.01)
        ticks += 1
    pending_while_blocked = not call.done()
    ticked.set()
    try:
        await asyncio.wait_for(call, 10)
        await consumer.aclose()
    finally:
        ticked.set()
        out.close()
        thread.join(10)
        os.close(read_fd)
    assert ticks == 5 and pending_while_blocked
    assert bytes(received) == b"x" * 300_000


async def test_stdout_reader_gone_fails_the_call_with_one_line_and_the_next_at_once() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # `| true`: the reader is gone
    out = os.fdopen(write_fd, "w", encoding="utf-8")
    consumer = StdoutConsumer(out)
    try:
        with pytest.raises(BrokenPipeError) as first:
            await consumer.process(chunks(["lost"]))
        assert "\n" not in str(first.value) and "was closed by its reader" in str(first.value)
        with pytest.raises(BrokenPipeError):
            await consumer.process(chunks(["also lost"]))
        out.write("later writes go nowhere, quietly")
        out.flush()  # the descriptor now points at /dev/null
    finally:
        await consumer.aclose()
        out.close()


def read_rows(path: Path) -> list[tuple[str, int, str, float]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT session_id, idx, text, received_at FROM chunks ORDER BY rowid"
        ).fetchall()


async def test_sqlite_consumer_writes_real_rows_with_parameterised_sql(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    consumer = SqliteConsumer(db)
    tricky = "'); DROP TABLE chunks; --"
    await consumer.process(chunks(["a", "b"], "s1"))
    await consumer.process(chunks([tricky, 'quote " and \\ backslash'], "s2"))
    await consumer.aclose()
    assert read_rows(db) == [
        ("s1", 0, "a", 10.0),
        ("s1", 1, "b", 11.0),
        ("s2", 0, tricky, 10.0),
        ("s2", 1, 'quote " and \\ backslash', 11.0),
    ]


async def test_sqlite_consumer_commits_one_transaction_per_batch(tmp_path: Path) -> None:
    db = tmp_path / "tx.db"
    consumer = SqliteConsumer(db)
    await consumer.process(chunks(["kept-1", "kept-2"]))
    bad_batch = chunks(["would-be-written", "x", "y"])
    bad_batch[2].text = None  # type: ignore[assignment]  # violates NOT NULL on the 3rd row
    with pytest.raises(sqlite3.IntegrityError):
        await consumer.process(bad_batch)
    await consumer.process(chunks(["after"]))
    await consumer.aclose()
    # The failed batch left nothing behind: its first two rows were rolled back with it.
    assert [row[2] for row in read_rows(db)] == ["kept-1", "kept-2", "after"]


async def test_sqlite_consumer_writes_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = SqliteConsumer._write

    def spy(self: SqliteConsumer, rows: list[tuple[str, int, str, float]], queued: float) -> None:
        threads.append(threading.get_ident())
        original(self, rows, queued)

    monkeypatch.setattr(SqliteConsumer, "_write", spy)
    consumer = SqliteConsumer(tmp_path / "thread.db")
    await consumer.process(chunks(["a"]))
    await consumer.process(chunks(["b"]))
    await consumer.aclose()
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_sqlite_consumer_refuses_work_after_close(tmp_path: Path) -> None:
    consumer = SqliteConsumer(tmp_path / "closed.db")
    await consumer.process(chunks(["a"]))
    await consumer.aclose()
    await consumer.aclose()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await consumer.process(chunks(["b"]))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("no/such/dir/x.db", "folder {tmp}/no/such/dir does not exist"),
        (".", "is a directory; expected a database file"),
    ],
)
def test_sqlite_consumer_refuses_an_unusable_path_when_built(
    tmp_path: Path, where: str, message: str
) -> None:
    path = tmp_path / where
    with pytest.raises(ConsumerError) as caught:
        make_consumer("sqlite", path=path)
    text = str(caught.value)
    assert text.startswith(f'[consumer] path = "{path}": ')
    assert message.format(tmp=tmp_path) in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_sqlite_consumer_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConsumerError, match="is not writable"):
            SqliteConsumer(folder / "x.db")
    finally:
        folder.chmod(0o700)


async def test_sqlite_errors_name_the_file(tmp_path: Path) -> None:
    db = tmp_path / "not-a-db.db"
    db.write_bytes(b"this is not a database" * 100)
    consumer = SqliteConsumer(db)
    with pytest.raises(sqlite3.DatabaseError, match=f"^{db}: file is not a database"):
        await consumer.process(chunks(["a"]))
    await consumer.aclose()


def lock_database(db: Path) -> sqlite3.Connection:
    """Another writer holding the database (as another process would)."""
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("PRAGMA journal_mode=WAL")
    locker.execute(SqliteConsumer._SCHEMA)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


async def test_sessions_failing_on_a_locked_database_do_not_wait_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "BUSY_TIMEOUT", 0.5, raising=False)
    db = tmp_path / "locked.db"
    locker = lock_database(db)
    consumer = SqliteConsumer(db)
    limiter = AdjustableLimiter(12)
    backends = [ScriptedBackend(["a", "b"]) for _ in range(12)]
    sessions = [
        Session(f"s{i}", "p", b, limiter, consumer, maxsize=4, batch_max=lambda: 1)
        for i, b in enumerate(backends)
    ]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(s.run() for s in sessions))
    took = loop.time() - started
    locker.rollback()
    locker.close()
    await consumer.aclose()
    assert all(s.state == "failed" for s in sessions)
    assert all(s.error is not None and str(db) in s.error and "locked" in s.error
               for s in sessions)  # fmt: skip
    # One after another they would take 12 busy timeouts (6 s); together, about one.
    assert took < 5 * 0.5, took


async def test_a_write_after_the_lock_is_gone_waits_normally_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "BUSY_TIMEOUT", 0.2)
    db = tmp_path / "relocked.db"
    locker = lock_database(db)
    consumer = SqliteConsumer(db)
    with pytest.raises(sqlite3.OperationalError, match=r"gave up after 0\.2s"):
        await consumer.process(chunks(["a"]))
    locker.rollback()
    locker.close()
    await consumer.process(chunks(["b"]))  # a new write gets the full wait, and succeeds
    await consumer.aclose()
    assert [row[2] for row in read_rows(db)] == ["b"]


async def test_a_sqlite_write_already_running_when_cancelled_completes_and_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, go = threading.Event(), threading.Event()
    original = SqliteConsumer._write

    def held(self: SqliteConsumer, rows: list[tuple[str, int, str, float]], queued: float) -> None:
        running.set()
        go.wait(10)
        original(self, rows, queued)

    monkeypatch.setattr(SqliteConsumer, "_write", held)
    consumer = SqliteConsumer(tmp_path / "cancel.db")
    first = asyncio.create_task(consumer.process(chunks(["committed"])))
    second = asyncio.create_task(consumer.process(chunks(["never started"])))
    await asyncio.get_running_loop().run_in_executor(None, running.wait, 10)
    first.cancel()
    second.cancel()  # still queued behind the first: dropped
    await asyncio.sleep(0.01)
    go.set()
    assert await first is None  # committed: returns, so the session counts it delivered
    with pytest.raises(asyncio.CancelledError):
        await second
    await consumer.aclose()
    assert [row[2] for row in read_rows(tmp_path / "cancel.db")] == ["committed"]


async def run_session(batch_max: int, consumer: RecordingConsumer, n: int = 40) -> Session:
    texts = [f"w{i}" for i in range(n)]
    session = Session(
        "s", "p", ScriptedBackend(texts), AdjustableLimiter(1), consumer,
        maxsize=16, batch_max=lambda: batch_max,
    )  # fmt: skip
    await session.run()
    assert consumer.texts == texts
    return session


async def test_batch_max_one_makes_one_call_per_chunk() -> None:
    consumer = RecordingConsumer(sleep=0.001)
    session = await run_session(1, consumer)
    assert consumer.calls == 40 and all(len(b) == 1 for b in consumer.batches)
    assert session.consumer_call.count == 40


async def test_a_larger_batch_max_takes_what_is_waiting_in_fewer_calls() -> None:
    consumer = RecordingConsumer(sleep=0.001)
    session = await run_session(8, consumer)
    sizes = [len(b) for b in consumer.batches]
    assert max(sizes) == 8 and all(s <= 8 for s in sizes)
    assert consumer.calls < 40 / 2
    assert session.consumer_call.count == consumer.calls
    assert session.queue_wait.count == 40
