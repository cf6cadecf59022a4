"""The demo model: a simulated LLM server that generates on its own clock.

It behaves like a streaming server behind a socket: after a time to first token it generates
tokens at `rate` per second (with jitter) into a send buffer of `wire_chunks` chunks, the
kernel socket buffer's role. A slow reader fills that buffer and then generation waits, as a
real server's writes would block. Every chunk records when it was generated, so `token_age`
measures the real time from generation to processing. Seeded per prompt: the same config and
prompts give the same lengths, texts and pacing.

The model is computed lazily in the reader's task (no task per stream), so thousands of
sessions cost no more than their reads.
"""

from __future__ import annotations

import array
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sluice.engine.backends.base import StreamInfo
from sluice.engine.chunk import Chunk

__all__ = ["DemoModel"]

_WORDS = [
    "the",
    "back",
    "pressure",
    "keeps",
    "memory",
    "flat",
    "while",
    "a",
    "slow",
    "consumer",
    "works",
    "through",
    "each",
    "token",
    "in",
    "order",
    "and",
    "the",
    "producer",
    "waits",
    "upstream",
    "instead",
    "of",
    "piling",
    "chunks",
    "into",
    "an",
    "unbounded",
    "queue",
    "so",
    "latency",
    "stays",
    "honest",
    "stream",
    "session",
    "buffer",
    "limit",
    "model",
    "server",
    "client",
    "batch",
    "write",
    "database",
    "webhook",
    "render",
    "signal",
    "flow",
    "river",
    "gate",
    "sluice",
    "water",
    "level",
    "channel",
    "steady",
]

MODEL_NAME = "sluice-demo"


class DemoModel:
    """A deterministic stand-in for a streaming LLM server; knobs may change while it runs."""

    name = "demo"

    def __init__(
        self,
        *,
        rate: float = 40.0,
        ttft_ms: float = 300.0,
        tokens: int = 400,
        seed: int = 0,
        jitter: float = 0.3,
        wire_chunks: int = 256,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens/s, got {rate!r}")
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        if wire_chunks < 1:
            raise ValueError(f"wire_chunks must be >= 1, got {wire_chunks!r}")
        self.rate = float(rate)
        self.ttft_ms = float(ttft_ms)
        self.tokens = int(tokens)
        self.seed = seed
        self.jitter = jitter
        self.wire_chunks = wire_chunks
        self._clock = clock
        self._sleep = sleep

    def length_for(self, prompt: str) -> int:
        """How many chunks the answer to `prompt` will have (drawn around `tokens`)."""
        return _length(random.Random(f"{self.seed}:{prompt}"), self.tokens)

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Stream the answer to `prompt`, pacing generation on the model's own clock."""
        rng = random.Random(f"{self.seed}:{prompt}")
        count = _length(rng, self.tokens)
        message_id = f"msg_demo_{rng.getrandbits(48):012x}"
        info.attempts = 1
        info.model = MODEL_NAME
        info.input_tokens = len(prompt.split())
        clock = self._clock
        jitter = self.jitter
        # When each of the last `wire_chunks` chunks was read, as a ring of C doubles (2 KiB
        # for 256 chunks, where a deque of floats would hold 8 KiB per stream).
        slots = self.wire_chunks
        wire = array.array("d", bytes(8 * slots))
        ready = clock() + self.ttft_ms / 1000.0 * rng.uniform(1 - jitter, 1 + jitter)
        for index in range(count):
            if index:
                ready += rng.uniform(1 - jitter, 1 + jitter) / self.rate
            if index >= slots:
                # The send buffer is full: the model could not generate before the reader
                # took the chunk `wire_chunks` places back.
                ready = max(ready, wire[index % slots])
            now = clock()
            if ready > now:
                await self._sleep(ready - now)
            word = _WORDS[rng.randrange(len(_WORDS))]
            meta = {
                "type": "content_block_delta",
                "index": 0,
                "delta_type": "text_delta",
                "message_id": message_id,
                "model": MODEL_NAME,
            }
            # The metadata's values are shared by every chunk of the stream; only the dict
            # itself is this chunk's own.
            chunk = Chunk(
                word if index == 0 else " " + word,
                index,
                meta,
                generated_at=ready,
                meta_bytes=sys.getsizeof(meta),
            )
            wire[index % slots] = clock()
            info.output_tokens = index + 1
            yield chunk
        info.stop_reason = "end_turn"


def _length(rng: random.Random, mean: int) -> int:
    return max(1, round(rng.gauss(mean, mean * 0.25)))
