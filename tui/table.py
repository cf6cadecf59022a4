"""The session table: one keyed row per session, only changed cells rewritten.

With more sessions than `max_rows` it shows the busiest (running first, fullest buffer,
fastest stream) and reports how many it hid, so a thousand sessions stay cheap to watch.
Any column sorts (click its header, or `o` / `O`); `/` filters by id, backend, state or error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from sluice.engine.snapshot import SessionSnapshot
from sluice.tui import fmt
from sluice.tui.cells import CellCachedTable

__all__ = ["COLUMNS", "Column", "SessionTable", "TableView"]

STATE_ORDER = {"streaming": 0, "draining": 1, "queued": 2, "failed": 3, "cancelled": 4, "done": 5}
STATE_STYLE = {
    "streaming": "green",
    "draining": "cyan",
    "queued": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
    "done": "dim",
}
_NONE_LAST = float("inf")


def _depth(s: SessionSnapshot) -> str:
    if s.maxsize == 0:
        return f"{fmt.bar(0, 3)} {s.depth}/∞"
    return f"{fmt.bar(s.depth / s.maxsize, 3)} {s.depth}/{s.maxsize}"


def _p(value: float | None) -> float:
    return _NONE_LAST if value is None else value


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: key, header, width, cell text and sort value."""

    key: str
    label: str
    width: int
    text: Callable[[SessionSnapshot], str]
    sort: Callable[[SessionSnapshot], Any]


COLUMNS: tuple[Column, ...] = (
    Column("id", "id", 14, lambda s: s.id, lambda s: s.id),
    Column("backend", "backend", 7, lambda s: s.backend, lambda s: s.backend),
    Column("state", "state", 9, lambda s: s.state, lambda s: (STATE_ORDER.get(s.state, 9), s.id)),
    Column("depth", "depth/max", 13, _depth, lambda s: s.depth / s.maxsize if s.maxsize else 0),
    Column("high_water", "hw", 4, lambda s: str(s.high_water), lambda s: s.high_water),
    Column("tokens_in", "in", 5, lambda s: str(s.tokens_in), lambda s: s.tokens_in),
    Column("tokens_out", "out", 5, lambda s: str(s.tokens_out), lambda s: s.tokens_out),
    Column("rate", "rate/s", 6, lambda s: fmt.rate(s.rate_in), lambda s: s.rate_in),
    Column(
        "qw_p99",
        "qw p99",
        6,
        lambda s: fmt.seconds(s.queue_wait.p99),
        lambda s: _p(s.queue_wait.p99),
    ),
    Column(
        "age_p99",
        "age p99",
        7,
        lambda s: fmt.seconds(s.token_age.p99),
        lambda s: _p(s.token_age.p99),
    ),
    Column("stall", "stall", 5, lambda s: fmt.pct(s.stall_ratio), lambda s: s.stall_ratio),
    Column("attempts", "tries", 5, lambda s: str(s.attempts), lambda s: s.attempts),
    Column("error", "error", 40, lambda s: s.error or "", lambda s: s.error or ""),
    Column("ttft", "ttft", 6, lambda s: fmt.seconds(s.ttft), lambda s: _p(s.ttft)),
    Column(
        "qw_p50",
        "qw p50",
        6,
        lambda s: fmt.seconds(s.queue_wait.p50),
        lambda s: _p(s.queue_wait.p50),
    ),
    Column("bytes", "bytes", 6, lambda s: fmt.nbytes(s.buffered_bytes), lambda s: s.buffered_bytes),
)
_KEYS = tuple(c.key for c in COLUMNS)
_STATE_AT = _KEYS.index("state")
_ERROR_AT = _KEYS.index("error")


def busyness(s: SessionSnapshot) -> tuple[bool, float, float]:
    """Sort key, lowest first, that puts the busiest sessions on top."""
    fill = s.depth / s.maxsize if s.maxsize else float(s.depth)
    return (s.finished, -fill, -s.rate_in)


@dataclass(frozen=True, slots=True)
class TableView:
    """What the table shows after a refresh: rows shown, rows matching, rows hidden."""

    shown: int
    matching: int
    total: int

    @property
    def hidden(self) -> int:
        """Matching sessions left out to keep the table small."""
        return self.matching - self.shown


def _style(col: int, text: str, state: str) -> str | Text:
    if col == _STATE_AT:
        return Text(text, style=STATE_STYLE.get(state, ""))
    if col == _ERROR_AT and text:
        return Text(text, style="red")
    return text


class SessionTable(CellCachedTable):
    """The `#sessions` table."""

    def __init__(self, *, max_rows: int = 200, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.max_rows = max_rows
        self.sort_column = "state"
        self.sort_reverse = False
        self.filter_text = ""
        self._cells: dict[str, tuple[str, ...]] = {}
        self._shown: dict[str, SessionSnapshot] = {}  # what each row was last made from
        self._order: list[str] = []

    def on_mount(self) -> None:
        """Create the columns with fixed widths (no re-measuring on each update)."""
        for column in COLUMNS:
            self.add_column(column.label, width=column.width, key=column.key)

    @property
    def selected_id(self) -> str | None:
        """The session under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value

    def matches(self, s: SessionSnapshot) -> bool:
        """True when the session passes the `/` filter."""
        needle = self.filter_text
        if not needle:
            return True
        return any(needle in field.lower() for field in (s.id, s.backend, s.state, s.error or ""))

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        """Sort by `column`; choosing the current column again flips the order."""
        if column not in _KEYS:
            raise KeyError(column)
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self._order = []  # force a re-sort on the next show

    def cycle_sort(self, reverse: bool = False) -> str:
        """`o`: sort by the next column; `O`: flip the current order. Returns the column."""
        if reverse:
            self.set_sort(self.sort_column, not self.sort_reverse)
        else:
            nxt = _KEYS[(_KEYS.index(self.sort_column) + 1) % len(_KEYS)]
            self.set_sort(nxt, False)
        return self.sort_column

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by that column."""
        event.stop()
        self.set_sort(str(event.column_key.value))
        self.post_message(self.SortChanged(self))

    class SortChanged(Message):
        """The sort column or direction changed (the app redraws at once)."""

        def __init__(self, table: SessionTable) -> None:
            super().__init__()
            self.table = table

    def show(self, sessions: Sequence[SessionSnapshot]) -> TableView:
        """Make the rows match `sessions`; call inside `app.batch_update()`."""
        matching = [s for s in sessions if self.matches(s)] if self.filter_text else list(sessions)
        if len(matching) > self.max_rows:
            matching.sort(key=busyness)
            visible = matching[: self.max_rows]
        else:
            visible = matching
        column = COLUMNS[_KEYS.index(self.sort_column)]
        visible.sort(key=column.sort, reverse=self.sort_reverse)
        selected = self.selected_id
        wanted = {s.id: s for s in visible}
        cells = self._cells
        for row_id in [k for k in cells if k not in wanted]:
            self.remove_row(row_id)
            del cells[row_id]
            self._shown.pop(row_id, None)
        for s in visible:
            if self._shown.get(s.id) is s:
                continue  # the same snapshot (a finished session's): nothing to redo
            self._shown[s.id] = s
            new = tuple(c.text(s) for c in COLUMNS)
            old = cells.get(s.id)
            if old is None:
                self.add_row(*(_style(i, t, s.state) for i, t in enumerate(new)), key=s.id)
            elif old != new:
                for i, (was, now) in enumerate(zip(old, new, strict=True)):
                    if was != now:
                        self.update_cell(s.id, _KEYS[i], _style(i, now, s.state))
            cells[s.id] = new
        order = [s.id for s in visible]
        if order != self._order:
            rank = {row_id: i for i, row_id in enumerate(order)}
            self.sort("id", key=lambda row_id: rank[row_id])
            self._order = order
            if selected in rank:
                self.move_cursor(row=rank[selected], scroll=False)
        return TableView(shown=len(visible), matching=len(matching), total=len(sessions))
