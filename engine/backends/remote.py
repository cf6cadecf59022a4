"""What the HTTP backends (Claude, Ollama) share: one client for every session, a description
that never holds a secret, and how a stream that had started fails.

Once a stream has started nothing is retried (a consumer would see text twice), so every
failure from then on is one line saying what broke and after how many chunks: the server's
in-band error, no content for `timeout_s` (pings or not), a dropped connection, or a stream
that does not parse (bad JSON, bad UTF-8).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sluice.engine.backends.base import BackendError, describe_cause, describe_error
from sluice.engine.backends.idle import ContentIdle

__all__ = ["NOT_RETRIED", "RemoteBackend", "one_line", "tries"]

NOT_RETRIED = "(not retried: the stream had started)"


class _Client(Protocol):
    async def close(self) -> Any: ...


C = TypeVar("C", bound=_Client)


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def tries(attempts: int) -> str:
    """`1 attempt`, `3 attempts`."""
    n = max(attempts, 1)
    return f"{n} attempt" + ("" if n == 1 else "s")


class RemoteBackend(Generic[C]):
    """A backend that streams from a server through one client (one connection pool).

    Subclasses set the client, `model`, `timeout_s` and the class attributes below, and
    name their in-band error in `_in_band`.
    """

    # The endpoint attribute shown by repr (`base_url`, `host`).
    endpoint_attr: ClassVar[str]
    # What one unit of the wire format is called in errors (`event`, `line`).
    unit: ClassVar[str]
    # The HTTP library's timeout and transport errors (timeouts first: they are transport
    # errors too).
    timeout_errors: ClassVar[tuple[type[BaseException], ...]]
    transport_errors: ClassVar[tuple[type[BaseException], ...]]

    name: str
    model: str
    timeout_s: float
    _client: C
    _secret: str = ""  # scrubbed from error text, whatever a server echoes; never shown

    def __repr__(self) -> str:
        where = getattr(self, self.endpoint_attr)
        return f"{type(self).__name__}(model={self.model!r}, {self.endpoint_attr}={where!r})"

    @property
    def client(self) -> C:
        """The library client (for `sluice check`)."""
        return self._client

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        await self._client.close()

    def _error(self, message: str, kind: type[BackendError] = BackendError) -> BackendError:
        """A one-line error with the secret scrubbed out."""
        text = one_line(message)
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return kind(text)

    def _in_band(self, exc: BaseException) -> str | None:
        """The server's own error message if `exc` is the library's in-band error, else
        None."""
        return None

    def _midstream(self, exc: BaseException, count: int) -> BackendError | None:
        """The one-line error for `exc` raised after `count` chunks, or None when `exc` is
        not a stream failure (a bug, say; it then propagates as it is)."""
        after = f"after {count} chunks"
        server = self._in_band(exc)
        if server is not None:
            return self._error(f"error {self.unit} {after}: {server} {NOT_RETRIED}")
        if isinstance(exc, (ContentIdle, *self.timeout_errors)):
            return self._error(f"no content for {self.timeout_s:g}s {after}")
        if isinstance(exc, self.transport_errors):
            return self._error(f"connection dropped {after}: {describe_cause(exc)} {NOT_RETRIED}")
        if isinstance(exc, ValueError):  # bad JSON, bad UTF-8, a shape the library refused
            return self._error(f"malformed {self.unit} {after}: {describe_error(exc)}")
        return None
