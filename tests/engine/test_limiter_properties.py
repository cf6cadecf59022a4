"""Property test: under any sequence of acquires, releases, resizes and cancellations the
AdjustableLimiter behaves exactly like a simple reference model of a FIFO capacity limiter.

The model grants a permit only while `in_use < limit` and always to the oldest waiter, counts
a permit as taken the moment it is granted (so no newcomer can steal it), and passes on the
permit of a waiter cancelled after its grant. Comparing the real limiter with it after every
operation checks "never more than the limit" (beyond holders kept through a shrink), FIFO
order, no lost permits and no lost wake-ups. Misuse is part of the script too: a second
release for one acquire, and a release by a task that holds nothing, must raise and change
nothing. Each example runs in one `asyncio.run`, the tasks
advancing only when the driver yields, so every example is a deterministic schedule.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.engine.limiter import AdjustableLimiter


@dataclass
class Model:
    """The reference: what a correct limiter must have done so far."""

    limit: int
    in_use: int = 0
    queue: list[int] = field(default_factory=list)  # waiting, oldest first
    granted: list[int] = field(default_factory=list)  # granted, not yet running
    running: set[int] = field(default_factory=set)
    admitted: list[int] = field(default_factory=list)
    pending_releases: int = 0  # cancellations whose release runs on the next loop turn
    doomed: set[int] = field(default_factory=set)  # granted, then cancelled before running

    def grant(self) -> None:
        while self.queue and self.in_use < self.limit:
            self.granted.append(self.queue.pop(0))
            self.in_use += 1

    def acquire(self, task_id: int) -> None:
        if self.in_use < self.limit and not self.queue:
            self.in_use += 1
            self.running.add(task_id)
            self.admitted.append(task_id)
        else:
            self.queue.append(task_id)

    def release(self) -> None:
        self.in_use -= 1
        self.grant()

    def settle(self) -> None:
        for _ in range(self.pending_releases):
            self.release()
        self.pending_releases = 0
        while self.granted:
            task_id = self.granted.pop(0)
            if task_id in self.doomed:
                self.doomed.discard(task_id)
                self.release()  # the cancelled waiter hands its permit on
            else:
                self.running.add(task_id)
                self.admitted.append(task_id)


action = st.tuples(
    st.sampled_from(
        ["acquire", "acquire", "release", "resize", "cancel", "cancel", "settle", "misuse"]
    ),
    st.integers(1, 4),
)


async def drive(script: list[tuple[str, int]], limit: int) -> None:
    loop = asyncio.get_running_loop()
    lim = AdjustableLimiter(limit)
    model = Model(limit)
    running: set[int] = set()
    admitted: list[int] = []
    released_by_driver: set[int] = set()
    tasks: dict[int, asyncio.Task[None]] = {}
    cancelled: set[int] = set()

    async def holder(task_id: int) -> None:
        await lim.acquire()
        running.add(task_id)
        admitted.append(task_id)
        try:
            await asyncio.Event().wait()  # held until the driver releases or cancels it
        finally:
            running.discard(task_id)
            if task_id not in released_by_driver:
                lim.release()

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        model.settle()
        assert admitted == model.admitted, "grants out of FIFO order or to the wrong task"
        assert running == model.running
        assert lim.in_use == model.in_use
        assert lim.waiting == len(model.queue)
        # Nobody waits while a permit is free (no lost wake-up) ...
        assert not model.queue or lim.in_use >= lim.limit
        # ... and permits beyond the limit exist only as holders kept through a shrink.
        assert lim.in_use <= lim.limit or not model.granted

    next_id = 0
    for op, arg in script:
        if op == "acquire":
            await settle()
            tasks[next_id] = loop.create_task(holder(next_id))
            model.acquire(next_id)
            next_id += 1
            await settle()
            continue
        if op == "release":
            live = [t for t in sorted(model.running) if t not in cancelled]
            if not live:
                continue
            task_id = live[arg % len(live)]
            released_by_driver.add(task_id)
            lim.release_on_behalf_of(tasks[task_id])
            model.running.discard(task_id)
            model.release()
            tasks[task_id].cancel()  # let the task end; it must not release again
            cancelled.add(task_id)
        elif op == "resize":
            lim.resize(arg)
            model.limit = arg
            model.grant()
        elif op == "cancel":
            # Even: a task still waiting for its permit (or granted but not yet running);
            # odd: a holder.
            live = [t for t in tasks if t not in cancelled and not tasks[t].done()]
            live = [t for t in live if (t in model.running) == bool(arg % 2)] or live
            if not live:
                continue
            task_id = live[arg // 2 % len(live)]
            tasks[task_id].cancel()
            cancelled.add(task_id)
            if task_id in model.queue:
                model.queue.remove(task_id)
            elif task_id in model.granted:
                model.doomed.add(task_id)
            else:
                model.running.discard(task_id)
                model.pending_releases += 1
        elif op == "settle":
            await settle()
        elif op == "misuse":
            # Odd: release again for a holder the driver already released; even: release
            # from the driver, which holds nothing. Either must raise and change nothing.
            before = (lim.in_use, lim.waiting)
            again = sorted(released_by_driver)
            with pytest.raises(RuntimeError, match="without a matching acquire"):
                if arg % 2 and again:
                    lim.release_on_behalf_of(tasks[again[arg // 2 % len(again)]])
                else:
                    lim.release()
            assert (lim.in_use, lim.waiting) == before
            continue
        # Grants happen synchronously inside release() and resize(): compare at once.
        assert lim.limit == model.limit
        assert lim.in_use == model.in_use, "permits granted beyond the limit or lost"

    # Release everything: every waiter must get its turn, then nothing is held.
    await settle()
    while True:
        live = [t for t in sorted(model.running) if t not in cancelled]
        if not live and not model.queue and not model.granted:
            break
        for task_id in live:
            tasks[task_id].cancel()
            cancelled.add(task_id)
            model.running.discard(task_id)
            model.pending_releases += 1
        await settle()
    await settle()
    assert lim.in_use == 0 and lim.waiting == 0
    assert all(t.done() for t in tasks.values())


# Known bug classes of capacity limiters, pinned so they run every time besides the random
# search: a grow that forgets holders kept through a shrink (over-grant after shrink-then-
# grow), and a waiter cancelled between its grant and its first step.
SHRINK_THEN_GROW = [("acquire", 1), ("acquire", 1), ("acquire", 1), ("resize", 1), ("resize", 2)]
GRANTED_THEN_CANCELLED = [("acquire", 1), ("acquire", 1), ("acquire", 1), ("release", 1),
                          ("cancel", 4), ("settle", 1)]  # fmt: skip
# The double release the issue found: at limit 1, the holder's permit passes to a waiter, and
# a second release for the same acquire must not let a third task in beside it.
DOUBLE_RELEASE = [("acquire", 1), ("acquire", 1), ("release", 1), ("misuse", 1),
                  ("acquire", 1), ("settle", 1)]  # fmt: skip


@example(script=SHRINK_THEN_GROW, limit=2)
@example(script=GRANTED_THEN_CANCELLED, limit=1)
@example(script=DOUBLE_RELEASE, limit=1)
@settings(max_examples=int(os.environ.get("LIMITER_EXAMPLES", "200")), deadline=None)
@given(script=st.lists(action, min_size=10, max_size=40), limit=st.integers(1, 3))
def test_limiter_matches_the_fifo_reference_model(
    script: list[tuple[str, int]], limit: int
) -> None:
    asyncio.run(drive(script, limit))
