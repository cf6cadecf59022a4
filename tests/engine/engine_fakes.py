"""Test doubles for the engine tests: a scripted backend that records how its stream ended, a
recording consumer that can block or fail on demand, and a hand-moved clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

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
    """Keeps every batch; can block on a gate, fail on a given call, or move a fake clock."""

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
        return [c.text for b in self.batches for c in b]

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


def other_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks alive now that were not alive `before`, other than the current one."""
    return {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()}
