"""Formatting snapshots for people (a plain-text table) and machines (one JSON object).

Error texts pass through `redact` on the way out, so credentials inside URLs never show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sluice.engine.redact import redact
from sluice.engine.snapshot import NESTED_KNOB_TABLES, EngineSnapshot, SessionSnapshot

__all__ = [
    "format_bytes",
    "format_seconds",
    "session_dict",
    "summary_json",
    "summary_table",
    "to_json_dict",
]


def format_seconds(value: float | None) -> str:
    """Seconds as a short human figure: 850us, 12.3ms, 4.56s; '-' when unknown."""
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f}us"
    if value < 1.0:
        return f"{value * 1e3:.1f}ms"
    if value < 100:
        return f"{value:.2f}s"
    return f"{value:.0f}s"


def format_bytes(value: int | None) -> str:
    """Bytes with a binary unit: 512B, 12.0KiB, 3.4MiB."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TiB"


def to_json_dict(snapshot: EngineSnapshot, **extra: Any) -> dict[str, Any]:
    """The documented JSON summary: sessions, totals, process, knobs (see docs/json.md)."""
    out: dict[str, Any] = {
        "sessions": [session_dict(s) for s in snapshot.sessions],
        "totals": snapshot.totals.to_dict(),
        "process": snapshot.process.to_dict(),
        "knobs": knobs_json(snapshot.knobs),
        "backends": [b.to_dict() for b in snapshot.backends],
        "cluster": snapshot.cluster.to_dict() if snapshot.cluster is not None else None,
        "autotune": [a.to_dict() for a in snapshot.autotune],
    }
    out.update(extra)
    return out


def knobs_json(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The `knobs` member of the run's JSON (docs/json.md): each knob under its key
    (`queue.maxsize` as `maxsize`); the backend limits gathered in one `limits` object and
    the auto-tune switches in one `autotune` object."""
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in knobs.items():
        table, _, key = name.partition(".")
        if table in NESTED_KNOB_TABLES:
            nested.setdefault(table, {})[key] = value
        else:
            out[key] = value
    out.update(nested)
    return out


def session_dict(s: SessionSnapshot) -> dict[str, Any]:
    """One member of `sessions`: the snapshot's fields, its error redacted."""
    out = s.to_dict()
    if out.get("error"):
        out["error"] = redact(out["error"])
    return out


def summary_json(snapshot: EngineSnapshot, **extra: Any) -> str:
    """`to_json_dict` as one line of JSON."""
    return json.dumps(to_json_dict(snapshot, **extra), separators=(",", ":"))


_COLUMNS = (
    ("session", "<"),
    ("backend", "<"),
    ("state", "<"),
    ("tries", ">"),
    ("in", ">"),
    ("out", ">"),
    ("lost", ">"),
    ("high/max", ">"),
    ("slot_wait", ">"),
    ("ttft", ">"),
    ("qwait p50", ">"),
    ("qwait p99", ">"),
    ("age p99", ">"),
    ("call p50", ">"),
    ("stall", ">"),
    ("error", "<"),
)


def _state(s: SessionSnapshot) -> str:
    """The state, with the stop reason when it says the answer is not whole (a truncated
    answer must not look complete)."""
    return f"{s.state} ({s.stop_reason})" if s.stop_warning else s.state


def _row(s: SessionSnapshot) -> list[str]:
    return [
        s.id,
        s.backend,
        _state(s),
        str(s.attempts),
        str(s.tokens_in),
        str(s.tokens_out),
        str(s.tokens_lost),
        f"{s.high_water}/{s.maxsize or 'inf'}",
        format_seconds(s.slot_wait),
        format_seconds(s.ttft),
        format_seconds(s.queue_wait.p50),
        format_seconds(s.queue_wait.p99),
        format_seconds(s.token_age.p99),
        format_seconds(s.consumer_call.p50),
        f"{s.stall_ratio * 100:.0f}%",
        redact(s.error or ""),
    ]


def _usage_line(sessions: Sequence[SessionSnapshot]) -> str | None:
    """`model usage: in N / out M tokens (K sessions reported); cost $X (agent)`: what the
    backends said the run used, over the sessions that said it (None: none did)."""
    told = [s for s in sessions if s.input_tokens is not None or s.output_tokens is not None]
    costed = [s.cost_usd for s in sessions if s.cost_usd is not None]
    if not told and not costed:
        return None
    used_in = sum(s.input_tokens or 0 for s in told)
    used_out = sum(s.output_tokens or 0 for s in told)
    line = f"model usage: in {used_in} / out {used_out} tokens ({len(told)} sessions reported)"
    if costed:
        line += f"; cost ${sum(costed):.4f} ({len(costed)} agent sessions, as the CLI reckoned it)"
    return line


def summary_table(snapshot: EngineSnapshot, wall_time: float | None = None) -> str:
    """A fixed-width table: one row per session, then a totals row and process figures."""
    t = snapshot.totals
    rows = [_row(s) for s in snapshot.sessions]
    maxsizes = {s.maxsize for s in snapshot.sessions}
    states = ", ".join(f"{n} {state}" for state, n in t.states.items() if n)
    # The total stall ratio weighs each session by its streaming time.
    streaming = sum(s.streaming_time for s in snapshot.sessions)
    stall_ratio = sum(s.stall for s in snapshot.sessions) / streaming if streaming else 0.0
    rows.append(
        [
            f"total ({t.sessions})",
            "",
            states,
            "",
            str(t.tokens_in),
            str(t.tokens_out),
            str(t.tokens_lost),
            f"{t.high_water}/{'/'.join(str(m or 'inf') for m in sorted(maxsizes)) or '-'}",
            format_seconds(t.slot_wait.p50),
            format_seconds(t.ttft.p50),
            format_seconds(t.queue_wait.p50),
            format_seconds(t.queue_wait.p99),
            format_seconds(t.token_age.p99),
            format_seconds(t.consumer_call.p50),
            f"{stall_ratio * 100:.0f}%" if streaming else "",
            "",
        ]
    )
    headers = [name for name, _ in _COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = []
        for (_, align), cell, width in zip(_COLUMNS, cells, widths, strict=True):
            parts.append(cell.ljust(width) if align == "<" else cell.rjust(width))
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows[:-1])
    out.append(line(["-" * w for w in widths]))
    out.append(line(rows[-1]))
    p = snapshot.process
    limit = p.memory_limit or p.machine_memory
    where = "container limit" if p.memory_limit else "machine"
    tail = (
        f"process: peak RSS {format_bytes(p.peak_rss)} of {format_bytes(limit)} ({where}), "
        f"loop lag p99 {format_seconds(p.loop_lag_p99)}; "
        f"session memory (buffers + bookkeeping, not RSS) {format_bytes(t.memory_bytes)}"
    )
    out.append(tail)
    if (usage := _usage_line(snapshot.sessions)) is not None:
        out.append(usage)
    if wall_time is not None:
        out.append(f"wall time {format_seconds(wall_time)}")
    return "\n".join(out)
