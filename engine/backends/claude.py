"""The Claude backend: `anthropic.AsyncAnthropic` and the raw event stream of
`messages.create(..., stream=True)`.

Why the raw stream and not the SDK's `messages.stream()` helper: the helper accumulates a
snapshot of the whole answer (`text += delta`), so its CPU grows with the square of the
number of deltas and it keeps a second copy of every response outside the bounded buffer; it
also parses tool-input JSON fragments and fails a stream whose text was complete when one does
not parse. Here each event costs the same, only the session's buffer holds text, and events
are dispatched on `event.type`: a type this code does not know (Anthropic may add some) is
skipped, as are deltas that are not text (tool input, thinking), which are never parsed.

Retry policy, stated once: the SDK retries 408/409/429/5xx/529 and connection errors up to
`[claude] retries` times, honouring `retry-after-ms` / `retry-after`, and only before the
response starts. Every HTTP attempt is counted on the session (`attempts`) by a client
middleware, so retries are visible while they happen. Once the response started nothing is
retried: an in-band `event: error`, no content for `timeout_s` (pings do not count), a dropped
connection, an event that does not parse, or a body that ends without `message_stop` fails
the session with a one-line reason, so a consumer never gets the same text twice.
"""

from __future__ import annotations

import contextvars
import math
import sys
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anthropic
import httpx2
from anthropic import AsyncStream
from anthropic.types import RawMessageStreamEvent

from sluice.engine.backends.base import BackendError, StreamInfo, StreamTruncated, describe_cause
from sluice.engine.backends.idle import ContentIdle, IdleClock
from sluice.engine.backends.remote import RemoteBackend, tries
from sluice.engine.chunk import Chunk

__all__ = ["ClaudeBackend", "retry_after"]

# The StreamInfo of the stream whose request is being sent, read by the attempt counter.
# The SDK runs its retry loop (and so its middleware) in the task that opens the stream.
_OPENING: contextvars.ContextVar[StreamInfo | None] = contextvars.ContextVar(
    "sluice_claude_opening", default=None
)

# Events that carry the message forward: each restarts the content-idle clock. `ping` never
# reaches us (the SDK drops it) and unknown types do not count.
_PROGRESS = frozenset(
    (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    )
)


THROTTLED = (429, 529)  # what auto-tune's AIMD backs off on (with `overloaded`, `timeout`)


async def _count_attempt(request: Any, call_next: Any) -> Any:
    """Client middleware: the SDK calls it once per HTTP attempt, retries included. Each
    attempt is counted, and reported (sent, throttled with its retry-after, timed out)."""
    info = _OPENING.get()
    if info is None:
        return await call_next(request)
    info.attempts = request.retries_taken + 1
    info.report("sent")
    try:
        response = await call_next(request)
    except anthropic.APITimeoutError:
        info.report("timeout")
        raise
    if response.status_code in THROTTLED:
        info.report(str(response.status_code), retry_after(response.headers))
    return response


def retry_after(headers: Any) -> float | None:
    """The wait a throttled response asks for, in seconds: `retry-after-ms`, else
    `retry-after` in seconds (an HTTP date is not read); None when absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        text = headers.get(name)
        if text:
            try:
                seconds = float(text) * scale
            except ValueError:
                continue
            if seconds >= 0 and math.isfinite(seconds):
                return seconds
    return None


class ClaudeBackend(RemoteBackend[anthropic.AsyncAnthropic]):
    """Streams Claude's answers; one client (one connection pool) shared by every session."""

    endpoint_attr: ClassVar[str] = "base_url"
    unit: ClassVar[str] = "event"
    timeout_errors: ClassVar[tuple[type[BaseException], ...]] = (httpx2.TimeoutException,)
    transport_errors: ClassVar[tuple[type[BaseException], ...]] = (httpx2.TransportError,)

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
        self._secret = api_key
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            max_retries=retries,
            middleware=[_count_attempt],
            open_telemetry=False,
        )
        self.base_url = str(self._client.base_url).rstrip("/")

    def _in_band(self, exc: BaseException) -> str | None:
        """An `event: error` in the stream reaches us as the SDK's APIStatusError."""
        return _status_text(exc) if isinstance(exc, anthropic.APIStatusError) else None

    async def _open(self, prompt: str, info: StreamInfo) -> AsyncStream[RawMessageStreamEvent]:
        """Send the request (the SDK retries before the response starts); the event stream."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }
        if self.system:
            params["system"] = self.system
        token = _OPENING.set(info)
        try:
            return await self._client.messages.create(**params)
        except anthropic.APIStatusError as exc:
            raise self._error(
                f"HTTP {exc.status_code} {_status_text(exc)} after {tries(info.attempts)}"
            ) from exc
        except anthropic.APITimeoutError as exc:
            raise self._error(
                f"no response within {self.timeout_s:g}s from {self.base_url} after "
                f"{tries(info.attempts)}"
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise self._error(
                f"cannot reach {self.base_url} after {tries(info.attempts)}: {describe_cause(exc)}"
            ) from exc
        finally:
            _OPENING.reset(token)

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the text deltas of Claude's answer to `prompt`, filling `info`."""
        events = await self._open(prompt, info)
        clock = IdleClock(self.timeout_s)
        count = 0
        stopped = False
        message_id = ""
        try:
            while True:
                try:
                    event = await clock.read(events)
                except StopAsyncIteration:
                    break
                if event.type not in _PROGRESS or stopped:
                    continue  # an event type we do not know, or anything after message_stop
                clock.content()
                # Compared on `event.type` itself so that mypy narrows the event union.
                if event.type == "content_block_delta":
                    delta = event.delta
                    if delta is not None and delta.type == "text_delta" and delta.text:
                        meta = {
                            "type": "content_block_delta",
                            "index": event.index,
                            "delta_type": "text_delta",
                            "message_id": message_id,
                            "model": info.model,
                        }
                        # The values are shared by the whole stream: the dict is all a chunk
                        # adds (and walking it for every delta would cost more than the rest).
                        yield Chunk(delta.text, count, meta, meta_bytes=sys.getsizeof(meta))
                        count += 1
                elif event.type == "message_start":
                    message = event.message
                    if message is not None:  # the SDK does not validate: nothing is sure
                        message_id = message.id or ""
                        info.model = message.model
                        _read_usage(info, message.usage)
                elif event.type == "message_delta":
                    if event.delta is not None:
                        info.stop_reason = event.delta.stop_reason or info.stop_reason
                    _read_usage(info, event.usage)
                elif event.type == "message_stop":
                    stopped = True
        except Exception as exc:
            if stopped:
                return  # the answer was whole; only reading on to the end of the body failed
            _report_midstream(info, exc)
            error = self._midstream(exc, count)
            if error is None:
                raise
            raise error from exc
        finally:
            clock.close()
            await events.close()
        if not stopped:
            raise self._error(
                f"stream ended after {count} chunks without message_stop (truncated)",
                StreamTruncated,
            )


def _report_midstream(info: StreamInfo, exc: BaseException) -> None:
    """An `overloaded_error` event or a content timeout inside a stream, for auto-tune."""
    if isinstance(exc, anthropic.APIStatusError) and "overloaded" in _status_text(exc):
        info.report("overloaded")
    elif isinstance(exc, (ContentIdle, httpx2.TimeoutException)):
        info.report("timeout")


def _read_usage(info: StreamInfo, usage: Any) -> None:
    """Token counts from `message_start` or `message_delta` usage, when present (either may
    lack it, or lack a count)."""
    if usage is None:
        return
    if usage.input_tokens is not None:
        info.input_tokens = usage.input_tokens
    if usage.output_tokens is not None:
        info.output_tokens = usage.output_tokens


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
