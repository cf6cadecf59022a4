"""Loopback servers with a hidden capacity, for the auto-tune benchmark.

`ThrottlingAnthropic` speaks Anthropic's Messages SSE and serves at most `capacity` streams
at once: a request above that gets a 429 `rate_limit_error` with `retry-after-ms`, as the
API does. `QueueingOllama` speaks Ollama's NDJSON `/api/chat` and never refuses: above
`capacity` concurrent requests the rest wait in a FIFO queue, so their time to first token
grows with the queue, as a real Ollama server's does. Both pace their chunks, count what
they served, and run on their own event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.bench.anthropic_sse import answer_pieces
from sluice.bench.threaded_server import ThreadedServer

__all__ = ["LoopbackHTTP", "QueueingOllama", "ThrottlingAnthropic", "answer_length"]


def answer_length(body: dict[str, Any], mean: int) -> int:
    """Chunks in the answer to this request: from half to one and a half times `mean`, set
    by the prompt (a response's length is the prompt's property), so streams do not end in
    lockstep as equal answers would."""
    messages = body.get("messages") or [{}]
    prompt = str(messages[-1].get("content", ""))
    spread = zlib.crc32(prompt.encode()) % (mean + 1)
    return max(1, mean // 2 + spread)


class LoopbackHTTP(ThreadedServer):
    """A tiny HTTP/1.1 server (keep-alive, chunked responses) on 127.0.0.1 in a thread."""

    async def handle(
        self, body: dict[str, Any], send: Callable[[bytes], Awaitable[None]]
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Answer one POST: return (status, headers, body) for a whole response, or stream
        with `send` after `start` and return None. Subclasses override."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = json.loads(await reader.readexactly(length)) if length else {}
                started = False

                async def send(data: bytes) -> None:
                    nonlocal started
                    if not started:
                        started = True
                        writer.write(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                            b"transfer-encoding: chunked\r\n\r\n"
                        )
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()

                whole = await self.handle(body, send)
                if whole is None:
                    writer.write(b"0\r\n\r\n")
                else:
                    status, headers, payload = whole
                    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                    writer.write(
                        f"HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(payload)}\r\n{extra}\r\n".encode()
                        + payload
                    )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.close()


class ThrottlingAnthropic(LoopbackHTTP):
    """Anthropic's Messages API with a hidden capacity: a 429 above `capacity` streams."""

    def __init__(
        self, capacity: int, *, deltas: int = 20, pace: float = 0.02, retry_after_ms: int = 200
    ) -> None:
        super().__init__()
        self.capacity = capacity
        self.deltas = deltas
        self.pace = pace
        self.retry_after_ms = retry_after_ms
        self.active = 0
        self.peak = 0
        # (monotonic time, status) of every request answered, in order.
        self.log: list[tuple[float, int]] = []

    async def handle(
        self, body: dict[str, Any], send: Callable[[bytes], Awaitable[None]]
    ) -> tuple[int, dict[str, str], bytes] | None:
        if self.active >= self.capacity:
            self.log.append((time.monotonic(), 429))
            error = {"type": "error", "error": {"type": "rate_limit_error", "message": "busy"}}
            headers = {"retry-after-ms": str(self.retry_after_ms)}
            return 429, headers, json.dumps(error).encode()
        self.log.append((time.monotonic(), 200))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self._stream(body.get("model", "bench"), answer_length(body, self.deltas), send)
        finally:
            self.active -= 1
        return None

    async def _stream(
        self, model: str, deltas: int, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        head, delta, tail = answer_pieces(model, deltas, " tok")
        await send(head)
        for _ in range(deltas):
            await asyncio.sleep(self.pace)
            await send(delta)
        await send(tail)


class QueueingOllama(LoopbackHTTP):
    """Ollama's /api/chat serving `capacity` requests at once; the rest queue (FIFO), so
    their TTFT grows with the queue. `ttft` is the time to first token of a served request."""

    def __init__(
        self, capacity: int, *, chunks: int = 20, pace: float = 0.02, ttft: float = 0.2
    ) -> None:
        super().__init__()
        self.capacity = capacity
        self.chunks = chunks
        self.pace = pace
        self.ttft = ttft
        self.active = 0
        self.peak_queue = 0
        self.served = 0
        # (monotonic arrival time, seconds it waited for a slot) of every request, in order.
        self.waits: list[tuple[float, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0

    async def handle(
        self, body: dict[str, Any], send: Callable[[bytes], Awaitable[None]]
    ) -> tuple[int, dict[str, str], bytes] | None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        model = body.get("model", "bench")
        self._waiting += 1
        self.peak_queue = max(self.peak_queue, self._waiting)
        arrived = time.monotonic()
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self.waits.append((arrived, time.monotonic() - arrived))
        self.active += 1
        try:
            await asyncio.sleep(self.ttft)
            chunks = answer_length(body, self.chunks)
            for _ in range(chunks):
                part = {
                    "model": model,
                    "message": {"role": "assistant", "content": " tok"},
                    "done": False,
                }
                await send(json.dumps(part).encode() + b"\n")
                await asyncio.sleep(self.pace)
            final = {
                "model": model,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 1,
                "eval_count": chunks,
            }
            await send(json.dumps(final).encode() + b"\n")
            self.served += 1
        finally:
            self.active -= 1
            self._slots.release()
        return None


@contextlib.contextmanager
def running(server: LoopbackHTTP) -> Any:
    """Start `server`, yield it, stop it."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
