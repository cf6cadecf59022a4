"""Background tasks end for sure: `cancel_and_wait` against tasks that swallow a cancel, and
`close_quietly` / `wait_event` never losing the caller's cancel (3.11's `wait_for` does, when
the cancel lands as the awaited thing finishes: a CI run hung on `q` that way)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sluice.engine.cluster.options import viewer_options
from sluice.engine.tasks import cancel_and_wait, close_quietly, wait_event
from sluice.tui.registry_link import RegistryLink


async def _swallows(times: int, ended: list[str]) -> None:
    """Carry on through the first `times` cancels (a library catching CancelledError)."""
    for _ in range(times):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("ended")


async def test_a_task_that_swallows_its_cancel_is_cancelled_again_until_it_ends() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_swallows(3, ended))
    await asyncio.sleep(0)
    assert await cancel_and_wait([task, None], grace=5.0) == []
    assert task.cancelled() and ended == ["ended"]


async def test_one_cancel_and_a_wait_would_hang_on_the_same_task() -> None:
    """The failure `cancel_and_wait` exists for: the old pattern never returns."""
    task = asyncio.create_task(_swallows(1, []))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    assert await cancel_and_wait([task]) == []


async def test_a_task_that_never_ends_is_abandoned_after_the_grace_and_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = asyncio.create_task(_swallows(10**9, []))
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], grace=0.2) == [task]
    assert "still running" in caplog.text
    task.get_coro().close()  # type: ignore[union-attr]  # the test's own cleanup


async def test_finished_tasks_outcomes_are_retrieved_and_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task]) == []
    assert task.done() and not task.cancelled()


async def _cancel_as_it_finishes(
    wrap: Callable[[Awaitable[None]], Awaitable[object]], delay: int
) -> bool:
    """Cancel a task running `wrap(inner)` `delay` loop steps after `inner` finishes;
    True if the cancel reached the task."""
    gate = asyncio.get_running_loop().create_future()

    async def inner() -> None:
        await gate

    task = asyncio.create_task(wrap(inner()))
    for _ in range(3):
        await asyncio.sleep(0)
    gate.set_result(None)
    for _ in range(delay):
        await asyncio.sleep(0)
    if not task.cancel():
        return True  # it had ended before the cancel: nothing lost
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.parametrize("delay", range(4))
async def test_close_quietly_never_loses_the_callers_cancel(delay: int) -> None:
    assert await _cancel_as_it_finishes(lambda aw: close_quietly(aw, 1.0), delay)


@pytest.mark.parametrize("delay", range(4))
async def test_wait_event_never_loses_the_callers_cancel(delay: int) -> None:
    event = asyncio.Event()

    async def waits(aw: Awaitable[None]) -> bool:
        asyncio.ensure_future(aw).add_done_callback(lambda _: event.set())
        return await wait_event(event, 1.0)

    assert await _cancel_as_it_finishes(waits, delay)


async def test_wait_event_says_whether_it_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, None) is True


async def test_close_quietly_bounds_and_ignores_a_failing_or_slow_close() -> None:
    async def fails() -> None:
        raise ConnectionError("gone")

    await close_quietly(fails(), 1.0)
    await close_quietly(asyncio.sleep(3600), 0.05)


async def test_the_registry_link_closes_even_when_its_watch_swallows_a_cancel() -> None:
    """The hang seen in CI: `q` waited forever on the registry watch's task."""
    link = RegistryLink(viewer_options("redis://127.0.0.1:1/0", "prod"))
    ended: list[str] = []

    async def watch() -> None:
        await _swallows(2, ended)

    link.watch.run = watch  # type: ignore[method-assign]
    running = asyncio.create_task(link.run(lambda title, message: None))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(link.aclose(), 10)
    assert ended == ["ended"]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
