"""Chunk: one piece of a model's stream as it travels through a session.

It carries what a real stream event carries (the text plus the event's metadata), so the
memory figures are those of real traffic, and the timestamps the metrics need.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Chunk"]

_CHUNK_OVERHEAD = 0  # filled in below once the class exists


class Chunk:
    """A text delta with its event metadata and timestamps (monotonic seconds).

    `generated_at` is when the model made it, where the backend knows (the demo model does;
    real backends leave it None). `received_at` is stamped by the session's producer.
    """

    __slots__ = ("generated_at", "index", "meta", "nbytes", "received_at", "session_id", "text")

    def __init__(
        self,
        text: str,
        index: int,
        meta: dict[str, Any] | None = None,
        generated_at: float | None = None,
        meta_bytes: int | None = None,
    ) -> None:
        """`meta_bytes`, when given, is what `meta` adds to this chunk alone (a backend whose
        metadata values are shared across a stream passes the dict's own size); otherwise the
        metadata is walked and every value counted."""
        self.text = text
        self.index = index
        self.meta = meta
        self.generated_at = generated_at
        self.received_at = 0.0
        self.session_id = ""
        if meta_bytes is None:
            meta_bytes = _deep_size(meta) if meta else 0
        self.nbytes = _CHUNK_OVERHEAD + sys.getsizeof(text) + meta_bytes

    def __repr__(self) -> str:
        return f"Chunk(index={self.index}, text={self.text!r})"


def _deep_size(value: Any) -> int:
    """Bytes held by a small JSON-like value (dicts, lists, strings, numbers)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        for key, item in value.items():
            size += sys.getsizeof(key) + _deep_size(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            size += _deep_size(item)
    return size


_CHUNK_OVERHEAD = sys.getsizeof(Chunk("", 0)) + sys.getsizeof(0.0) * 2
