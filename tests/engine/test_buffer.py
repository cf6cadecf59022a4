"""TokenBuffer's public contract, one behaviour per test: waiting, closing, failing, resizing,
the unbounded mode, the statistics, and cancellation of a waiting put or get."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from sluice.engine.buffer import BufferClosed, BufferStats, TokenBuffer
from tests.fakes import FakeClock


async def settle(rounds: int = 5) -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


async def test_fifo_and_batches_of_up_to_max_items() -> None:
    buf: TokenBuffer[int] = TokenBuffer(8)
    for i in range(5):
        await buf.put(i)
    assert await buf.get_batch() == [0]
    assert await buf.get_batch(3) == [1, 2, 3]
    assert await buf.get_batch(10) == [4]
    assert buf.depth == 0


async def test_put_waits_while_full_and_resumes_when_space_frees() -> None:
    buf: TokenBuffer[int] = TokenBuffer(2)
    await buf.put(1)
    await buf.put(2)
    assert buf.full()
    putter = spawn(buf.put(3))
    await settle()
    assert not putter.done()
    assert buf.stats().waiting_producers == 1
    assert await buf.get_batch() == [1]
    await settle()
    assert putter.done() and putter.exception() is None
    assert await buf.get_batch(5) == [2, 3]


async def test_get_batch_waits_for_at_least_one_item() -> None:
    buf: TokenBuffer[str] = TokenBuffer(4)
    getter = spawn(buf.get_batch(4))
    await settle()
    assert not getter.done()
    assert buf.stats().waiting_consumers == 1
    await buf.put("a")
    await settle()
    assert getter.result() == ["a"]
    assert buf.stats().waiting_consumers == 0


async def test_put_raises_once_closed_and_a_waiting_put_is_released_with_the_error() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(1)
    waiting = spawn(buf.put(2))
    await settle()
    buf.close()
    await settle()
    assert isinstance(waiting.exception(), BufferClosed)
    with pytest.raises(BufferClosed):
        await buf.put(3)
    # What was in the buffer before close is still delivered, then [] for ever.
    assert await buf.get_batch(5) == [1]
    assert await buf.get_batch(5) == []
    assert await buf.get_batch(5) == []


async def test_close_releases_a_waiting_consumer_with_an_empty_batch() -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    getter = spawn(buf.get_batch())
    await settle()
    buf.close()
    await settle()
    assert getter.result() == []
    assert buf.closed


async def test_fail_delivers_earlier_items_then_raises_the_error() -> None:
    buf: TokenBuffer[int] = TokenBuffer(8)
    for i in range(3):
        await buf.put(i)
    boom = RuntimeError("upstream broke")
    buf.fail(boom)
    with pytest.raises(BufferClosed):
        await buf.put(99)
    assert await buf.get_batch(2) == [0, 1]
    assert await buf.get_batch(2) == [2]
    with pytest.raises(RuntimeError) as info:
        await buf.get_batch(2)
    assert info.value is boom
    with pytest.raises(RuntimeError):  # and again: the error is sticky
        await buf.get_batch()


async def test_fail_wakes_a_waiting_consumer_with_the_error() -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    getter = spawn(buf.get_batch())
    await settle()
    buf.fail(ValueError("x"))
    await settle()
    assert isinstance(getter.exception(), ValueError)


async def test_close_after_fail_and_fail_after_close_change_nothing() -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    buf.close()
    buf.fail(RuntimeError("late"))
    assert await buf.get_batch() == []
    other: TokenBuffer[int] = TokenBuffer(4)
    err = KeyError("first")
    other.fail(err)
    other.fail(RuntimeError("second"))
    other.close()
    with pytest.raises(KeyError):
        await other.get_batch()


async def test_growing_wakes_every_waiting_producer_that_now_fits_at_once() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(0)
    putters = [spawn(buf.put(i)) for i in (1, 2, 3)]
    await settle()
    assert not any(p.done() for p in putters)
    assert buf.stats().waiting_producers == 3
    buf.resize(4)
    await settle()
    assert all(p.done() and p.exception() is None for p in putters)
    assert buf.depth == 4 and buf.maxsize == 4
    assert await buf.get_batch(10) == [0, 1, 2, 3]


async def test_growing_by_one_wakes_only_one_producer() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(0)
    putters = [spawn(buf.put(i)) for i in (1, 2)]
    await settle()
    buf.resize(2)
    await settle()
    assert [p.done() for p in putters] == [True, False]
    assert buf.depth == 2


async def test_shrinking_drops_nothing_and_producers_wait_until_depth_is_below_new_size() -> None:
    buf: TokenBuffer[int] = TokenBuffer(8)
    for i in range(8):
        await buf.put(i)
    buf.resize(2)
    assert buf.depth == 8 and buf.maxsize == 2
    putter = spawn(buf.put(8))
    await settle()
    assert not putter.done()
    assert await buf.get_batch(6) == [0, 1, 2, 3, 4, 5]
    await settle()
    assert not putter.done()  # depth 2 is not below the new size 2
    assert await buf.get_batch() == [6]
    await settle()
    assert putter.done()
    assert await buf.get_batch(10) == [7, 8]
    assert buf.high_water == 8


async def test_maxsize_zero_is_unbounded() -> None:
    buf: TokenBuffer[int] = TokenBuffer(0)
    for i in range(1000):
        await buf.put(i)  # never waits
    assert buf.depth == 1000 and buf.high_water == 1000 and not buf.full()
    assert await buf.get_batch(1000) == list(range(1000))


async def test_resizing_to_unbounded_wakes_all_waiting_producers() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(0)
    putters = [spawn(buf.put(i)) for i in range(1, 6)]
    await settle()
    buf.resize(0)
    await settle()
    assert all(p.done() for p in putters)
    assert buf.depth == 6


async def test_statistics_track_depth_high_water_and_bytes() -> None:
    buf: TokenBuffer[bytes] = TokenBuffer(4, sizeof=len)
    await buf.put(b"abc")
    await buf.put(b"de")
    await buf.put(b"f")
    stats = buf.stats()
    assert isinstance(stats, BufferStats)
    assert (stats.depth, stats.maxsize, stats.high_water, stats.buffered_bytes) == (3, 4, 3, 6)
    assert buf.buffered_bytes == 6
    assert await buf.get_batch(2) == [b"abc", b"de"]
    assert buf.buffered_bytes == 1
    assert buf.high_water == 3  # high water never goes down
    assert await buf.get_batch() == [b"f"]
    assert buf.stats().buffered_bytes == 0 and not buf.stats().closed
    buf.close()
    assert buf.stats().closed


async def test_default_sizeof_uses_an_items_own_nbytes() -> None:
    class Sized:
        nbytes = 1234

    buf: TokenBuffer[Sized] = TokenBuffer(2)
    await buf.put(Sized())
    assert buf.buffered_bytes == 1234


async def test_producer_blocked_time_is_counted_including_a_wait_in_progress() -> None:
    clock = FakeClock()
    buf: TokenBuffer[int] = TokenBuffer(1, clock=clock)
    await buf.put(0)
    assert buf.stall_seconds == 0.0
    putter = spawn(buf.put(1))
    await settle()
    clock.now += 2.5
    assert buf.stats().stall_seconds == pytest.approx(2.5)  # still blocked
    await buf.get_batch()
    await settle()
    assert putter.done()
    clock.now += 10.0  # not blocked any more: no more stall
    assert buf.stall_seconds == pytest.approx(2.5)


async def test_cancelled_put_leaves_no_item_and_no_waiter_behind() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(0)
    putter = spawn(buf.put(1))
    await settle()
    putter.cancel()
    await settle()
    assert putter.cancelled()
    stats = buf.stats()
    assert stats.waiting_producers == 0 and stats.depth == 1
    assert await buf.get_batch(5) == [0]
    await buf.put(2)  # the buffer still works
    assert await buf.get_batch(5) == [2]


async def test_producer_woken_then_cancelled_hands_the_free_slot_to_the_next_producer() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    await buf.put(0)
    first = spawn(buf.put(1))
    second = spawn(buf.put(2))
    await settle()
    assert await buf.get_batch() == [0]  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await settle()
    assert first.cancelled()
    assert second.done() and second.exception() is None
    assert await buf.get_batch(5) == [2]


async def test_consumer_woken_then_cancelled_hands_the_item_to_the_next_consumer() -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    first = spawn(buf.get_batch())
    second = spawn(buf.get_batch())
    await settle()
    await buf.put(7)  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await settle()
    assert first.cancelled()
    assert second.result() == [7]
    assert buf.depth == 0 and buf.stats().waiting_consumers == 0


async def test_cancelled_get_loses_no_item() -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    getter = spawn(buf.get_batch())
    await settle()
    getter.cancel()
    await settle()
    await buf.put(5)
    assert await buf.get_batch() == [5]


@pytest.mark.parametrize("bad", [-1, 1.5, "4", True, None])
async def test_bad_maxsize_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        TokenBuffer(bad)  # type: ignore[arg-type]
    buf: TokenBuffer[int] = TokenBuffer(1)
    with pytest.raises(ValueError, match="maxsize"):
        buf.resize(bad)  # type: ignore[arg-type]
    assert buf.maxsize == 1


async def test_get_batch_refuses_max_items_below_one() -> None:
    buf: TokenBuffer[int] = TokenBuffer(1)
    with pytest.raises(ValueError):
        await buf.get_batch(0)


@pytest.mark.parametrize("bad", ["2", 1.5, 2.0, True, None, b"2"])
async def test_get_batch_refuses_a_max_items_that_is_not_an_int_with_a_clear_type_error(
    bad: object,
) -> None:
    buf: TokenBuffer[int] = TokenBuffer(4)
    await buf.put(1)
    await buf.put(2)
    with pytest.raises(TypeError, match=rf"^max_items must be an int, got {type(bad).__name__} "):
        await buf.get_batch(bad)  # type: ignore[arg-type]
    assert buf.depth == 2  # nothing taken
    assert await buf.get_batch(2) == [1, 2]
