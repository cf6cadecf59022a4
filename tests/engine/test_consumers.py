"""Built-in consumers (sleep, sqlite, stdout, null) and what batch_max does to the calls."""

from __future__ import annotations

import asyncio
import io
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
    NullConsumer,
    SleepConsumer,
    SqliteConsumer,
    StdoutConsumer,
    make_consumer,
)
from sluice.engine.limiter import AdjustableLimiter
from sluice.engine.session import Session
from tests.engine.engine_fakes import RecordingConsumer, ScriptedBackend


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

    def spy(self: SqliteConsumer, rows: list[tuple[str, int, str, float]]) -> None:
        threads.append(threading.get_ident())
        original(self, rows)

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


async def test_sqlite_consumer_reports_an_unwritable_path(tmp_path: Path) -> None:
    consumer = SqliteConsumer(tmp_path / "no" / "such" / "dir" / "x.db")
    with pytest.raises(sqlite3.OperationalError):
        await consumer.process(chunks(["a"]))
    await consumer.aclose()


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
