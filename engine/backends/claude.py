"""The Claude backend: `anthropic.AsyncAnthropic` and `messages.stream(...)`.

Retry policy, stated once: the SDK retries 408/409/429/5xx/529 and connection errors up to
`[claude] retries` times, honouring `retry-after-ms` / `retry-after`, and only before the
response starts. Every HTTP attempt is counted on the session (`attempts`) by a client
middleware, so retries are visible while they happen. Once the first event arrived nothing is
retried: an in-band `event: error`, a dropped connection, a read timeout, or a body that ends
without `message_stop` fails the session with a one-line reason, so a consumer never gets the
same text twice.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    TextDelta,
)

from sluice.engine.backends.base import BackendError, StreamInfo, StreamTruncated, describe_cause
from sluice.engine.chunk import Chunk

__all__ = ["ClaudeBackend"]

# The StreamInfo of the stream whose request is being sent, read by the attempt counter.
# The SDK runs its retry loop (and so its middleware) in the task that opens the stream.
_OPENING: contextvars.ContextVar[StreamInfo | None] = contextvars.ContextVar(
    "sluice_claude_opening", default=None
)


async def _count_attempt(request: Any, call_next: Any) -> Any:
    """Client middleware: the SDK calls it once per HTTP attempt, retries included."""
    info = _OPENING.get()
    if info is not None:
        info.attempts = request.retries_taken + 1
    return await call_next(request)


class ClaudeBackend:
    """Streams Claude's answers; one client (one connection pool) shared by every session."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        max_tokens: int,
        system: str = "",
        base_url: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
        name: str = "claude",
    ) -> None:
        if not api_key:
            raise BackendError("ANTHROPIC_API_KEY is not set")
        self.name = name
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.timeout_s = timeout_s
        self.retries = retries
        self._secret = api_key  # only to scrub it from error text; never shown
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            max_retries=retries,
            middleware=[_count_attempt],
            open_telemetry=False,
        )
        self.base_url = str(self._client.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"ClaudeBackend(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client (for `sluice check`)."""
        return self._client

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        await self._client.close()

    def _error(self, message: str, kind: type[BackendError] = BackendError) -> BackendError:
        """A one-line error with the key scrubbed out, whatever the server echoed."""
        text = " ".join(message.split())
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return kind(text)

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the text deltas of Claude's answer to `prompt`, filling `info`."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.system:
            params["system"] = self.system
        manager = self._client.messages.stream(**params)
        token = _OPENING.set(info)
        try:
            stream = await manager.__aenter__()
        except anthropic.APIStatusError as exc:
            raise self._error(
                f"HTTP {exc.status_code} {_status_text(exc)} after {_tries(info)}"
            ) from exc
        except anthropic.APITimeoutError as exc:
            raise self._error(
                f"no response within {self.timeout_s:g}s from {self.base_url} after {_tries(info)}"
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise self._error(
                f"cannot reach {self.base_url} after {_tries(info)}: {describe_cause(exc)}"
            ) from exc
        finally:
            _OPENING.reset(token)
        count = 0
        stopped = False
        message_id = ""
        try:
            async for event in stream:
                # isinstance narrows the SDK's event union (its `type` strings do not).
                if isinstance(event, RawContentBlockDeltaEvent):
                    delta = event.delta
                    if isinstance(delta, TextDelta) and delta.text:
                        meta = {
                            "type": event.type,
                            "index": event.index,
                            "delta_type": delta.type,
                            "message_id": message_id,
                            "model": info.model,
                        }
                        yield Chunk(delta.text, count, meta)
                        count += 1
                elif isinstance(event, RawMessageStartEvent):
                    message = event.message
                    message_id = message.id
                    info.model = message.model
                    info.input_tokens = message.usage.input_tokens
                    info.output_tokens = message.usage.output_tokens
                elif isinstance(event, RawMessageDeltaEvent):
                    info.stop_reason = event.delta.stop_reason
                    info.output_tokens = event.usage.output_tokens
                elif event.type == "message_stop":
                    stopped = True
        except anthropic.APIStatusError as exc:
            raise self._error(
                f"error event after {count} chunks: {_status_text(exc)} (not retried: the "
                "stream had started)"
            ) from exc
        except httpx2.TimeoutException as exc:
            raise self._error(
                f"no data for {self.timeout_s:g}s after {count} chunks (read timeout)"
            ) from exc
        except httpx2.TransportError as exc:
            raise self._error(
                f"connection dropped after {count} chunks: {describe_cause(exc)} (not retried: the "
                "stream had started)"
            ) from exc
        finally:
            await stream.close()
        if not stopped:
            raise self._error(
                f"stream ended after {count} chunks without message_stop (truncated)",
                StreamTruncated,
            )


def _tries(info: StreamInfo) -> str:
    n = max(info.attempts, 1)
    return f"{n} attempt" + ("" if n == 1 else "s")


def _status_text(exc: anthropic.APIStatusError) -> str:
    """`overloaded_error: Overloaded` from an API error, whatever shape its body had."""
    kind = getattr(exc, "type", None)
    message = getattr(exc, "api_message", None)
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            kind = kind or error.get("type")
            message = message or error.get("message")
    if kind and message:
        return f"{kind}: {message}"
    return str(message or kind or exc.message)
