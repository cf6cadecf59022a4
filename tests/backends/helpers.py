"""Helpers for the backend tests: the test key, and running prompts on a backend in a real
Engine (the fakes every folder shares: tests/fakes.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.engine.backends.base import Backend
from sluice.engine.backends.registry import close_backends
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.snapshot import SessionDetail
from tests.fakes import RecordingConsumer

TEST_KEY = "fake-test-key-5f1c0ffee-DO-NOT-SHOW"


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
