"""The content-idle clock: only time spent waiting on the stream counts, content restarts it,
and a cancel from elsewhere stays a cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sluice.engine.backends.idle import ContentIdle, IdleClock
from tests.backends.helpers import run_prompts
from tests.backends.servers import AnthropicServer
from tests.backends.test_claude import claude
from tests.fakes import RecordingConsumer


async def ticks(gap: float, count: int = 1000) -> AsyncIterator[int]:
    """`count` items, one every `gap` seconds."""
    for i in range(count):
        await asyncio.sleep(gap)
        yield i


async def test_items_without_content_run_the_clock_out():
    clock = IdleClock(0.1)
    stream = ticks(0.02)
    read = 0
    with pytest.raises(ContentIdle):
        while True:
            await clock.read(stream)
            read += 1
    clock.close()
    assert 2 <= read < 1000  # keep-alives arrived, yet the clock ran out


async def test_content_restarts_the_clock():
    clock = IdleClock(0.1)
    stream = ticks(0.02, count=20)  # 0.4 s in all, four times the timeout
    got = []
    with pytest.raises(StopAsyncIteration):
        while True:
            got.append(await clock.read(stream))
            clock.content()
    clock.close()
    assert got == list(range(20))


async def test_time_away_from_the_stream_does_not_count():
    clock = IdleClock(0.1)
    stream = ticks(0.0, count=3)
    got = [await clock.read(stream)]
    await asyncio.sleep(0.25)  # a full buffer holding the producer, say
    got.append(await clock.read(stream))
    clock.close()
    assert got == [0, 1]


async def test_a_cancel_from_elsewhere_stays_a_cancel():
    clock = IdleClock(0.05)

    async def reader() -> None:
        await clock.read(ticks(10.0))

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.close()


async def test_a_cancel_that_meets_the_clock_stays_a_cancel():
    clock = IdleClock(0.05)
    seen: list[BaseException] = []

    async def reader() -> None:
        try:
            await clock.read(ticks(10.0))
        except BaseException as exc:
            seen.append(exc)
            raise

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # the reader is waiting on the stream
    time.sleep(0.07)  # noqa: ASYNC251 (the loop must stand still past the deadline)
    task.cancel()  # someone cancels; on the next loop turn the clock's timer cancels too
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.close()
    assert [type(e) for e in seen] == [asyncio.CancelledError]


class SlowFirstBatch(RecordingConsumer):
    """Takes `delay` seconds over its first batch only."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def process(self, batch: object) -> None:  # type: ignore[override]
        if not self.seen:
            await asyncio.sleep(self.delay)
        await super().process(batch)  # type: ignore[arg-type]


async def test_a_slow_consumer_is_not_the_servers_silence(anthropic_server: AnthropicServer):
    # The producer waits on a full buffer for longer than timeout_s; the server was not idle.
    consumer = SlowFirstBatch(0.8)
    details, _ = await run_prompts(
        claude(anthropic_server, timeout_s=0.3), ["p"], consumer=consumer, maxsize=1
    )
    s = details["p"].snapshot
    assert (s.state, s.error) == ("done", None)
    assert s.stall > 0.3
