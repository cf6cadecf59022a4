"""A slow reader's back-pressure reaches the server: its socket writes block while the
session's buffer is full, and nothing is lost or repeated once the reader catches up."""

from __future__ import annotations

import asyncio
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
from tests.fakes import RecordingConsumer, other_tasks

TOTAL = 1500  # chunks of ~1 KiB: far more than the socket buffers on both sides hold
MAXSIZE = 4


async def wait_stuck(server: LoopbackServer, prompt: str) -> bool:
    """Wait until the server sits in a blocked write and has sent nothing new for a while."""
    last = -1
    for _ in range(200):
        now = server.written[prompt]
        if server.blocked_now > 0 and now == last:
            return True
        last = now
        await asyncio.sleep(0.05)
    return False


def _claude(server: LoopbackServer) -> Backend:
    return ClaudeBackend(
        api_key=TEST_KEY, model="claude-test-1", max_tokens=8, base_url=server.url, timeout_s=30
    )


def _ollama(server: LoopbackServer) -> Backend:
    return OllamaBackend(host=server.url, model="llama-test", timeout_s=30)


@pytest.mark.parametrize(
    ("server_type", "make_backend"),
    [(AnthropicServer, _claude), (OllamaServer, _ollama)],
    ids=["claude", "ollama"],
)
async def test_full_buffer_blocks_the_servers_writes(
    server_type: type[LoopbackServer], make_backend: Callable[[LoopbackServer], Backend]
) -> None:
    with server_type(chunks=TOTAL, pad=1000) as server:
        backend = make_backend(server)
        consumer = RecordingConsumer()
        consumer.gate = asyncio.Event()  # the reader is stuck in its first call
        config = Config().with_values({"queue.maxsize": MAXSIZE, "queue.batch_max": 1})
        try:
            async with Engine(
                config, consumer=consumer, backends={backend.name: backend}
            ) as engine:
                session = engine.add_session("slow", backend.name)
                # The producer fills the buffer, then waits; nothing reads the socket, so
                # once the kernel buffers on both sides are full the server's writes block.
                assert await wait_stuck(server, "slow")
                written = server.written["slow"]
                assert written < TOTAL
                # The buffer, the batch the consumer holds, and the chunk waiting in put.
                assert session.tokens_in == MAXSIZE + 2
                await asyncio.sleep(0.2)
                assert server.written["slow"] == written  # still stuck: nothing was read
                assert server.blocked_now > 0
                assert session.buffer.stall_seconds > 0
                consumer.gate.set()
                await engine.wait_idle()
                snap = session.snapshot()
        finally:
            await close_backends([backend])
        assert snap.state == "done", snap.error
        assert server.write_blocked > 0
        assert server.written["slow"] == TOTAL
        assert consumer.indexes(session.id) == list(range(TOTAL))
        assert consumer.text(session.id) == server.text("slow")
        assert snap.high_water == MAXSIZE
        assert other_tasks() == set()
