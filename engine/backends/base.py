"""The backend protocol shared by the demo model, Claude and Ollama.

A backend's `stream(prompt)` is an async generator of `Chunk`s. The session always wraps it in
`contextlib.aclosing`, so a backend's cleanup (closing an HTTP response, say) runs on every
path: normal end, backend error, consumer error, cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from sluice.engine.chunk import Chunk
from sluice.engine.redact import redact

__all__ = [
    "Backend",
    "BackendError",
    "StreamInfo",
    "StreamTruncated",
    "describe_cause",
    "describe_error",
]


class BackendError(Exception):
    """A backend failed in a way worth a one-line reason on the session."""


class StreamTruncated(BackendError):
    """The stream ended without the backend's end-of-message marker."""


def describe_error(exc: BaseException) -> str:
    """One line naming the error's type and message, for tables and JSON (credentials
    inside URLs, a proxy's say, hidden)."""
    text = redact(" ".join(str(exc).split()))
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def describe_cause(exc: BaseException) -> str:
    """`describe_error` of the innermost cause (HTTP clients wrap the real reason, a
    refused connection say, several layers deep)."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return describe_error(inner)


class StreamInfo:
    """What a backend reports about one stream besides its chunks; the session shows it.

    Backends fill in what they know: `attempts` (requests made, retries included), token usage
    from the wire, the model that answered and why it stopped. The agent backend adds what its
    final result says (`cost_usd`, `turns`) and counts the deltas it does not deliver as text
    (`tool_deltas`, `thinking_deltas`); None where a backend does not know or count them.
    They also `report` what auto-tune reads (engine/autotune/): `sent` as each request goes
    out, a throttle (`429`, `529`, `overloaded`) with the server's retry-after in seconds, a
    `timeout`.
    """

    __slots__ = (
        "attempts",
        "cost_usd",
        "input_tokens",
        "listener",
        "model",
        "output_tokens",
        "stop_reason",
        "thinking_deltas",
        "tool_deltas",
        "turns",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.cost_usd: float | None = None
        self.turns: int | None = None
        self.tool_deltas: int | None = None
        self.thinking_deltas: int | None = None
        # Set by the session when someone listens: called with (kind, value).
        self.listener: Callable[[str, float | None], None] | None = None

    def report(self, kind: str, value: float | None = None) -> None:
        """Tell the session's listener, if any, that `kind` happened (see the class doc)."""
        if self.listener is not None:
            self.listener(kind, value)


@runtime_checkable
class Backend(Protocol):
    """Something that streams a model's answer to a prompt.

    `name` is the backend's key (`demo`, `claude`, `ollama`, or a user's own), which picks the
    concurrency limiter the session waits on.
    """

    name: str

    def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the answer's chunks in order, filling `info`; raise on failure; clean up
        when closed."""
        ...
