"""Cancelling mid-stream (the UI's cancel, Ctrl+C, shutdown) closes every connection."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sluice.engine.backends.base import Backend
from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.backends.ollama import OllamaBackend
from sluice.engine.backends.registry import close_backends
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, LoopbackServer, OllamaServer
from tests.fakes import RecordingConsumer, other_tasks, wait_until


def _claude(server: LoopbackServer) -> Backend:
    return ClaudeBackend(
        api_key=TEST_KEY, model="claude-test-1", max_tokens=8, base_url=server.url, timeout_s=5
    )


def _ollama(server: LoopbackServer) -> Backend:
    return OllamaBackend(host=server.url, model="llama-test", timeout_s=5)


@pytest.mark.parametrize(
    ("server_type", "make_backend"),
    [(AnthropicServer, _claude), (OllamaServer, _ollama)],
    ids=["claude", "ollama"],
)
async def test_cancel_and_shutdown_close_every_stream(
    server_type: type[LoopbackServer], make_backend: Callable[[LoopbackServer], Backend]
) -> None:
    with server_type(chunks=10_000, pace=0.002) as server:
        backend = make_backend(server)
        consumer = RecordingConsumer()
        try:
            async with Engine(
                Config(), consumer=consumer, backends={backend.name: backend}
            ) as engine:
                one = engine.add_session("one", backend.name)
                two = engine.add_session("two", backend.name)
                await wait_until(lambda: one.tokens_out >= 3 and two.tokens_out >= 3)
                assert server.open_connections >= 1
                assert engine.cancel(one.id)
                await wait_until(lambda: one.finished)
                # The cancelled session closed its own response: only `two` is connected.
                await wait_until(lambda: server.open_connections == 1)
            # leaving the block shut the engine down with `two` still streaming
        finally:
            await close_backends([backend])
        assert (one.state, two.state) == ("cancelled", "cancelled")
        assert one.error is None and two.error is None
        assert other_tasks() == set()
        await wait_until(lambda: server.open_connections == 0)
        processed = consumer.indexes(two.id)
        assert processed == list(range(len(processed)))  # in order, none twice
