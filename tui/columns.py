"""The session table's columns: what each shows, how it sorts, and which fit a given width.

Every column has a fixed width that its values never exceed (numbers are shortened, never
cut), except the error column, which takes the room left over and ends in an ellipsis. When
the chosen columns do not fit, the lowest-ranked ones are left out whole, so a number is
never clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from sluice.engine.snapshot import STOP_WARNINGS, SessionSnapshot
from sluice.tui import fmt

__all__ = [
    "COLUMNS",
    "DEFAULT_COLUMNS",
    "STATE_STYLE",
    "Column",
    "column",
    "fit",
    "ordered",
    "stop_label",
]

STATE_ORDER = {"streaming": 0, "draining": 1, "queued": 2, "failed": 3, "cancelled": 4, "done": 5}
STATE_STYLE = {
    "streaming": "green",
    "draining": "cyan",
    "queued": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
    "done": "dim",
}
# How a response ended, shortened to fit; an end that left the answer short (the engine's
# STOP_WARNINGS) is marked with '!' and coloured by what went wrong.
STOP_SHORT = {
    "max_tokens": "max_tok",
    "model_context_window_exceeded": "ctx_full",
    "stop_sequence": "stop_seq",
    "pause_turn": "pause",
}
WARNING_STYLE = {"truncated": "bold yellow", "refused": "bold red"}
ERROR_MIN = 7  # the error column is left out when it would be narrower


def stop_label(reason: str | None) -> str:
    """A stop reason in a few characters; one that left the answer short ends in '!'."""
    if reason is None:
        return ""
    short = STOP_SHORT.get(reason, reason)
    return f"{short}!" if reason in STOP_WARNINGS else short


def stop_style(reason: str | None) -> str:
    """The style of a stop reason: yellow for a truncated answer, red for a refused one."""
    return WARNING_STYLE.get(STOP_WARNINGS.get(reason or "", ""), "")


# The table's stop cells hold labels; the style of each marked label.
_LABEL_STYLE = {stop_label(reason): stop_style(reason) for reason in STOP_WARNINGS}


def _depth(s: SessionSnapshot) -> str:
    top = "∞" if s.maxsize == 0 else str(s.maxsize)
    nums = f"{s.depth}/{top}"
    if len(nums) > 9:
        nums = f"{fmt.short_int(s.depth, 4)}/{fmt.short_int(s.maxsize, 4) if s.maxsize else top}"
    fill = s.depth / s.maxsize if s.maxsize else 0.0
    return f"{fmt.bar(fill, 2)} {nums:>9}"


@dataclass(frozen=True, slots=True)
class Column:
    """A table column.

    `width` counts every cell it takes, the one-space gap before its text included; `rank`
    says which columns stay when the table is narrow (lower stays longer); `sort` returns
    None for an unknown value (always sorted last); `numeric` columns are right-aligned and
    sort biggest first.
    """

    key: str
    label: str
    width: int
    rank: int
    text: Callable[[SessionSnapshot], str]
    sort: Callable[[SessionSnapshot], Any]
    means: str
    numeric: bool = True
    default: bool = True
    flex: bool = False

    def header(self) -> Text:
        """The header label, aligned like the values."""
        if self.numeric:
            return Text(self.label, justify="right", no_wrap=True, overflow="ellipsis")
        return Text(" " + self.label, no_wrap=True, overflow="ellipsis")

    def cell(self, text: str) -> Text:
        """A cell for `text` (from `self.text`): plain text, never markup, styled by value."""
        if self.numeric:
            return Text(text, justify="right", no_wrap=True, overflow="ellipsis")
        style = ""
        if self.key == "state":
            style = STATE_STYLE.get(text, "")
        elif self.key == "error":
            style = "red"
        elif self.key == "stop":
            style = _LABEL_STYLE.get(text, "")
        return fmt.plain(" " + text, style)


COLUMNS: tuple[Column, ...] = (
    Column("id", "id", 13, 0, lambda s: s.id, lambda s: s.id, "session id", numeric=False),
    Column(
        "node",
        "node",
        14,
        1,
        lambda s: getattr(s, "node", ""),
        lambda s: getattr(s, "node", ""),
        "the served engine the session runs on (sluice attach with several URLs)",
        numeric=False,
        default=False,
    ),
    Column(
        "backend",
        "backend",
        8,
        10,
        lambda s: s.backend,
        lambda s: s.backend,
        "backend name",
        numeric=False,
    ),
    Column(
        "state",
        "state",
        10,
        1,
        lambda s: s.state,
        lambda s: STATE_ORDER.get(s.state, 9),
        "queued, streaming, draining, done, failed, cancelled",
        numeric=False,
    ),
    Column(
        "depth",
        "depth/max",
        13,
        2,
        _depth,
        lambda s: s.depth / s.maxsize if s.maxsize else float(s.depth),
        "chunks buffered / buffer size, as a bar",
    ),
    Column(
        "high_water",
        "hw",
        6,
        16,
        lambda s: fmt.short_int(s.high_water, 5),
        lambda s: s.high_water,
        "the most chunks the buffer ever held",
        default=False,
    ),
    Column(
        "memory",
        "mem",
        6,
        3,
        lambda s: fmt.nbytes(s.memory_bytes),
        lambda s: s.memory_bytes,
        "memory per session: buffered chunks plus bookkeeping",
    ),
    Column(
        "bytes",
        "buf",
        6,
        15,
        lambda s: fmt.nbytes(s.buffered_bytes),
        lambda s: s.buffered_bytes,
        "bytes of the chunks in the buffer now",
        default=False,
    ),
    Column(
        "tokens_in",
        "in",
        7,
        14,
        lambda s: fmt.short_int(s.tokens_in, 6),
        lambda s: s.tokens_in,
        "chunks received from the backend",
        default=False,
    ),
    Column(
        "tokens_out",
        "out",
        7,
        12,
        lambda s: fmt.short_int(s.tokens_out, 6),
        lambda s: s.tokens_out,
        "chunks the consumer processed",
    ),
    Column(
        "rate",
        "rate/s",
        7,
        13,
        lambda s: fmt.rate(s.rate_in),
        lambda s: s.rate_in,
        "chunks per second in (last ~5 s)",
    ),
    Column(
        "ttft",
        "ttft",
        7,
        5,
        lambda s: fmt.seconds(s.ttft),
        lambda s: s.ttft,
        "time to first token (from the slot)",
    ),
    Column(
        "qw_p50",
        "qw p50",
        7,
        6,
        lambda s: fmt.seconds(s.queue_wait.p50),
        lambda s: s.queue_wait.p50,
        "queue_wait median: received to processed",
    ),
    Column(
        "qw_p99",
        "qw p99",
        7,
        4,
        lambda s: fmt.seconds(s.queue_wait.p99),
        lambda s: s.queue_wait.p99,
        "queue_wait p99",
    ),
    Column(
        "age_p99",
        "age p99",
        8,
        7,
        lambda s: fmt.seconds(s.token_age.p99),
        lambda s: s.token_age.p99,
        "token_age p99: generated to processed",
    ),
    Column(
        "stall",
        "stall",
        6,
        11,
        lambda s: fmt.pct(s.stall_ratio),
        lambda s: s.stall_ratio,
        "share of streaming time the producer waited on a full buffer",
    ),
    Column(
        "attempts",
        "tries",
        6,
        17,
        lambda s: fmt.short_int(s.attempts, 5),
        lambda s: s.attempts,
        "requests made, retries included",
        default=False,
    ),
    Column(
        "stop",
        "stop",
        9,
        9,
        lambda s: stop_label(s.stop_reason),
        lambda s: s.stop_reason,
        "how the response ended; max_tok! and refusal! mark a cut answer",
        numeric=False,
    ),
    Column(
        "error",
        "error",
        1 + ERROR_MIN,
        8,
        lambda s: s.error or "",
        lambda s: s.error or None,
        "the error, one line (Enter shows it in full)",
        numeric=False,
        flex=True,
    ),
)
_BY_KEY = {c.key: c for c in COLUMNS}
DEFAULT_COLUMNS: tuple[str, ...] = tuple(c.key for c in COLUMNS if c.default)


def column(key: str) -> Column:
    """The column called `key`; KeyError if there is none."""
    return _BY_KEY[key]


def fit(keys: Iterable[str], width: int) -> list[tuple[Column, int]]:
    """The columns of `keys` that fit in `width` cells, in table order, with their widths.

    The lowest-ranked columns are left out until the rest fit; the flexible (error) column
    then takes what is left. A lone column narrower than its width is squeezed to fit.
    """
    wanted = set(keys)
    chosen = [c for c in COLUMNS if c.key in wanted]
    while len(chosen) > 1 and sum(c.width for c in chosen) > width:
        chosen.remove(max(chosen, key=lambda c: c.rank))
    spare = max(width - sum(c.width for c in chosen), 0)
    out: list[tuple[Column, int]] = []
    for c in chosen:
        size = c.width + spare if c.flex else c.width
        out.append((c, min(size, width) if len(chosen) == 1 else size))
    return out


def ordered(
    sessions: Sequence[SessionSnapshot], col: Column, reverse: bool, live_first: bool
) -> list[SessionSnapshot]:
    """`sessions` sorted by `col` (`reverse` flips it), ties by id, unknown values last
    either way, and with `live_first` every running session before every finished one."""
    rows = sorted(sessions, key=lambda s: s.id)
    known: list[tuple[Any, SessionSnapshot]] = []
    unknown: list[SessionSnapshot] = []
    for s in rows:
        value = col.sort(s)
        if value is None:
            unknown.append(s)
        else:
            known.append((value, s))
    known.sort(key=lambda pair: pair[0], reverse=reverse)
    out = [s for _, s in known] + unknown
    if live_first:
        out.sort(key=lambda s: s.finished)
    return out
