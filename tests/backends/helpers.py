"""Test helpers: the test key and a consumer that records every chunk it processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from sluice.engine.backends.base import Backend
from sluice.engine.backends.registry import close_backends
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.snapshot import SessionDetail

TEST_KEY = "fake-test-key-5f1c0ffee-DO-NOT-SHOW"


class RecordingConsumer:
    """Keeps (session, index, text) of every processed chunk; can be paused by a test."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Record the batch (after waiting while paused)."""
        await self.open.wait()
        self.seen.extend((c.session_id, c.index, c.text) for c in batch)

    def text(self, session_id: str) -> str:
        """Everything processed for one session, in order."""
        return "".join(t for s, _, t in self.seen if s == session_id)

    def indexes(self, session_id: str) -> list[int]:
        """Chunk indexes processed for one session, in order."""
        return [i for s, i, _ in self.seen if s == session_id]


async def run_prompts(
    backend: Backend,
    prompts: Sequence[str],
    *,
    consumer: RecordingConsumer | None = None,
    maxsize: int = 4,
    limit: int = 4,
) -> tuple[dict[str, SessionDetail], RecordingConsumer]:
    """Run one session per prompt on `backend` in a real Engine; close the backend after.

    Returns each session's final detail (keyed by prompt) and the consumer's record.
    """
    consumer = consumer or RecordingConsumer()
    config = Config().with_values(
        {"queue.maxsize": maxsize, "queue.batch_max": 1}
        | {f"limits.{name}": limit for name in ("claude", "ollama", "demo")}
    )
    details: dict[str, SessionDetail] = {}
    try:
        async with Engine(config, consumer=consumer, backends={backend.name: backend}) as engine:
            sessions = [engine.add_session(p, backend.name) for p in prompts]
            await engine.wait_idle()
            for prompt, session in zip(prompts, sessions, strict=True):
                details[prompt] = session.detail()
    finally:
        await close_backends([backend])
    return details, consumer


def stray_tasks() -> list[asyncio.Task[object]]:
    """Tasks still alive besides the test's own."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll `predicate` until it holds (True) or `within` seconds pass (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
