"""The engine facade: knobs that reach running sessions at once, continuous demo mode, frozen
snapshots that stay cheap at 1,000 sessions, clean shutdown, and the issue's done-when run."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.engine.backends.registry import UnknownBackend
from sluice.engine.config import Config
from sluice.engine.consumers import NullConsumer, SleepConsumer
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine, KnobError
from sluice.engine.histogram import Histogram
from sluice.engine.snapshot import (
    BackendSnapshot,
    EngineSnapshot,
    ProcessSnapshot,
    SessionSnapshot,
    Totals,
)
from tests.fakes import FakeClock, RecordingConsumer, ScriptedBackend, other_tasks, wait_until

GLOSSARY = {
    "slot_wait", "ttft", "itl", "queue_wait", "token_age", "consumer_call", "stall",
    "stall_ratio", "depth", "maxsize", "high_water", "buffered_bytes", "tokens_in",
    "tokens_out", "tokens_lost", "rate_in", "rate_out",
}  # fmt: skip


def make_config(
    *,
    maxsize: int = 16,
    batch_max: int = 1,
    demo_limit: int = 12,
    kind: str = "sleep",
    delay_ms: float = 1.0,
    sessions: int = 4,
    tokens: int = 20,
    rate: float = 4000.0,
    ttft_ms: float = 1.0,
    path: str = "sluice.db",
) -> Config:
    return Config().with_values(
        {
            "queue.maxsize": maxsize,
            "queue.batch_max": batch_max,
            "limits.demo": demo_limit,
            "consumer.kind": kind,
            "consumer.delay_ms": delay_ms,
            "consumer.path": path,
            "demo.sessions": sessions,
            "demo.tokens": tokens,
            "demo.rate": rate,
            "demo.ttft_ms": ttft_ms,
        }
    )


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- knobs ----------------------------------------------------------------------------------


async def test_maxsize_knob_resizes_running_buffers_at_once_and_applies_to_new_sessions() -> None:
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    backend = ScriptedBackend([f"c{i}" for i in range(40)])
    async with Engine(make_config(maxsize=4), consumer=consumer) as engine:
        session = engine.add_session("p", backend)
        await settle()
        assert session.buffer.depth == 4 and session.buffer.stats().waiting_producers == 1
        engine.set_knob("queue.maxsize", 10)
        await settle()
        # The blocked producer woke at once and filled the larger buffer.
        assert session.buffer.maxsize == 10 and session.buffer.depth == 10
        assert engine.snapshot().sessions[0].maxsize == 10
        engine.set_knob("queue.maxsize", 2)  # shrinking drops nothing
        await settle()
        assert session.buffer.depth == 10 and session.buffer.maxsize == 2
        later = engine.add_session("q", backend)
        assert later.buffer.maxsize == 2
        assert engine.knobs["queue.maxsize"] == 2
        consumer.gate.set()
        await engine.wait_idle()
        assert session.state == "done" and session.tokens_lost == 0
        assert consumer.texts.count("c0") == 2  # both sessions delivered everything


async def test_limit_knob_starts_queued_sessions_at_once() -> None:
    backend = ScriptedBackend(["a", "b"], name="fake")
    backend.gate = asyncio.Event()
    async with Engine(make_config(), consumer=NullConsumer()) as engine:
        engine.add_backend(backend, limit=1)
        sessions = [engine.add_session(f"p{i}", "fake") for i in range(4)]
        await settle()
        assert [s.state for s in sessions] == ["streaming", "queued", "queued", "queued"]
        engine.set_knob("limits.fake", 3)
        await settle()
        assert [s.state for s in sessions] == ["streaming", "streaming", "streaming", "queued"]
        fake = {b.name: b for b in engine.snapshot().backends}["fake"]
        assert fake == BackendSnapshot("fake", 3, 3, 1)
        engine.set_knob("limits.fake", 1)  # shrinking preempts nobody
        await settle()
        assert sum(s.state == "streaming" for s in sessions) == 3
        backend.gate.set()
        await engine.wait_idle()
        assert all(s.state == "done" for s in sessions)
        with pytest.raises(KnobError, match="no such knob"):
            engine.set_knob("limits.nope", 2)


async def test_batch_max_knob_applies_from_the_next_consumer_call() -> None:
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    backend = ScriptedBackend([f"c{i}" for i in range(30)])
    async with Engine(make_config(maxsize=64, batch_max=1), consumer=consumer) as engine:
        session = engine.add_session("p", backend)
        await settle()
        assert consumer.calls == 1  # stuck in its first call, which took one chunk
        engine.set_knob("queue.batch_max", 10)
        consumer.gate.set()
        await engine.wait_idle()
        sizes = [len(b) for b in consumer.batches]
        assert sizes[0] == 1 and sizes[1] == 10 and max(sizes) == 10
        assert session.tokens_out == 30


async def test_delay_and_rate_knobs_reach_the_consumer_and_the_demo_model() -> None:
    async with Engine(make_config(kind="sleep", delay_ms=5)) as engine:
        assert isinstance(engine.consumer, SleepConsumer) and engine.delay_applies
        assert not engine.consumer_in_use  # no session uses the consumer yet
        engine.add_demo_sessions(1)
        assert engine.consumer_in_use
        engine.set_knob("consumer.delay_ms", 7.5)
        assert engine.consumer.delay_ms == 7.5
        engine.set_knob("demo.rate", 123.0)
        assert engine.demo.rate == 123.0
        knobs = engine.snapshot().knobs
        assert (knobs["consumer.delay_ms"], knobs["demo.rate"]) == (7.5, 123.0)
    async with Engine(make_config(kind="null")) as engine:
        assert not engine.delay_applies
        engine.set_knob("consumer.delay_ms", 3)  # kept and saved though null ignores it
        assert engine.knobs["consumer.delay_ms"] == 3


async def test_tuned_config_carries_the_knobs() -> None:
    async with Engine(make_config()) as engine:
        engine.set_knob("queue.maxsize", 32)
        engine.set_knob("queue.batch_max", 4)
        engine.set_knob("limits.demo", 9)
        engine.set_knob("consumer.delay_ms", 12)
        engine.set_knob("demo.rate", 77)
        engine.set_knob("demo.sessions", 5)
        tuned = engine.tuned_config()
    assert (tuned["queue.maxsize"], tuned["queue.batch_max"]) == (32, 4)
    assert tuned["limits.demo"] == 9 and tuned["consumer.delay_ms"] == 12
    assert (tuned["demo.rate"], tuned["demo.sessions"]) == (77, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("queue.maxsize", -1),
        ("queue.maxsize", 2000),
        ("queue.maxsize", 1.5),
        ("queue.batch_max", 0),
        ("limits.demo", 0),
        ("consumer.delay_ms", -5),
        ("demo.rate", 0),
        ("demo.rate", float("nan")),
        ("demo.sessions", -1),
        ("demo.sessions", True),
    ],
)
async def test_bad_knob_values_are_refused_with_the_allowed_range(name: str, value: Any) -> None:
    async with Engine(make_config()) as engine:
        before = engine.knobs
        with pytest.raises(KnobError, match="must be"):
            engine.set_knob(name, value)
        assert engine.knobs == before


async def test_continuous_mode_keeps_the_demo_session_count_and_follows_the_knob() -> None:
    cfg = make_config(demo_limit=2, tokens=15, rate=3000, delay_ms=0.5)
    async with Engine(cfg, history=None) as engine:

        def active() -> int:
            return sum(1 for s in engine.sessions.values() if not s.finished)

        demo = ContinuousDemo(engine)
        demo.start(3)
        assert demo.running and active() == 3
        await wait_until(lambda: sum(s.finished for s in engine.sessions.values()) >= 4)
        await wait_until(lambda: active() == 3)
        assert len(engine.sessions) >= 7  # the finished ones were replaced
        engine.set_knob("demo.sessions", 6)
        assert active() == 6
        engine.set_knob("demo.sessions", 2)
        # Sessions that had not started are dropped; streaming ones are never cut short.
        assert active() >= 2
        assert all(s.state != "queued" for s in engine.sessions.values() if not s.finished)
        demo.stop()
        await engine.wait_idle()
        snap = engine.snapshot()
        assert all(s.state == "done" for s in snap.sessions)
        assert snap.totals.tokens_lost == 0


# -- snapshots ------------------------------------------------------------------------------


async def test_snapshot_is_frozen_plain_data_with_the_glossary_names() -> None:
    async with Engine(make_config(sessions=3), consumer=NullConsumer()) as engine:
        engine.add_demo_sessions(3)
        await engine.wait_idle()
        snap = engine.snapshot()
    assert isinstance(snap, EngineSnapshot)
    for obj in (snap, snap.sessions[0], snap.totals, snap.process, snap.backends[0]):
        assert dataclasses.is_dataclass(obj)
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.__setattr__(dataclasses.fields(obj)[0].name, None)
    with pytest.raises(TypeError):  # the knobs, by dotted name, are read-only too
        snap.knobs["queue.maxsize"] = 1  # type: ignore[index]
    assert snap.knobs["queue.maxsize"] == 16
    s = snap.sessions[0]
    assert isinstance(s, SessionSnapshot)
    names = {f.name for f in dataclasses.fields(SessionSnapshot)}
    assert names >= GLOSSARY | {"id", "backend", "state", "error", "memory_bytes"}
    assert isinstance(snap.totals, Totals) and isinstance(snap.process, ProcessSnapshot)
    assert snap.totals.sessions == 3 and snap.totals.states["done"] == 3
    assert snap.totals.tokens_in == sum(x.tokens_in for x in snap.sessions)
    assert snap.totals.queue_wait.count == snap.totals.tokens_out
    assert snap.process.rss > 0 and snap.process.machine_memory > 0
    assert {b.name for b in snap.backends} >= {"claude", "ollama", "demo"}


async def test_snapshot_of_1000_sessions_reuses_percentiles_between_refreshes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"summary": 0, "merge": 0}
    summary, merge = Histogram.summary, Histogram.merge

    def counting_summary(self: Histogram) -> Any:
        calls["summary"] += 1
        return summary(self)

    def counting_merge(self: Histogram, other: Histogram) -> None:
        calls["merge"] += 1
        merge(self, other)

    monkeypatch.setattr(Histogram, "summary", counting_summary)
    monkeypatch.setattr(Histogram, "merge", counting_merge)
    clock = FakeClock()
    backend = ScriptedBackend(["a", "b"], name="fake")
    backend.gate = asyncio.Event()  # every session streams, none finishes
    async with Engine(make_config(), consumer=NullConsumer(), clock=clock) as engine:
        engine.add_backend(backend, limit=1000)
        for i in range(1000):
            engine.add_session(f"p{i}", "fake")
        await settle(5)
        first = engine.snapshot()
        assert len(first.sessions) == 1000
        assert first.totals.states["streaming"] == 1000
        after_first = dict(calls)
        for _ in range(9):  # ten snapshots within one refresh period
            clock.now += 0.01
            snap = engine.snapshot()
        assert len(snap.sessions) == 1000
        # Percentiles and merged totals were computed once, then reused: per snapshot the
        # work is a field copy per session, not a histogram walk.
        assert calls == after_first
        clock.now += 1.0
        engine.snapshot()
        assert calls["summary"] > after_first["summary"]  # refreshed after the period
        backend.gate.set()
        await engine.wait_idle()


async def test_history_folds_old_finished_sessions_into_whole_totals() -> None:
    cfg = make_config(tokens=10, sessions=6)
    async with Engine(cfg, consumer=NullConsumer(), history=2) as engine:
        engine.add_demo_sessions(6)
        await engine.wait_idle()
        snap = engine.snapshot()
    assert len(snap.sessions) == 2
    assert snap.totals.sessions == 6 and snap.totals.states["done"] == 6
    expected = sum(engine.demo.length_for(f"demo prompt {i}") for i in range(1, 7))
    assert snap.totals.tokens_in == snap.totals.tokens_out == expected
    assert snap.totals.queue_wait.count == expected


# -- sessions and shutdown ------------------------------------------------------------------


async def test_add_session_refuses_unknown_backends_duplicate_ids_and_a_closed_engine() -> None:
    engine = Engine(make_config())
    async with engine:
        with pytest.raises(UnknownBackend, match="no backend"):
            engine.add_session("p", "nope")
        engine.add_session("p", session_id="same")
        with pytest.raises(ValueError, match="already exists"):
            engine.add_session("p", session_id="same")
    assert engine.closed
    with pytest.raises(RuntimeError, match="closed"):
        engine.add_session("p")


async def test_cancelling_one_session_leaves_the_others_running() -> None:
    backend = ScriptedBackend(["a", "b", "c"], name="fake")
    backend.gate = asyncio.Event()
    async with Engine(make_config(), consumer=NullConsumer()) as engine:
        engine.add_backend(backend, limit=4)
        a, b, c = (engine.add_session(f"p{i}", "fake") for i in range(3))
        await settle()
        assert engine.cancel(b.id) is True
        await settle()
        assert b.state == "cancelled"
        assert engine.cancel(b.id) is False and engine.cancel("unknown") is False
        backend.gate.set()
        await engine.wait_idle()
        assert (a.state, c.state) == ("done", "done")
        assert a.tokens_out == c.tokens_out == 3


async def test_cancel_all_and_drop_queued() -> None:
    backend = ScriptedBackend(["a"], name="fake")
    backend.gate = asyncio.Event()
    async with Engine(make_config(), consumer=NullConsumer()) as engine:
        engine.add_backend(backend, limit=2)
        sessions = [engine.add_session(f"p{i}", "fake") for i in range(5)]
        await settle()
        assert engine.drop_queued() == 3
        assert set(engine.sessions) == {sessions[0].id, sessions[1].id}
        assert engine.cancel_all() == 2
        await engine.wait_idle()
        assert [s.state for s in engine.sessions.values()] == ["cancelled", "cancelled"]


async def test_no_task_is_left_after_a_finished_run() -> None:
    before = set(asyncio.all_tasks())
    async with Engine(make_config(sessions=4)) as engine:
        engine.add_demo_sessions(4)
        await engine.wait_idle()
    assert other_tasks(before) == set()
    assert all(s.state == "done" for s in engine.snapshot().sessions)


async def test_no_task_is_left_after_aclose_cancels_running_sessions() -> None:
    before = set(asyncio.all_tasks())
    engine = Engine(make_config(tokens=5000, rate=100, delay_ms=10))
    engine.start()
    engine.add_demo_sessions(6)
    ContinuousDemo(engine).start(6)
    await asyncio.sleep(0.05)
    assert other_tasks(before)  # sessions and the sampler are running
    await engine.aclose()
    assert other_tasks(before) == set()
    states = {s.state for s in engine.sessions.values()}
    assert states <= {"cancelled"} and states
    snap = engine.snapshot()
    assert snap.totals.tokens_lost == snap.totals.tokens_in - snap.totals.tokens_out


async def test_no_task_is_left_after_a_consumer_raises() -> None:
    before = set(asyncio.all_tasks())
    consumer = RecordingConsumer(fail_on_call=2)
    async with Engine(make_config(sessions=1), consumer=consumer) as engine:
        bad = engine.add_session("p", ScriptedBackend(["a", "b", "c"], name="fake"))
        good = engine.add_session("q", "demo", consumer=NullConsumer())
        await engine.wait_idle()
        assert not any(t.get_name().startswith("sluice-") for t in other_tasks(before) if
                       t.get_name() != "sluice-sampler")  # fmt: skip
    assert other_tasks(before) == set()
    assert bad.state == "failed" and bad.error is not None and "consumer broke" in bad.error
    assert good.state == "done"


async def test_sqlite_consumer_thread_stops_with_the_engine(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    cfg = make_config(kind="sqlite", path=str(db), sessions=2, tokens=10, batch_max=4)
    async with Engine(cfg) as engine:
        engine.add_demo_sessions(2)
        await engine.wait_idle()
        total = engine.snapshot().totals.tokens_out
    assert not [t for t in threading.enumerate() if t.name.startswith("sluice-sqlite")]
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == total > 0


# -- the "done when" run, time-scaled ----------------------------------------------


async def run_twelve(maxsize: int) -> EngineSnapshot:
    # The model makes 2,000 chunks/s per session; the consumer manages about 300 per second
    # (one 3 ms call per chunk), so the consumer is the slow side, as in the issue.
    cfg = make_config(
        maxsize=maxsize, demo_limit=12, sessions=12, tokens=80, rate=2000, ttft_ms=5, delay_ms=3
    )
    async with Engine(cfg, history=None) as engine:
        engine.add_demo_sessions(12)
        await engine.wait_idle()
        return engine.snapshot()


async def test_done_when_bounded_run_loses_nothing_and_stays_within_maxsize() -> None:
    snap = await run_twelve(16)
    assert len(snap.sessions) == 12
    assert all(s.state == "done" for s in snap.sessions)
    assert all(s.tokens_lost == 0 and s.tokens_in == s.tokens_out > 0 for s in snap.sessions)
    assert all(s.high_water <= 16 for s in snap.sessions)
    assert max(s.high_water for s in snap.sessions) == 16  # the bound was really reached
    assert snap.totals.tokens_lost == 0
    assert sum(s.stall for s in snap.sessions) > 0  # the waiting moved upstream


async def test_done_when_unbounded_run_shows_the_damage() -> None:
    snap = await run_twelve(0)
    assert all(s.state == "done" and s.tokens_lost == 0 for s in snap.sessions)
    assert all(s.maxsize == 0 for s in snap.sessions)
    waters = sorted(s.high_water for s in snap.sessions)
    assert waters[len(waters) // 2] > 32  # the median session held well over 16 chunks
    assert snap.totals.high_water > 32
    assert all(s.stall == 0 for s in snap.sessions)  # nothing pushed back on the model


async def test_demo_sessions_are_numbered_consecutively_like_the_headless_plan() -> None:
    async with Engine(make_config(), consumer=NullConsumer()) as engine:
        started = engine.add_demo_sessions(3)
        assert [s.id for s in started] == ["demo-0001", "demo-0002", "demo-0003"]
        assert [s.prompt for s in started] == [f"demo prompt {i}" for i in (1, 2, 3)]
        assert engine.add_session("p").id == "demo-0004"
        await engine.wait_idle()


@settings(max_examples=12, deadline=None)
@given(
    changes=st.lists(
        st.one_of(
            st.tuples(st.just("queue.maxsize"), st.integers(0, 8)),
            st.tuples(st.just("queue.batch_max"), st.integers(1, 5)),
            st.tuples(st.just("limits.demo"), st.integers(1, 4)),
            st.tuples(st.just("demo.rate"), st.sampled_from([500.0, 3000.0, 10000.0])),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_knob_changes_mid_run_never_lose_or_reorder_a_chunk(changes: list[tuple[str, Any]]) -> None:
    async def main() -> tuple[EngineSnapshot, RecordingConsumer]:
        consumer = RecordingConsumer(sleep=0.0005)
        cfg = make_config(maxsize=4, demo_limit=2, sessions=5, tokens=25, rate=3000)
        async with Engine(cfg, consumer=consumer, history=None) as engine:
            engine.add_demo_sessions(5)
            for knob, value in changes:
                await asyncio.sleep(0.002)
                engine.set_knob(knob, value)
            await engine.wait_idle()
            return engine.snapshot(), consumer

    snap, consumer = asyncio.run(main())
    assert all(s.state == "done" and s.tokens_lost == 0 for s in snap.sessions)
    by_session: dict[str, list[int]] = {}
    for batch in consumer.batches:
        assert len({c.session_id for c in batch}) == 1
        for chunk in batch:
            by_session.setdefault(chunk.session_id, []).append(chunk.index)
    for s in snap.sessions:
        assert by_session[s.id] == list(range(s.tokens_in))


@pytest.mark.parametrize("history", [None, 0, 1])
async def test_totals_do_not_depend_on_how_many_finished_sessions_are_kept(
    history: int | None,
) -> None:
    """One session streams, one is cancelled while queued: the totals are the same whether
    the finished sessions stay in the table or are folded into the totals."""
    config = make_config(demo_limit=1, sessions=2, tokens=5)
    async with Engine(config, history=history) as engine:
        first = engine.add_session("p1", "demo")
        queued = engine.add_session("p2", "demo")
        await settle()
        assert queued.state == "queued"
        engine.cancel(queued.id)
        await engine.wait_idle()
        totals = engine.snapshot().totals
    assert first.state == "done" and queued.state == "cancelled"
    assert totals.sessions == 2
    assert (totals.states["done"], totals.states["cancelled"]) == (1, 1)
    assert totals.slot_wait.count == 2  # the cancelled one waited too, and says so
    assert totals.ttft.count == 1
    assert totals.queue_wait.count == totals.tokens_out > 0


async def test_total_rates_count_short_sessions_that_no_single_rate_shows() -> None:
    """Sessions that each live shorter than a rate sample still make the total flow."""
    clock = FakeClock()
    async with Engine(make_config(demo_limit=8, tokens=5), clock=clock, history=0) as engine:
        engine.snapshot()  # the first sample of the totals' meters
        for _ in range(5):
            engine.add_demo_sessions(4)
            await engine.wait_idle()
            clock.now += 1.0
            snap = engine.snapshot()
            assert all(s.rate_in == 0.0 for s in snap.sessions)  # each one ended already
        assert snap.totals.rate_in > 0 and snap.totals.rate_out > 0
        assert snap.totals.rate_in == pytest.approx(snap.totals.tokens_in / 5.0)
