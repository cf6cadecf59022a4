"""The control API's JSON documents (docs/json.md, "Control API"): the snapshot with its
knobs and node name, the knob entries, and one-line error texts.

The `sessions`, `totals`, `process` and `backends` members are built by
`engine.report.to_json_dict`, the same code as `sluice run --json`, so the two never drift;
`EngineSnapshot.from_dict` rebuilds the snapshot from this document on the other side.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sluice.engine.engine import Engine
from sluice.engine.redact import redact
from sluice.engine.report import session_dict, to_json_dict
from sluice.engine.settings import Setting
from sluice.engine.snapshot import EngineSnapshot, SessionSnapshot

__all__ = [
    "RowCache",
    "encode",
    "knob_entry",
    "knobs_document",
    "node_name",
    "one_line",
    "render_snapshot",
    "snapshot_document",
]

API_VERSION = 1
_LINE_LIMIT = 300


def node_name() -> str:
    """The default node name: the host name and the process id, `host:1234`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def knob_entry(setting: Setting[Any], value: Any) -> dict[str, Any]:
    """One live knob as the API shows it: its value, range, slider span and words."""
    low, high = setting.slider_range
    return {
        "value": value,
        "min": setting.minimum,
        "max": setting.maximum,
        "integer": setting.integer,
        "step": setting.step,
        "slider": [low, high],
        "label": setting.label or setting.key,
        "help": setting.help,
        "allowed": setting.describe(),
    }


def knobs_document(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every live knob of `engine` by dotted config name (`queue.maxsize`, `limits.demo`)."""
    values = engine.knobs
    return {name: knob_entry(s, values[name]) for name, s in engine.knob_settings().items()}


def snapshot_document(
    snapshot: EngineSnapshot,
    knobs: Mapping[str, dict[str, Any]],
    node: str,
    *,
    sessions: bool = True,
) -> dict[str, Any]:
    """`GET /v1/snapshot`: `sluice run --json`'s members plus `knobs`, `node`, `taken_at`.
    `sessions=False` leaves the `sessions` member out (the light event-stream frames)."""
    if not sessions:
        snapshot = replace(snapshot, sessions=())
    doc = to_json_dict(snapshot, api=API_VERSION, node=node, taken_at=snapshot.taken_at)
    doc["knobs"] = dict(knobs)
    if not sessions:
        del doc["sessions"]
    return doc


def render_snapshot(
    snapshot: EngineSnapshot,
    knobs: Mapping[str, dict[str, Any]],
    node: str,
    sessions: bool = True,
    rows: RowCache | None = None,
) -> bytes:
    """`snapshot_document` encoded. It reads only frozen data, so it may run in a worker
    thread: at 1,000 sessions this is tens of milliseconds the engine's loop does not wait.

    The session list is encoded row by row and spliced in: one `json.dumps` of the whole
    list would hold the GIL for its whole length (the C encoder never lets go), stalling the
    engine's loop just the same; between rows the interpreter can switch back to it."""
    doc = snapshot_document(replace(snapshot, sessions=()), knobs, node, sessions=sessions)
    data = encode(doc)
    if not sessions:
        return data
    head = b'{"sessions":['
    if not data.startswith(head + b"]"):  # to_json_dict puts `sessions` first
        return encode(snapshot_document(snapshot, knobs, node))
    encoded = rows.encode(snapshot.sessions) if rows else [_row(s) for s in snapshot.sessions]
    return head + b",".join(encoded) + data[len(head) :]


def _row(session: SessionSnapshot) -> bytes:
    return encode(session_dict(session))


class RowCache:
    """Encoded session rows kept between frames while the session's snapshot is unchanged:
    a finished session's never changes, and a long-running service keeps hundreds of them
    in every frame. Keyed by id; a row is reused only when the snapshot is equal, field by
    field. Dropped with the session. Safe across threads: a race only repeats work."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[SessionSnapshot, bytes]] = {}

    def encode(self, sessions: Sequence[SessionSnapshot]) -> list[bytes]:
        old = self._rows
        kept: dict[str, tuple[SessionSnapshot, bytes]] = {}
        out = []
        for session in sessions:
            cached = old.get(session.id)
            row = cached[1] if cached is not None and cached[0] == session else _row(session)
            if session.finished:
                kept[session.id] = (session, row)
            out.append(row)
        self._rows = kept
        return out


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(document: Any) -> bytes:
    """Compact UTF-8 JSON on one line (as `sluice run --json` writes it)."""
    return _ENCODER.encode(document).encode("utf-8")


def one_line(text: str, limit: int = _LINE_LIMIT) -> str:
    """`text` made safe for a one-line message: credentials in URLs hidden, control
    characters escaped, at most `limit` characters."""
    text = redact(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
