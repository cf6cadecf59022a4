"""Bounded shutdown and the consumer timeout: a consumer that swallows CancelledError or never
returns cannot hold a session, its slot, `wait_idle()` or `Engine.aclose()` forever."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.limiter import AdjustableLimiter
from sluice.engine.session import Session
from tests.fakes import RecordingConsumer, ScriptedBackend, other_tasks

TEXTS = [f"w{i}" for i in range(50)]


class Stubborn:
    """A consumer whose call sleeps and swallows every CancelledError until `release` is set
    (the test sets it at the end so the event loop can close)."""

    def __init__(self, *, hang_on_call: int = 1) -> None:
        self.hang_on_call = hang_on_call
        self.calls = 0
        self.cancels_swallowed = 0
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()

    async def process(self, batch: Sequence[Chunk]) -> None:
        self.calls += 1
        if self.calls < self.hang_on_call:
            return
        self.hanging.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancels_swallowed += 1


class NeverReturns:
    """A consumer whose call never returns but honours cancellation."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def process(self, batch: Sequence[Chunk]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def config(timeout_s: float = 0.0, limit: int = 4) -> Config:
    return Config().with_values({"consumer.timeout_s": timeout_s, "limits.demo": limit})


async def test_aclose_abandons_a_session_whose_consumer_swallows_cancel() -> None:
    consumer = Stubborn(hang_on_call=3)
    engine = Engine(config(), consumer=consumer, shutdown_grace=0.2)
    engine.start()
    stuck = engine.add_session("p", ScriptedBackend(TEXTS, name="fake"))
    fine = engine.add_session("q", ScriptedBackend(TEXTS, name="fake", sleep=0.01),
                              consumer=RecordingConsumer())  # fmt: skip
    await asyncio.wait_for(consumer.hanging.wait(), 10)
    try:
        await asyncio.wait_for(engine.aclose(), 10)  # before the fix: never returns
        assert consumer.cancels_swallowed >= 1
        assert stuck.state == "failed"
        assert stuck.error == "consumer: Abandoned: did not stop within 0.2s of cancel"
        assert stuck.error_source == "consumer"
        assert stuck.tokens_lost == stuck.tokens_in - stuck.tokens_out > 0
        assert fine.state == "cancelled"  # the other session stopped as usual
        await asyncio.wait_for(engine.wait_idle(), 10)
        reported = (stuck.state, stuck.error, stuck.tokens_out, stuck.tokens_lost)
    finally:
        consumer.release.set()
    await asyncio.sleep(0.05)
    # The late end does not rewrite what was reported.
    assert (stuck.state, stuck.error, stuck.tokens_out, stuck.tokens_lost) == reported


async def test_cancelling_a_stuck_session_frees_its_slot() -> None:
    consumer = Stubborn()
    limiter = AdjustableLimiter(1)
    session = Session("s", "p", ScriptedBackend(TEXTS), limiter, consumer, maxsize=4,
                      batch_max=lambda: 1, grace=0.1)  # fmt: skip
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(consumer.hanging.wait(), 10)
    assert limiter.in_use == 1
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert limiter.in_use == 0
        assert session.state == "failed"
        assert session.error == "consumer: Abandoned: did not stop within 0.1s of cancel"
    finally:
        consumer.release.set()


async def test_a_consumer_call_that_never_returns_fails_its_session_after_the_timeout() -> None:
    before = set(asyncio.all_tasks())
    consumer = NeverReturns()
    async with Engine(config(timeout_s=0.2, limit=1), consumer=consumer) as engine:
        hung = engine.add_session("p", ScriptedBackend(TEXTS, name="fake"))
        after = engine.add_session("q", ScriptedBackend(["a", "b"], name="fake"),
                                   consumer=RecordingConsumer())  # fmt: skip
        await asyncio.wait_for(engine.wait_idle(), 10)  # before the fix: never returns
    assert other_tasks(before) == set()
    assert hung.state == "failed"
    assert hung.error == "consumer: ConsumerTimeout: consumer call did not return within 0.2s"
    assert consumer.cancelled == 1  # the running call was cancelled
    assert after.state == "done"  # the slot it held went to the next session
    assert hung.tokens_lost == hung.tokens_in - hung.tokens_out > 0


async def test_a_timed_out_call_that_swallows_its_cancel_is_abandoned_after_the_grace() -> None:
    consumer = Stubborn(hang_on_call=2)
    engine = Engine(config(timeout_s=0.1), consumer=consumer, shutdown_grace=0.1)
    engine.start()
    try:
        session = engine.add_session("p", ScriptedBackend(TEXTS, name="fake"))
        await asyncio.wait_for(engine.wait_idle(), 10)
        assert session.state == "failed"
        assert session.error == (
            "consumer: ConsumerTimeout: consumer call did not return within 0.1s, "
            "then did not stop within 0.1s of cancel; abandoned"
        )
        assert consumer.cancels_swallowed >= 1
        await asyncio.wait_for(engine.aclose(), 10)
    finally:
        consumer.release.set()


async def test_slow_calls_under_the_timeout_are_left_alone() -> None:
    consumer = RecordingConsumer(sleep=0.03)
    async with Engine(config(timeout_s=0.5), consumer=consumer) as engine:
        session = engine.add_session("p", ScriptedBackend(TEXTS[:10], name="fake"))
        await asyncio.wait_for(engine.wait_idle(), 10)
    assert session.state == "done" and consumer.texts == TEXTS[:10]


async def test_timeout_zero_means_no_limit() -> None:
    consumer = RecordingConsumer(sleep=0.05)
    session = Session("s", "p", ScriptedBackend(["a", "b"]), AdjustableLimiter(1), consumer,
                      maxsize=4, batch_max=lambda: 1, consumer_timeout=0)  # fmt: skip
    await session.run()
    assert session.state == "done"


class CommitsThroughCancel:
    """A consumer whose write cannot be stopped once started: cancelled mid-call, it finishes
    the write, then returns (the sqlite consumer's contract)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.started = asyncio.Event()

    async def process(self, batch: Sequence[Chunk]) -> None:
        if len(self.written) == 3:
            self.started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the write completes all the same
        self.written.extend(c.text for c in batch)


async def test_a_batch_delivered_while_its_session_was_cancelled_counts_as_delivered() -> None:
    consumer = CommitsThroughCancel()
    session = Session("s", "p", ScriptedBackend(TEXTS), AdjustableLimiter(1), consumer,
                      maxsize=4, batch_max=lambda: 1)  # fmt: skip
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(consumer.started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state == "cancelled"
    assert consumer.written == TEXTS[:4]
    assert session.tokens_out == 4  # before the fix: 3, the committed batch counted lost
    assert session.tokens_lost == session.tokens_in - 4


def test_shutdown_grace_must_be_a_non_negative_number() -> None:
    with pytest.raises(ValueError, match="shutdown_grace"):
        Engine(shutdown_grace=-1)
