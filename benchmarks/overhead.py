"""Engine overhead: chunks per second through the engine against a plain asyncio.Queue(16).

All variants move the same pre-built chunks (demo-shaped: text plus event metadata) from a
producer task to a consumer task in the same process, in interleaved rounds, so machine load
hits them alike; the ratios are medians of per-round ratios. Variants:

- `queue`: `asyncio.Queue(16)`, put/get, the reference;
- `buffer` / `buffer_batched`: a bare `TokenBuffer(16)`, `get_batch(1)` / `get_batch(16)`;
- `session` / `session_batched`: a real `Session` through the `Engine` (metrics on: ITL,
  queue_wait, token_age and consumer_call histograms, the text tail, the byte count) with
  the null consumer, batch_max 1 / 16. This is the engine's cost per chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from sluice.bench.measure import median
from sluice.engine.backends.base import StreamInfo
from sluice.engine.buffer import TokenBuffer
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine

__all__ = ["VARIANTS", "OverheadResult", "demo_chunks", "run_overhead"]

VARIANTS = ("queue", "buffer", "buffer_batched", "session", "session_batched")


@dataclass(frozen=True, slots=True)
class OverheadResult:
    """Median chunks/s per variant and the median per-round ratio to `queue`."""

    chunks: int
    rounds: int
    rate: dict[str, float]
    ratio: dict[str, float]

    def us_per_chunk(self, variant: str) -> float:
        """Microseconds per chunk of one variant."""
        return 1e6 / self.rate[variant]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OverheadResult:
        """The inverse of `to_dict`."""
        return cls(**data)


def demo_chunks(count: int) -> list[Chunk]:
    """`count` chunks shaped like the demo model's (same text length and metadata)."""
    out = []
    for index in range(count):
        meta = {
            "type": "content_block_delta",
            "index": 0,
            "delta_type": "text_delta",
            "message_id": "msg_demo_0123456789ab",
            "model": "sluice-demo",
        }
        out.append(Chunk(" token", index, meta, generated_at=0.0))
    return out


class ListBackend:
    """A backend that streams pre-built chunks as fast as they are read."""

    name = "bench"

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield every chunk, never waiting."""
        info.attempts = 1
        for chunk in self.chunks:
            yield chunk


async def _queue(chunks: list[Chunk]) -> float:
    queue: asyncio.Queue[Chunk | None] = asyncio.Queue(16)

    async def produce() -> None:
        for chunk in chunks:
            await queue.put(chunk)
        await queue.put(None)

    async def consume() -> None:
        while await queue.get() is not None:
            pass

    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return time.perf_counter() - started


async def _buffer(chunks: list[Chunk], batch: int) -> float:
    buffer: TokenBuffer[Chunk] = TokenBuffer(16)

    async def produce() -> None:
        for chunk in chunks:
            await buffer.put(chunk)
        buffer.close()

    async def consume() -> None:
        while await buffer.get_batch(batch):
            pass

    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return time.perf_counter() - started


async def _session(engine: Engine, backend: ListBackend, batch: int) -> float:
    engine.set_knob("queue.batch_max", batch)
    started = time.perf_counter()
    session = engine.add_session("overhead", backend)
    await engine.wait_idle()
    elapsed = time.perf_counter() - started
    if session.state != "done" or session.tokens_out != len(backend.chunks):
        raise RuntimeError(f"overhead session ended {session.state}: {session.error}")
    return elapsed


async def run_overhead(chunks: int = 100_000, rounds: int = 5) -> OverheadResult:
    """Time every variant `rounds` times, interleaved, on `chunks` chunks each."""
    items = demo_chunks(chunks)
    backend = ListBackend(items)
    config = Config().with_values(
        {"queue.maxsize": 16, "queue.batch_max": 1, "consumer.kind": "null"}
    )
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    async with Engine(config, history=0) as engine:
        runs: dict[str, Callable[[], Awaitable[float]]] = {
            "queue": lambda: _queue(items),
            "buffer": lambda: _buffer(items, 1),
            "buffer_batched": lambda: _buffer(items, 16),
            "session": lambda: _session(engine, backend, 1),
            "session_batched": lambda: _session(engine, backend, 16),
        }
        for round_number in range(rounds):
            order = VARIANTS if round_number % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                times[variant].append(await runs[variant]())
    rate = {v: chunks / median(t) for v, t in times.items()}
    ratio = {
        v: median([q / t for q, t in zip(times["queue"], times[v], strict=True)]) for v in VARIANTS
    }
    return OverheadResult(chunks=chunks, rounds=rounds, rate=rate, ratio=ratio)
