"""The Ollama backend: the official `ollama.AsyncClient` streaming `/api/chat`.

Host: `[ollama] host`, else `OLLAMA_HOST`, else http://127.0.0.1:11434. The client always has
a timeout (`[ollama] timeout_s`; the library has none by default). HTTP 503 (the server's
queue is full) is retried with exponential backoff up to `[ollama] retries` times, only before
the first chunk; every attempt is counted on the session. After that any failure (an
`{"error": ...}` line, even as the first line of a 200 response, no content for `timeout_s`, a
dropped connection, a line that does not parse, a stream that ends without its `done` line)
fails the session with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar

import httpx
import ollama

from sluice.engine.backends.base import BackendError, StreamInfo, StreamTruncated, describe_cause
from sluice.engine.backends.idle import ContentIdle, IdleClock
from sluice.engine.backends.remote import RemoteBackend, one_line, tries
from sluice.engine.chunk import Chunk

__all__ = ["DEFAULT_HOST", "OllamaBackend", "resolve_host"]

DEFAULT_HOST = "http://127.0.0.1:11434"
BUSY = 503
IN_BAND = -1  # the library's status code for an `{"error": ...}` line in a 200 response


def resolve_host(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """The Ollama server to use: the config's host, else OLLAMA_HOST, else the default."""
    environ = os.environ if environ is None else environ
    host = configured.strip() or environ.get("OLLAMA_HOST", "").strip() or DEFAULT_HOST
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/")


class OllamaBackend(RemoteBackend[ollama.AsyncClient]):
    """Streams an Ollama model's answers; one client (one connection pool) for all sessions."""

    endpoint_attr: ClassVar[str] = "host"
    unit: ClassVar[str] = "line"
    timeout_errors: ClassVar[tuple[type[BaseException], ...]] = (httpx.TimeoutException,)
    transport_errors: ClassVar[tuple[type[BaseException], ...]] = (httpx.TransportError,)

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

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after busy attempt `attempt` (1-based): doubling, jittered."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return delay * random.uniform(0.75, 1.0)

    def _in_band(self, exc: BaseException) -> str | None:
        """The library raises ResponseError for an `{"error": ...}` line."""
        return one_line(exc.error) if isinstance(exc, ollama.ResponseError) else None

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the text of the model's answer to `prompt`, filling `info`."""
        messages = [{"role": "user", "content": prompt}]
        attempt = 0
        while True:
            attempt += 1
            info.attempts = attempt
            info.report("sent")
            parts: AsyncIterator[Any] = await self._client.chat(
                model=self.model, messages=messages, stream=True
            )
            # The clock covers the first line too: bytes that never finish a line hold no slot.
            clock = IdleClock(self.timeout_s)
            busy = False
            try:
                async with contextlib.aclosing(parts):  # type: ignore[type-var]
                    try:
                        first = await clock.read(parts)
                    except StopAsyncIteration:
                        first = None
                    except ollama.ResponseError as exc:
                        if exc.status_code != BUSY or attempt > self.retries:
                            raise self._open_error(exc, attempt) from exc
                        busy = True
                    except httpx.TimeoutException as exc:
                        raise BackendError(
                            f"no response within {self.timeout_s:g}s from {self.host}"
                        ) from exc
                    except (httpx.TransportError, ConnectionError) as exc:
                        raise BackendError(
                            f"cannot reach Ollama at {self.host}: {describe_cause(exc)}"
                        ) from exc
                    except (ValueError, ContentIdle) as exc:  # not JSON; never a whole line
                        raise self._first_line_error(exc) from exc
                    if not busy:
                        reader = self._read(first, parts, info, clock)
                        async with contextlib.aclosing(reader):
                            async for chunk in reader:
                                yield chunk
                        return
            finally:
                clock.close()
            await self._sleep(self.backoff(attempt))

    def _open_error(self, exc: ollama.ResponseError, attempt: int) -> BackendError:
        if exc.status_code == IN_BAND:  # a 200 whose first line is an error (the model failed)
            return self._first_line_error(exc)
        return BackendError(f"HTTP {exc.status_code}: {one_line(exc.error)} after {tries(attempt)}")

    def _first_line_error(self, exc: Exception) -> BackendError:
        """An error line, an unparsable line or no line at all where the first chunk should
        be, said as the same errors are said later in the stream."""
        error = self._midstream(exc, 0)
        assert error is not None, "in-band errors, ValueError and ContentIdle have a reason"
        return error

    async def _read(
        self, first: Any, parts: AsyncIterator[Any], info: StreamInfo, clock: IdleClock
    ) -> AsyncGenerator[Chunk, None]:
        count = 0
        done = False
        part = first
        try:
            while part is not None:
                if not done:
                    clock.content()
                    if info.model is None:
                        info.model = part.model
                    message = part.message
                    text = message.content if message is not None else None
                    if text:
                        # One model string for the stream: the dict is all a chunk adds.
                        meta = {"model": info.model, "done": False}
                        yield Chunk(text, count, meta, meta_bytes=sys.getsizeof(meta))
                        count += 1
                    if part.done:
                        done = True
                        info.stop_reason = part.done_reason
                        info.input_tokens = part.prompt_eval_count
                        info.output_tokens = part.eval_count
                # Read on to the end (anything after `done` is ignored) so the connection
                # goes back to the pool instead of being closed half read.
                try:
                    part = await clock.read(parts)
                except StopAsyncIteration:
                    part = None
        except Exception as exc:
            if done:
                return  # the answer was whole; only reading on to the end of the body failed
            error = self._midstream(exc, count)
            if error is None:
                raise
            raise error from exc
        if not done:
            raise StreamTruncated(f"stream ended after {count} chunks without a done line")
