"""Test doubles shared by every test folder, one of each: a hand-moved clock, a scripted
backend that records how its stream ended, a consumer that records what it processed (and can
block, fail or move the clock), waiting for a condition, and the tasks a test left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from sluice.engine.backends.base import StreamInfo
from sluice.engine.chunk import Chunk


class FakeClock:
    """A monotonic clock the test moves by hand, so durations are exact."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class BackendBoom(Exception):
    """The error a scripted backend raises mid-stream."""


class ScriptedBackend:
    """Streams `texts` one chunk each; may fail after `fail_after` chunks, wait on a gate
    before each chunk, and advance a fake clock. Records how each stream was closed."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        name: str = "fake",
        fail_after: int | None = None,
        clock: FakeClock | None = None,
        first_delay: float = 0.0,
        gap: float = 0.0,
        age: float | None = None,
        sleep: float = 0.0,
    ) -> None:
        self.name = name
        self.texts = list(texts)
        self.fail_after = fail_after
        self.clock = clock
        self.first_delay = first_delay
        self.gap = gap
        self.age = age
        self.sleep = sleep
        self.gate: asyncio.Event | None = None
        self.opened = 0
        self.closed = 0
        self.exit: str | None = None  # "end", "error", "cancelled" or "closed early"
        self.yielded = 0

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        self.opened += 1
        info.attempts = 1
        info.model = "scripted"
        try:
            for index, text in enumerate(self.texts):
                if self.fail_after is not None and index == self.fail_after:
                    raise BackendBoom(f"broke after {index} chunks")
                if self.gate is not None:
                    await self.gate.wait()
                await asyncio.sleep(self.sleep)
                if self.clock is not None:
                    self.clock.now += self.first_delay if index == 0 else self.gap
                generated = None
                if self.age is not None and self.clock is not None:
                    generated = self.clock.now - self.age
                self.yielded += 1
                yield Chunk(text, index, {"type": "delta"}, generated_at=generated)
            self.exit = "end"
        except BackendBoom:
            self.exit = "error"
            raise
        except asyncio.CancelledError:
            self.exit = "cancelled"
            raise
        except GeneratorExit:
            self.exit = "closed early"
            raise
        finally:
            self.closed += 1


class RecordingConsumer:
    """Keeps every batch it processed. A test can hold it on a gate (set `gate` to an unset
    Event; each call waits on it), make a given call fail, or move a fake clock per call."""

    def __init__(
        self,
        *,
        fail_on_call: int | None = None,
        clock: FakeClock | None = None,
        cost: float = 0.0,
        sleep: float = 0.0,
    ) -> None:
        self.batches: list[list[Chunk]] = []
        self.fail_on_call = fail_on_call
        self.clock = clock
        self.cost = cost
        self.sleep = sleep
        self.gate: asyncio.Event | None = None
        self.calls = 0

    @property
    def texts(self) -> list[str]:
        """The text of every processed chunk, in order."""
        return [c.text for b in self.batches for c in b]

    @property
    def seen(self) -> list[tuple[str, int, str]]:
        """(session id, index, text) of every processed chunk, in order."""
        return [(c.session_id, c.index, c.text) for b in self.batches for c in b]

    def text(self, session_id: str) -> str:
        """Everything processed for one session, in order."""
        return "".join(t for s, _, t in self.seen if s == session_id)

    def indexes(self, session_id: str) -> list[int]:
        """Chunk indexes processed for one session, in order."""
        return [i for s, i, _ in self.seen if s == session_id]

    async def process(self, batch: Sequence[Chunk]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError(f"consumer broke on call {self.calls}")
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.clock is not None:
            self.clock.now += self.cost
        self.batches.append(list(batch))


async def wait_until(
    condition: Callable[[], bool],
    within: float = 10.0,
    *,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Let the loop run until `condition()` holds; AssertionError after `within` seconds (a
    guard against hangs, not a timing assertion). An app test passes `pause=pilot.pause` so
    the screen catches up between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within:g}s")
        await pause(0.01)


def other_tasks(before: set[asyncio.Task[object]] | None = None) -> set[asyncio.Task[object]]:
    """Tasks still running that were not running `before` (default: any), other than the
    current one: what a test left behind."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and t not in (before or set())}
