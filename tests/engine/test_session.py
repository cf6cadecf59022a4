"""Session life cycle: states, failures on either side, cancellation, the stream closed on
every path, no task left behind, and every glossary metric measured as documented."""

from __future__ import annotations

import asyncio

import pytest

from sluice.engine.chunk import Chunk
from sluice.engine.histogram import Percentiles
from sluice.engine.limiter import AdjustableLimiter
from sluice.engine.session import Session
from sluice.engine.snapshot import SessionSnapshot
from tests.fakes import (
    BackendBoom,
    FakeClock,
    RecordingConsumer,
    ScriptedBackend,
    other_tasks,
    wait_until,
)

TEXTS = [f"t{i}" for i in range(10)]


def make_session(
    backend: ScriptedBackend,
    consumer: RecordingConsumer,
    *,
    limiter: AdjustableLimiter | None = None,
    maxsize: int = 4,
    batch_max: int = 1,
    clock: FakeClock | None = None,
    session_id: str = "s1",
) -> Session:
    kwargs = {"clock": clock} if clock is not None else {}
    return Session(
        session_id,
        "a prompt",
        backend,
        limiter or AdjustableLimiter(4),
        consumer,
        maxsize=maxsize,
        batch_max=lambda: batch_max,
        **kwargs,
    )


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_a_session_streams_everything_in_order_and_ends_done() -> None:
    before = set(asyncio.all_tasks())
    backend = ScriptedBackend(TEXTS)
    consumer = RecordingConsumer()
    session = make_session(backend, consumer, batch_max=3)
    assert session.state == "queued"
    await session.run()
    assert session.state == "done" and session.error is None
    assert consumer.texts == TEXTS
    assert all(len(b) <= 3 for b in consumer.batches)
    assert (session.tokens_in, session.tokens_out, session.tokens_lost) == (10, 10, 0)
    assert backend.opened == backend.closed == 1 and backend.exit == "end"
    assert session.limiter.in_use == 0
    assert [c.session_id for b in consumer.batches for c in b] == ["s1"] * 10
    assert other_tasks(before) == set()


async def test_states_go_queued_streaming_draining_done() -> None:
    limiter = AdjustableLimiter(1)
    await limiter.acquire()  # the slot is taken: the session must queue
    backend = ScriptedBackend(TEXTS[:3])
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # the consumer is stuck on its first call
    session = make_session(backend, consumer, limiter=limiter, maxsize=4)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.state == "queued"
    assert session.snapshot().slot_wait is None
    limiter.release()
    await settle()
    # The stream ended (3 chunks, all fit) but the consumer has not finished: draining.
    assert backend.exit == "end"
    assert session.state == "draining"
    consumer.gate.set()
    await task
    assert session.state == "done"
    assert consumer.texts == TEXTS[:3]


async def test_streaming_state_while_the_stream_is_open() -> None:
    backend = ScriptedBackend(TEXTS)
    backend.gate = asyncio.Event()
    session = make_session(backend, RecordingConsumer())
    task = asyncio.create_task(session.run())
    await settle()
    assert session.state == "streaming"
    backend.gate.set()
    await task
    assert session.state == "done"


async def test_a_consumer_error_fails_only_its_session_and_closes_the_stream() -> None:
    before = set(asyncio.all_tasks())
    limiter = AdjustableLimiter(4)
    bad_backend = ScriptedBackend(TEXTS, sleep=0.001)
    good_backend = ScriptedBackend(TEXTS, sleep=0.001)
    bad = make_session(bad_backend, RecordingConsumer(fail_on_call=3), limiter=limiter)
    good_consumer = RecordingConsumer()
    good = make_session(good_backend, good_consumer, limiter=limiter, session_id="s2")
    await asyncio.gather(bad.run(), good.run())
    assert bad.state == "failed"
    assert bad.error == "consumer: RuntimeError: consumer broke on call 3"
    assert bad.error_source == "consumer"
    # the detail spells a builtin's type as the table does (no `builtins.`)
    assert bad.error_detail == "consumer: RuntimeError: consumer broke on call 3"
    # The producer was stopped and the backend's stream closed (aclosing ran).
    assert bad_backend.closed == 1 and bad_backend.exit in ("cancelled", "closed early")
    assert bad_backend.yielded < len(TEXTS)
    assert bad.tokens_out == 2
    assert bad.tokens_lost == bad.tokens_in - bad.tokens_out
    # The other session is untouched.
    assert good.state == "done" and good.error is None
    assert good_consumer.texts == TEXTS
    assert limiter.in_use == 0
    assert other_tasks(before) == set()


async def test_a_backend_error_fails_the_session_after_earlier_chunks_were_processed() -> None:
    before = set(asyncio.all_tasks())
    backend = ScriptedBackend(TEXTS, fail_after=4)
    consumer = RecordingConsumer(sleep=0.001)
    session = make_session(backend, consumer, maxsize=16)
    await session.run()
    assert session.state == "failed"
    assert session.error == "backend: BackendBoom: broke after 4 chunks"
    assert session.error_source == "backend"
    assert consumer.texts == TEXTS[:4]  # everything received before the error was processed
    assert (session.tokens_in, session.tokens_out, session.tokens_lost) == (4, 4, 0)
    assert backend.exit == "error" and backend.closed == 1
    assert other_tasks(before) == set()


async def test_a_backend_failing_before_its_first_chunk_fails_the_session() -> None:
    backend = ScriptedBackend(TEXTS, fail_after=0)
    session = make_session(backend, RecordingConsumer())
    await session.run()
    assert session.state == "failed" and session.error_source == "backend"
    assert session.tokens_in == 0 and session.snapshot().ttft is None


async def test_a_backend_whose_stream_call_raises_is_reported_as_a_backend_error() -> None:
    class Refuses:
        name = "refuses"

        def stream(self, prompt: str, info: object) -> object:
            raise ConnectionError("no route to model")

    session = Session(
        "s1", "p", Refuses(), AdjustableLimiter(1), RecordingConsumer(), maxsize=4,
        batch_max=lambda: 1,
    )  # fmt: skip
    await session.run()
    assert session.state == "failed"
    assert session.error == "backend: ConnectionError: no route to model"
    assert session.limiter.in_use == 0


async def test_cancelling_one_session_leaves_the_others_untouched() -> None:
    before = set(asyncio.all_tasks())
    limiter = AdjustableLimiter(4)
    slow = ScriptedBackend(TEXTS)
    slow.gate = asyncio.Event()
    victim = make_session(slow, RecordingConsumer(), limiter=limiter)
    other_consumer = RecordingConsumer(sleep=0.001)
    other = make_session(ScriptedBackend(TEXTS), other_consumer, limiter=limiter, session_id="s2")
    victim_task = asyncio.create_task(victim.run())
    other_task = asyncio.create_task(other.run())
    await settle()
    victim_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim_task
    assert victim.state == "cancelled"
    assert slow.closed == 1 and slow.exit == "cancelled"
    await other_task
    assert other.state == "done" and other_consumer.texts == TEXTS
    assert limiter.in_use == 0
    assert other_tasks(before) == set()


async def test_cancelling_a_queued_session_frees_its_place_in_line() -> None:
    limiter = AdjustableLimiter(1)
    await limiter.acquire()
    backend = ScriptedBackend(TEXTS)
    session = make_session(backend, RecordingConsumer(), limiter=limiter)
    task = asyncio.create_task(session.run())
    await settle()
    assert limiter.waiting == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state == "cancelled" and backend.opened == 0
    assert limiter.waiting == 0 and limiter.in_use == 1
    snap = session.snapshot()
    assert snap.slot_wait is not None and snap.slot_wait >= 0
    assert snap.ttft is None and snap.tokens_in == 0


async def test_cancelling_mid_stream_counts_unprocessed_chunks_as_lost() -> None:
    backend = ScriptedBackend(TEXTS)
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # consumer stuck: chunks pile up in the buffer
    session = make_session(backend, consumer, maxsize=4)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.buffer.depth == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state == "cancelled"
    assert session.tokens_out == 0
    assert session.tokens_lost == session.tokens_in > 0


async def test_empty_chunks_before_the_first_text_are_passed_on_not_dropped() -> None:
    backend = ScriptedBackend(["", "", "a", "", "b"])
    consumer = RecordingConsumer()
    clock = FakeClock()
    backend.clock = clock
    backend.first_delay = 1.0
    backend.gap = 1.0
    session = make_session(backend, consumer, clock=clock)
    await session.run()
    assert consumer.texts == ["", "", "a", "", "b"]
    assert (session.tokens_in, session.tokens_out, session.tokens_lost) == (5, 5, 0)
    # ttft is measured to the first chunk that carries text (the third, at t+3).
    assert session.snapshot().ttft == pytest.approx(3.0)


async def test_metrics_follow_the_glossary_exactly_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = AdjustableLimiter(1)
    await limiter.acquire()
    backend = ScriptedBackend(TEXTS, clock=clock, first_delay=2.0, gap=0.5, age=0.25)
    consumer = RecordingConsumer(clock=clock, cost=0.125)
    session = make_session(backend, consumer, limiter=limiter, clock=clock, batch_max=1)
    task = asyncio.create_task(session.run())
    await settle()
    clock.now += 3.0  # queued for 3 s
    limiter.release()
    await task
    snap = session.snapshot()
    assert isinstance(snap, SessionSnapshot) and snap.state == "done"
    assert snap.slot_wait == pytest.approx(3.0)
    assert snap.ttft == pytest.approx(2.0)
    # itl: 9 gaps between 10 arrivals; the consumer's clock moves land inside some gaps.
    assert snap.itl.count == 9
    assert snap.itl.mean is not None and snap.itl.mean >= 0.5
    assert snap.consumer_call.count == 10
    assert snap.consumer_call.mean == pytest.approx(0.125)
    assert snap.queue_wait.count == 10 and snap.queue_wait.mean is not None
    assert snap.queue_wait.mean >= 0.125  # at least the call that processed it
    assert snap.token_age.count == 10 and snap.token_age.mean is not None
    # age = queue wait + the 0.25 s the chunk spent upstream before it was received
    assert snap.token_age.mean == pytest.approx(snap.queue_wait.mean + 0.25)
    assert (snap.tokens_in, snap.tokens_out, snap.tokens_lost) == (10, 10, 0)
    assert (snap.depth, snap.buffered_bytes) == (0, 0)
    assert snap.maxsize == 4 and 1 <= snap.high_water <= 4
    assert snap.rate_in == 0.0 and snap.rate_out == 0.0  # finished sessions have no rate
    assert snap.memory_bytes > 0
    assert snap.elapsed == pytest.approx(snap.slot_wait + snap.streaming_time)
    assert snap.attempts == 1
    assert 0.0 <= snap.stall_ratio <= 1.0


async def test_stall_is_the_time_the_producer_waited_on_a_full_buffer() -> None:
    clock = FakeClock()
    backend = ScriptedBackend(TEXTS[:6], clock=clock)
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    session = make_session(backend, consumer, clock=clock, maxsize=2)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.buffer.full()
    clock.now += 5.0  # the producer is blocked for 5 s
    running = session.snapshot()
    assert running.stall == pytest.approx(5.0)
    assert running.depth == 2 and running.buffered_bytes > 0
    consumer.gate.set()
    await task
    snap = session.snapshot()
    assert snap.stall == pytest.approx(5.0)
    assert snap.streaming_time == pytest.approx(5.0)
    assert snap.stall_ratio == pytest.approx(1.0)
    assert snap.high_water == 2


async def test_rates_are_measured_while_the_session_runs() -> None:
    clock = FakeClock()
    backend = ScriptedBackend(TEXTS)
    backend.gate = asyncio.Event()
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    session = make_session(backend, consumer, clock=clock, maxsize=16)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.snapshot().rate_in == 0.0
    backend.gate.set()
    await settle(40)
    clock.now += 2.0
    snap = session.snapshot()
    assert snap.tokens_in == 10 and snap.tokens_out == 0
    assert snap.rate_in == pytest.approx(10 / 2.0)
    assert snap.rate_out == 0.0
    consumer.gate.set()
    await task


async def test_latency_summaries_are_percentiles_in_seconds() -> None:
    session = make_session(ScriptedBackend(TEXTS, sleep=0.001), RecordingConsumer())
    await session.run()
    q = session.snapshot().queue_wait
    assert isinstance(q, Percentiles)
    assert q.count == 10
    assert q.p50 is not None and q.p90 is not None and q.p99 is not None and q.max is not None
    assert 0 <= q.p50 <= q.p90 <= q.p99 <= q.max


async def test_detail_carries_prompt_tail_and_error() -> None:
    session = make_session(ScriptedBackend(TEXTS, fail_after=3), RecordingConsumer())
    await session.run()
    detail = session.detail()
    assert detail.prompt == "a prompt"
    assert detail.tail == "t0t1t2"
    # not a builtin: its module stays, so two errors of one name stay apart
    assert detail.error_detail is not None
    assert detail.error_detail.startswith(f"backend: {BackendBoom.__module__}.BackendBoom: ")
    assert detail.snapshot.state == "failed"


async def test_a_consumer_error_closes_a_stream_suspended_between_chunks() -> None:
    # The producer is blocked in put (the buffer is full), so the backend's generator sits at
    # a `yield`: only the session's aclosing can close it, and it must do so before run ends.
    before = set(asyncio.all_tasks())
    backend = ScriptedBackend(TEXTS)
    consumer = RecordingConsumer(fail_on_call=1)
    consumer.gate = asyncio.Event()
    session = make_session(backend, consumer, maxsize=2)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.buffer.full() and session.buffer.stats().waiting_producers == 1
    consumer.gate.set()
    await task
    assert session.state == "failed" and session.error_source == "consumer"
    assert backend.closed == 1 and backend.exit == "closed early"
    assert other_tasks(before) == set()


async def test_cancelling_closes_a_stream_suspended_between_chunks() -> None:
    before = set(asyncio.all_tasks())
    backend = ScriptedBackend(TEXTS)
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    session = make_session(backend, consumer, maxsize=2)
    task = asyncio.create_task(session.run())
    await settle()
    assert session.buffer.full()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.state == "cancelled"
    assert backend.closed == 1 and backend.exit == "closed early"
    assert other_tasks(before) == set()


async def test_a_backend_may_return_any_async_iterator_not_only_a_generator() -> None:
    class Iterator:
        """An async iterator with no aclose(): valid for the Backend protocol."""

        def __init__(self) -> None:
            self.items = iter(TEXTS[:3])

        def __aiter__(self) -> Iterator:
            return self

        async def __anext__(self) -> Chunk:
            try:
                return Chunk(next(self.items), 0)
            except StopIteration:
                raise StopAsyncIteration from None

    class Plain:
        name = "plain"

        def stream(self, prompt: str, info: object) -> Iterator:
            return Iterator()

    consumer = RecordingConsumer()
    session = Session(
        "s1", "p", Plain(), AdjustableLimiter(1), consumer, maxsize=4, batch_max=lambda: 1
    )
    await session.run()
    assert session.state == "done", session.error
    assert consumer.texts == TEXTS[:3]


async def test_a_cancelled_session_gives_back_what_its_buffer_held() -> None:
    """Chunks a cancel leaves in the buffer are lost: counted as such, and no longer held."""
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # never set: the consumer never gets a batch done
    session = Session(
        "s",
        "p",
        ScriptedBackend([f"t{i}" for i in range(10)]),
        AdjustableLimiter(1),
        consumer,
        maxsize=4,
        batch_max=lambda: 1,
    )
    task = asyncio.create_task(session.run())
    await wait_until(lambda: session.buffer.depth == 4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    snap = session.snapshot()
    assert snap.state == "cancelled"
    assert (snap.depth, snap.buffered_bytes) == (0, 0)
    assert snap.tokens_lost == snap.tokens_in - snap.tokens_out > 0
