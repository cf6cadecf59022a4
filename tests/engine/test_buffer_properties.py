"""Property tests: any interleaving of put/get/resize/close/fail/cancel keeps TokenBuffer
lossless, duplicate-free, ordered, live (no lost wake-up) and within its size.

Each example runs as one `asyncio.run`: the operations are driven from one coroutine and the
put/get tasks advance only when the driver yields with `asyncio.sleep(0)`, so an example is a
deterministic schedule that hypothesis can shrink.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.engine.buffer import BufferClosed, TokenBuffer


class Boom(Exception):
    """The error handed to `fail`."""


# An action, then how far the loop runs before the next one: 0 (the next action races the
# tasks just woken), one or two loop iterations, or -1 = until everything blocks again.
action = st.tuples(
    st.sampled_from(["put", "put", "get", "get", "resize", "cancel_put", "cancel_get"]),
    st.integers(1, 3),
)
op = st.tuples(action, st.sampled_from([0, 1, 1, 2, -1]))
# Closing ends the interesting part, so it comes once, late: a body, maybe an end, a tail.
# Before the end the loop may first run until everything blocks (a liveness check that the
# end would otherwise mask) or the end may race the tasks just woken.
SETTLE = (("settle", 0), -1)
ops = st.builds(
    lambda body, settle_first, end, tail: (
        body + ([SETTLE] if settle_first else []) + ([((end, 0), 0), *tail] if end else [])
    ),
    st.lists(op, min_size=10, max_size=40),
    st.booleans(),
    st.sampled_from([None, "close", "fail"]),
    st.lists(op, max_size=4),
)


@dataclass
class Run:
    """What one example did: items appended (in buffer order) and items handed out."""

    buf: TokenBuffer[int]
    appended: list[int] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)
    puts: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    gets: list[tuple[int, asyncio.Task[list[int]]]] = field(default_factory=list)
    error: Boom | None = None


async def drive(script: list[tuple[tuple[str, int], int]], maxsize: int) -> Run:
    loop = asyncio.get_running_loop()
    holder: dict[str, Any] = {}

    def sizeof(item: int) -> int:
        # Called by put right after it appended `item`: the moment to check the size bound.
        buf = holder["buf"]
        assert buf.maxsize == 0 or buf.depth <= buf.maxsize, (
            f"put appended {item} at depth {buf.depth} > maxsize {buf.maxsize}"
        )
        run.appended.append(item)
        return 1

    buf: TokenBuffer[int] = TokenBuffer(maxsize, sizeof=sizeof)
    holder["buf"] = buf
    run = Run(buf)
    next_item = 0

    def collect() -> None:
        # Check finished gets (what they took is recorded by `get` itself).
        still = []
        for max_items, task in run.gets:
            if not task.done():
                still.append((max_items, task))
                continue
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                assert exc is run.error, f"get raised {exc!r}"
                assert buf.depth == 0
                continue
            batch = task.result()
            assert len(batch) <= max_items
            if not batch:
                assert buf.closed and run.error is None
        run.gets = still

    async def get(max_items: int) -> list[int]:
        batch = await buf.get_batch(max_items)
        run.taken.extend(batch)  # at the very moment the batch left the buffer
        return batch

    async def settle() -> None:
        for _ in range(30):
            await asyncio.sleep(0)
            collect()
        pending_puts = [t for t in run.puts.values() if not t.done()]
        pending_gets = [t for _, t in run.gets if not t.done()]
        # Liveness: nobody still waits who could proceed (no lost wake-up, no deadlock).
        if pending_puts:
            assert buf.full() and not buf.closed, "a producer waits though it could put"
        if pending_gets:
            assert buf.depth == 0 and not buf.closed, "a consumer waits though it could get"
        stats = buf.stats()
        assert stats.waiting_producers == len(pending_puts)
        assert stats.waiting_consumers == len(pending_gets)
        assert stats.depth == buf.depth == stats.buffered_bytes

    for (op, arg), after in script:
        if op == "put":
            for _ in range(arg):
                run.puts[next_item] = loop.create_task(buf.put(next_item))
                next_item += 1
        elif op == "get":
            run.gets.append((arg, loop.create_task(get(arg))))
        elif op == "resize":
            buf.resize(arg * 2 - 2)  # 0 (unbounded), 2 or 4
        elif op == "cancel_put":
            waiting = [t for t in run.puts.values() if not t.done()]
            if waiting:  # 1 and 2: the oldest (the one most likely just woken)
                waiting[0 if arg < 3 else -1].cancel()
        elif op == "cancel_get":
            waiting = [t for _, t in run.gets if not t.done()]
            if waiting:
                waiting[0 if arg < 3 else -1].cancel()
        elif op == "close":
            buf.close()
        elif op == "fail":
            if not buf.closed:
                run.error = Boom("failed")
            buf.fail(Boom("ignored") if run.error is None else run.error)
        collect()
        assert buf.high_water >= buf.depth
        if after < 0:
            await settle()
        for _ in range(after):
            await asyncio.sleep(0)
            collect()
    await settle()
    # End the stream and drain: every side must finish, nothing may be left behind.
    buf.close()
    await settle()
    assert all(t.done() for t in run.puts.values())
    assert not run.gets
    while True:
        try:
            batch = await buf.get_batch(3)
        except Boom as exc:
            assert exc is run.error
            break
        if not batch:
            break
        run.taken.extend(batch)
    return run


# Two schedules random search finds only now and then, pinned so they run every time: a
# waiter is woken and then cancelled before it runs; its wake-up must pass to the next one.
WOKEN_CONSUMER_CANCELLED = [
    (("get", 1), 0),
    (("get", 1), -1),
    (("put", 1), 1),
    (("cancel_get", 1), -1),
]
WOKEN_PRODUCER_CANCELLED = [
    (("put", 1), -1),
    (("put", 2), -1),
    (("get", 1), 1),
    (("cancel_put", 1), -1),
]


@example(script=WOKEN_CONSUMER_CANCELLED, maxsize=4)
@example(script=WOKEN_PRODUCER_CANCELLED, maxsize=1)
@settings(
    max_examples=int(os.environ.get("BUF_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(script=ops, maxsize=st.integers(0, 4))
def test_random_interleavings_keep_the_buffer_lossless_ordered_and_live(
    script: list[tuple[tuple[str, int], int]], maxsize: int
) -> None:
    run = asyncio.run(drive(script, maxsize))
    # No loss, no duplicate, no reordering: what came out is exactly what went in, in order.
    assert run.taken == run.appended
    # Every put that returned normally appended its item; every other put appended nothing.
    succeeded = []
    for item, task in run.puts.items():
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is None:
            succeeded.append(item)
        else:
            assert isinstance(exc, BufferClosed)
    assert sorted(run.appended) == sorted(succeeded)
    assert run.buf.depth == 0 and run.buf.buffered_bytes == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    batch=st.integers(1, 5),
    items=st.integers(1, 60),
)
def test_one_producer_one_consumer_with_live_resizes_deliver_everything_in_order(
    sizes: list[int], batch: int, items: int
) -> None:
    async def main() -> tuple[list[int], int]:
        buf: TokenBuffer[int] = TokenBuffer(sizes[0])

        async def produce() -> None:
            for i in range(items):
                await buf.put(i)
            buf.close()

        out: list[int] = []

        async def consume() -> None:
            while chunk := await buf.get_batch(batch):
                out.extend(chunk)

        async def tune() -> None:
            for size in sizes[1:]:
                await asyncio.sleep(0)
                buf.resize(size)

        await asyncio.wait_for(asyncio.gather(produce(), consume(), tune()), timeout=10)
        return out, buf.high_water

    out, high_water = asyncio.run(main())
    assert out == list(range(items))
    bounded = [s for s in sizes if s]
    if len(bounded) == len(sizes):
        assert high_water <= max(bounded)
