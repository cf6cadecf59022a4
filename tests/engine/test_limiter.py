"""AdjustableLimiter's contract: FIFO, live resize with reserved permits, no preemption on
shrink, cancellation that passes a granted permit on, no over-grant after shrink-then-grow."""

from __future__ import annotations

import asyncio

import pytest

from sluice.engine.limiter import AdjustableLimiter, LimiterStats


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Holder:
    """A task that takes a permit, records its turn, and holds it until told to leave."""

    def __init__(self, limiter: AdjustableLimiter, name: str, admitted: list[str]) -> None:
        self.leave = asyncio.Event()
        self.inside = False
        self._limiter = limiter
        self._name = name
        self._admitted = admitted
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async with self._limiter:
            self.inside = True
            self._admitted.append(self._name)
            try:
                await self.leave.wait()
            finally:
                self.inside = False


async def test_admits_up_to_the_limit_then_queues_in_fifo_order() -> None:
    lim = AdjustableLimiter(2)
    admitted: list[str] = []
    holders = [Holder(lim, f"h{i}", admitted) for i in range(5)]
    await settle()
    assert admitted == ["h0", "h1"]
    assert (lim.limit, lim.in_use, lim.waiting) == (2, 2, 3)
    assert lim.stats() == LimiterStats(limit=2, in_use=2, waiting=3, granted_total=2)
    holders[1].leave.set()
    await settle()
    assert admitted == ["h0", "h1", "h2"]
    holders[0].leave.set()
    holders[2].leave.set()
    await settle()
    assert admitted == ["h0", "h1", "h2", "h3", "h4"]
    for h in holders:
        h.leave.set()
    await settle()
    assert (lim.in_use, lim.waiting) == (0, 0)
    assert lim.stats().granted_total == 5


async def test_growing_wakes_waiters_in_order_with_the_permit_reserved() -> None:
    lim = AdjustableLimiter(1)
    admitted: list[str] = []
    first = Holder(lim, "first", admitted)
    await settle()
    waiters = [Holder(lim, f"w{i}", admitted) for i in range(3)]
    await settle()
    lim.resize(3)
    # The permits are counted before the woken waiters even run ...
    assert lim.in_use == 3
    assert lim.locked()
    # ... so a newcomer arriving now cannot take one.
    newcomer = Holder(lim, "newcomer", admitted)
    await settle()
    assert admitted == ["first", "w0", "w1"]
    assert not newcomer.inside and lim.waiting == 2
    first.leave.set()
    await settle()
    assert admitted == ["first", "w0", "w1", "w2"]
    for h in [first, newcomer, *waiters]:
        h.leave.set()
    await settle()
    assert admitted[-1] == "newcomer" and lim.in_use == 0


async def test_a_newcomer_cannot_overtake_a_queued_waiter_after_a_release() -> None:
    lim = AdjustableLimiter(1)
    admitted: list[str] = []
    await lim.acquire()  # the test holds the only permit
    waiter = Holder(lim, "waiter", admitted)
    await settle()
    lim.release()
    # The waiter owns the permit but has not run yet; a newcomer must queue behind it.
    assert lim.in_use == 1 and not waiter.inside
    newcomer = Holder(lim, "newcomer", admitted)
    await settle()
    assert admitted == ["waiter"] and not newcomer.inside
    waiter.leave.set()
    await settle()
    assert admitted == ["waiter", "newcomer"]
    newcomer.leave.set()
    await settle()
    assert lim.in_use == 0


async def test_shrinking_never_preempts_a_holder() -> None:
    lim = AdjustableLimiter(3)
    admitted: list[str] = []
    holders = [Holder(lim, f"h{i}", admitted) for i in range(3)]
    await settle()
    lim.resize(1)
    await settle()
    assert all(h.inside for h in holders)
    assert lim.in_use == 3 and lim.limit == 1
    late = Holder(lim, "late", admitted)
    holders[0].leave.set()
    holders[1].leave.set()
    await settle()
    assert not late.inside  # in_use fell to 1, not below the new limit 1
    holders[2].leave.set()
    await settle()
    assert late.inside
    late.leave.set()
    await settle()


async def test_no_over_grant_after_shrink_then_grow() -> None:
    lim = AdjustableLimiter(3)
    admitted: list[str] = []
    holders = [Holder(lim, f"h{i}", admitted) for i in range(3)]
    await settle()
    waiters = [Holder(lim, f"w{i}", admitted) for i in range(3)]
    await settle()
    lim.resize(1)  # three holders, limit one: "debt" of two
    lim.resize(2)  # still two over the new limit: nobody may be admitted
    await settle()
    assert lim.in_use == 3 and not any(w.inside for w in waiters)
    holders[0].leave.set()
    await settle()
    assert lim.in_use == 2 and not any(w.inside for w in waiters)
    holders[1].leave.set()
    await settle()
    assert [w.inside for w in waiters] == [True, False, False]
    assert lim.in_use == 2
    lim.resize(4)
    await settle()
    assert all(w.inside for w in waiters) and lim.in_use == 4
    for h in holders + waiters:
        h.leave.set()
    await settle()
    assert lim.in_use == 0


async def test_waiter_cancelled_after_its_grant_passes_the_permit_on() -> None:
    lim = AdjustableLimiter(1)
    admitted: list[str] = []
    await lim.acquire()  # the test itself holds the only permit
    granted = Holder(lim, "granted", admitted)
    nxt = Holder(lim, "next", admitted)
    await settle()
    lim.release()  # `granted` now owns the permit but has not run yet ...
    assert lim.in_use == 1
    granted.task.cancel()  # ... and is cancelled before it can
    await settle()
    assert granted.task.cancelled() and not granted.inside
    assert admitted == ["next"]
    assert lim.in_use == 1
    nxt.leave.set()
    await settle()
    assert lim.in_use == 0 and lim.waiting == 0


async def test_cancelled_waiter_leaves_the_queue_without_taking_a_permit() -> None:
    lim = AdjustableLimiter(1)
    admitted: list[str] = []
    holder = Holder(lim, "holder", admitted)
    await settle()
    doomed = Holder(lim, "doomed", admitted)
    after = Holder(lim, "after", admitted)
    await settle()
    doomed.task.cancel()
    await settle()
    assert lim.waiting == 1 and lim.in_use == 1
    holder.leave.set()
    await settle()
    assert admitted == ["holder", "after"]
    after.leave.set()
    await settle()
    assert lim.in_use == 0


async def test_a_holder_that_raises_or_is_cancelled_gives_its_permit_back() -> None:
    lim = AdjustableLimiter(1)
    with pytest.raises(RuntimeError):
        async with lim:
            raise RuntimeError("inside")
    assert lim.in_use == 0
    admitted: list[str] = []
    holder = Holder(lim, "holder", admitted)
    await settle()
    holder.task.cancel()
    await settle()
    assert lim.in_use == 0


async def test_release_without_acquire_is_an_error() -> None:
    lim = AdjustableLimiter(1)
    with pytest.raises(RuntimeError):
        lim.release()


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", True, None])
async def test_bad_limits_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        AdjustableLimiter(bad)  # type: ignore[arg-type]
    lim = AdjustableLimiter(2)
    with pytest.raises(ValueError, match="limit"):
        lim.resize(bad)  # type: ignore[arg-type]
    assert lim.limit == 2


# -- a release must match an acquire ----------------------------------------------------------


async def test_a_second_release_for_one_acquire_raises_and_lets_no_extra_holder_in() -> None:
    lim = AdjustableLimiter(1)
    admitted: list[str] = []
    await lim.acquire()  # the test holds the only permit
    waiter = Holder(lim, "waiter", admitted)
    await settle()
    lim.release()  # the permit passes to the waiter (reserved, in_use stays 1)
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        lim.release()  # the same holder again: refused, nothing changes
    assert lim.in_use == 1
    newcomer = Holder(lim, "newcomer", admitted)
    await settle()
    assert admitted == ["waiter"] and not newcomer.inside  # never two holders at limit 1
    waiter.leave.set()
    await settle()
    assert admitted == ["waiter", "newcomer"] and lim.in_use == 1
    newcomer.leave.set()
    await settle()
    assert lim.in_use == 0


async def test_a_release_from_a_task_that_holds_nothing_raises() -> None:
    lim = AdjustableLimiter(2)
    admitted: list[str] = []
    holder = Holder(lim, "holder", admitted)
    await settle()
    with pytest.raises(RuntimeError):
        lim.release()  # this task never acquired; the holder's permit stays its own
    assert lim.in_use == 1
    holder.leave.set()
    await settle()
    assert lim.in_use == 0 and not holder.task.exception()


async def test_a_manual_release_inside_async_with_makes_the_exit_raise() -> None:
    lim = AdjustableLimiter(1)
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        async with lim:
            lim.release()
    assert lim.in_use == 0


async def test_concurrent_holders_each_release_once_without_error() -> None:
    lim = AdjustableLimiter(3)
    admitted: list[str] = []
    holders = [Holder(lim, f"h{i}", admitted) for i in range(5)]
    await settle()
    assert lim.in_use == 3 and lim.waiting == 2
    for holder in holders:
        holder.leave.set()
    await settle(20)
    assert sorted(admitted) == [f"h{i}" for i in range(5)]
    assert lim.in_use == 0 and all(not h.task.exception() for h in holders)


async def test_one_task_may_hold_several_permits_and_releases_each_once() -> None:
    lim = AdjustableLimiter(3)
    await lim.acquire()
    await lim.acquire()
    lim.release()
    lim.release()
    with pytest.raises(RuntimeError):
        lim.release()
    assert lim.in_use == 0


async def test_permits_on_behalf_of_another_holder_pair_up_by_holder() -> None:
    lim = AdjustableLimiter(1)
    job = object()
    await lim.acquire_on_behalf_of(job)
    with pytest.raises(RuntimeError):
        lim.release()  # the task is not the holder
    waiting = asyncio.get_running_loop().create_task(lim.acquire_on_behalf_of("other"))
    await settle()
    assert not waiting.done()
    lim.release_on_behalf_of(job)
    await settle()
    assert waiting.done() and lim.in_use == 1
    with pytest.raises(RuntimeError):
        lim.release_on_behalf_of(job)
    lim.release_on_behalf_of("other")
    assert lim.in_use == 0
