"""`Engine.on_session_end`: watchers learn of every session that ends, and a watcher's bug
disturbs no session; `latency_histograms` merges what the totals summarise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.session import Session
from tests.fakes import ScriptedBackend


def _config() -> Config:
    return Config().with_values(
        {
            "limits.demo": 1,
            "consumer.kind": "null",
            "demo.sessions": 1,
            "demo.tokens": 20,
            "demo.rate": 5000.0,
            "demo.ttft_ms": 1.0,
        }
    )


async def test_listeners_hear_of_done_failed_and_cancelled_sessions_but_not_dropped_ones() -> None:
    ended: list[tuple[str, str]] = []
    async with Engine(_config()) as engine:
        unsubscribe = engine.on_session_end(lambda s: ended.append((s.id, s.state)))
        engine.add_session("ok", ScriptedBackend(["a", "b"], name="ok"), session_id="ok")
        failing = ScriptedBackend(["a", "b", "c"], fail_after=1, name="bad")
        engine.add_session("bad", failing, session_id="bad")
        slow = ScriptedBackend(["x"] * 5, sleep=10.0, name="slow")
        engine.add_session("slow", slow, session_id="slow")
        await asyncio.sleep(0.05)
        engine.cancel("slow")
        hold = engine.add_demo_sessions(1)[0]  # takes the single demo slot
        for _ in range(100_000):
            if hold.state != "queued":
                break
            await asyncio.sleep(0)
        engine.add_demo_sessions(1)  # queued behind it, then dropped
        engine.drop_queued()
        await engine.wait_idle()
        unsubscribe()
        engine.add_session("late", ScriptedBackend(["a"], name="late"), session_id="late")
        await engine.wait_idle()
    assert sorted(ended) == sorted(
        [("ok", "done"), ("bad", "failed"), ("slow", "cancelled"), (hold.id, "done")]
    )


async def test_a_listener_that_raises_disturbs_nothing() -> None:
    seen: list[Session] = []

    def broken(session: Session) -> None:
        raise RuntimeError("watcher bug")

    async with Engine(_config()) as engine:
        engine.on_session_end(broken)
        engine.on_session_end(seen.append)
        engine.add_demo_sessions(3)
        await engine.wait_idle()
        states = [s.state for s in engine.snapshot().sessions]
    assert states == ["done"] * 3
    assert len(seen) == 3


async def test_latency_histograms_are_what_the_totals_summarise() -> None:
    async with Engine(_config(), history=1) as engine:
        engine.add_demo_sessions(3)
        await engine.wait_idle()
        merged = engine.latency_histograms()
        totals = engine.snapshot().totals
    assert set(merged) == {"queue_wait", "token_age", "consumer_call", "ttft", "slot_wait"}
    assert merged["queue_wait"].summary() == totals.queue_wait
    assert merged["ttft"].count == totals.ttft.count == 3  # two of them folded into history
    assert merged["queue_wait"].count == totals.tokens_out


async def test_a_scrape_right_after_a_snapshot_reuses_its_merge() -> None:
    async with Engine(_config()) as engine:
        engine.add_demo_sessions(2)
        await engine.wait_idle()
        engine.snapshot()
        first = engine.latency_histograms(max_age=60)
        again = engine.latency_histograms(max_age=60)
        fresh = engine.latency_histograms()
    assert first["queue_wait"] is again["queue_wait"]
    assert fresh["queue_wait"] is not first["queue_wait"]
    assert fresh["queue_wait"].buckets() == first["queue_wait"].buckets()


async def test_a_backend_that_yields_text_instead_of_chunks_fails_its_session_saying_so() -> None:
    """A user's own backend yielding `str`: one clear error, not an AttributeError."""

    class Plain:
        name = "mine"

        async def stream(self, prompt: str, info: object) -> AsyncIterator[str]:
            yield "hello"

    async with Engine(Config()) as engine:
        session = engine.add_session("p", Plain())  # type: ignore[arg-type]
        await engine.wait_idle()
    assert session.state == "failed"
    assert session.error is not None
    assert "the backend yielded a str, not a sluice.engine.Chunk" in session.error
