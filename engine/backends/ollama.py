"""The Ollama backend: the official `ollama.AsyncClient` streaming `/api/chat`.

Host: `[ollama] host`, else `OLLAMA_HOST`, else http://127.0.0.1:11434. The client always has
a timeout (`[ollama] timeout_s`; the library has none by default). HTTP 503 (the server's
queue is full) is retried with exponential backoff up to `[ollama] retries` times, only before
the first chunk; every attempt is counted on the session. After that any failure (an
`{"error": ...}` line, a dropped connection, a read timeout, a stream that ends without its
`done` line) fails the session with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import ollama

from sluice.engine.backends.base import BackendError, StreamInfo, StreamTruncated, describe_cause
from sluice.engine.chunk import Chunk

__all__ = ["DEFAULT_HOST", "OllamaBackend", "resolve_host"]

DEFAULT_HOST = "http://127.0.0.1:11434"
BUSY = 503


def resolve_host(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """The Ollama server to use: the config's host, else OLLAMA_HOST, else the default."""
    environ = os.environ if environ is None else environ
    host = configured.strip() or environ.get("OLLAMA_HOST", "").strip() or DEFAULT_HOST
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/")


class OllamaBackend:
    """Streams an Ollama model's answers; one client (one connection pool) for all sessions."""

    def __init__(
        self,
        *,
        host: str,
        model: str,
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        name: str = "ollama",
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._client = ollama.AsyncClient(
            host=host, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        )

    def __repr__(self) -> str:
        return f"OllamaBackend(model={self.model!r}, host={self.host!r})"

    @property
    def client(self) -> ollama.AsyncClient:
        """The library client (for `sluice check`)."""
        return self._client

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        await self._client.close()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after busy attempt `attempt` (1-based): doubling, jittered."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return delay * random.uniform(0.75, 1.0)

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the text of the model's answer to `prompt`, filling `info`."""
        messages = [{"role": "user", "content": prompt}]
        attempt = 0
        while True:
            attempt += 1
            info.attempts = attempt
            parts: AsyncIterator[Any] = await self._client.chat(
                model=self.model, messages=messages, stream=True
            )
            async with contextlib.aclosing(parts):  # type: ignore[type-var]
                try:
                    first = await anext(parts, None)
                except ollama.ResponseError as exc:
                    if exc.status_code == BUSY and attempt <= self.retries:
                        first = None
                        busy = True
                    else:
                        raise self._open_error(exc, attempt) from exc
                except httpx.TimeoutException as exc:
                    raise BackendError(
                        f"no response within {self.timeout_s:g}s from {self.host}"
                    ) from exc
                except (httpx.TransportError, ConnectionError) as exc:
                    raise BackendError(
                        f"cannot reach Ollama at {self.host}: {describe_cause(exc)}"
                    ) from exc
                else:
                    busy = False
                if not busy:
                    async with contextlib.aclosing(self._read(first, parts, info)) as reader:
                        async for chunk in reader:
                            yield chunk
                    return
            await self._sleep(self.backoff(attempt))

    def _open_error(self, exc: ollama.ResponseError, attempt: int) -> BackendError:
        tries = f"{attempt} attempt" + ("" if attempt == 1 else "s")
        return BackendError(f"HTTP {exc.status_code}: {_one_line(exc.error)} after {tries}")

    async def _read(
        self, first: Any, parts: AsyncIterator[Any], info: StreamInfo
    ) -> AsyncGenerator[Chunk, None]:
        count = 0
        done = False
        part = first
        try:
            while part is not None:
                if done:  # anything after the done line is ignored
                    part = await anext(parts, None)
                    continue
                if info.model is None:
                    info.model = part.model
                message = part.message
                text = message.content if message is not None else None
                if text:
                    yield Chunk(text, count, {"model": part.model, "done": False})
                    count += 1
                if part.done:
                    done = True
                    info.stop_reason = part.done_reason
                    info.input_tokens = part.prompt_eval_count
                    info.output_tokens = part.eval_count
                # Read on to the end (nothing follows `done`) so the library's line
                # iterator finishes too instead of being left for the garbage collector.
                part = await anext(parts, None)
        except ollama.ResponseError as exc:
            raise BackendError(
                f"error line after {count} chunks: {_one_line(exc.error)} (not retried: the "
                "stream had started)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"no data for {self.timeout_s:g}s after {count} chunks (read timeout)"
            ) from exc
        except httpx.TransportError as exc:
            raise BackendError(
                f"connection dropped after {count} chunks: {describe_cause(exc)} (not retried: the "
                "stream had started)"
            ) from exc
        except ValueError as exc:  # a line that is not JSON
            raise BackendError(
                f"malformed line after {count} chunks: {_one_line(str(exc))}"
            ) from exc
        if not done:
            raise StreamTruncated(f"stream ended after {count} chunks without a done line")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
