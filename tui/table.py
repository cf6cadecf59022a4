"""The session table: one keyed row per session, only changed cells rewritten.

With more sessions than `max_rows` it shows the busiest (running first, fullest buffer,
fastest stream) and reports how many it hid, so a thousand sessions stay cheap to watch.
Any column sorts (click its header, or `o` / `O`): numbers biggest first, live sessions
above finished ones unless `L` turns that off; `/` filters by id, backend, state or error;
`C` chooses the columns. The columns that fit the table's width are shown whole, the error
last; the cursor stays on its session, and on a row the user can see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from sluice.engine.snapshot import SessionSnapshot
from sluice.tui import fmt
from sluice.tui.cells import CellCachedTable
from sluice.tui.columns import COLUMNS, DEFAULT_COLUMNS, Column, column, fit, ordered
from sluice.tui.merge import row_key
from sluice.tui.readout import Fitted

__all__ = ["SessionTable", "TableView", "busyness"]


def busyness(s: SessionSnapshot) -> tuple[bool, float, float]:
    """Sort key, lowest first, that puts the busiest sessions on top."""
    fill = s.depth / s.maxsize if s.maxsize else float(s.depth)
    return (s.finished, -fill, -s.rate_in)


@dataclass(frozen=True, slots=True)
class TableView:
    """What the table shows after a refresh: rows shown, matching and in all; chosen
    columns left out because the table is too narrow for them."""

    shown: int
    matching: int
    total: int
    left_out: int = 0

    @property
    def hidden(self) -> int:
        """Matching sessions left out to keep the table small."""
        return self.matching - self.shown


class _IdCell(Text):
    """The id cell: shows the id as plain text and remembers which row it is (its key: the
    id, or node and id when attached to several nodes)."""

    def __init__(self, session_id: str, key: str) -> None:
        super().__init__(" " + fmt.clean(session_id), no_wrap=True, overflow="ellipsis")
        self.session_id = key


class SessionTable(CellCachedTable):
    """The `#sessions` table."""

    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        Binding("g,home", "first_row", "first", show=False),
        Binding("G,end", "last_row", "last", show=False),
        Binding("L", "toggle_live_first", "live first", show=False),
        Binding("C", "choose_columns", "columns", show=False),
    ]

    DEFAULT_CSS = """
    SessionTable {
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, *, max_rows: int = 200, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cell_padding=0)
        self.max_rows = max_rows
        self.sort_column = "state"
        self.sort_reverse = False
        self.live_first = True
        self.filter_text = ""
        self.chosen: tuple[str, ...] = DEFAULT_COLUMNS
        self.shown: list[tuple[Column, int]] = []
        self._cells: dict[str, tuple[str, ...]] = {}
        self._made_from: dict[str, SessionSnapshot] = {}  # what each row was last made from
        self._order: list[str] = []
        self._last: Sequence[SessionSnapshot] = ()
        self._fit_width = -1

    # -- columns ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        """Lay the columns out for the width the table has."""
        self._layout_columns()

    def on_resize(self, _event: events.Resize) -> None:
        """A new width may fit more or fewer columns."""
        self._layout_columns()

    def _width(self) -> int:
        return self.scrollable_content_region.width

    def _layout_columns(self, force: bool = False) -> None:
        width = self._width()
        if width <= 0 or (width == self._fit_width and not force):
            return
        shown = fit(self.chosen, width)
        self._fit_width = width
        if shown == self.shown and not force:
            return
        selected = self.selected_id
        self.shown = shown
        self.clear(columns=True)
        self._cells = {}
        self._made_from = {}  # new columns: every row is made again
        self._order = []
        for col, size in shown:
            self.add_column(col.header(), width=size, key=col.key)
        self._apply(self._last, selected)
        self.post_message(self.ViewChanged(self))

    @property
    def left_out(self) -> list[str]:
        """Chosen columns the table is too narrow to show."""
        shown = {c.key for c, _ in self.shown}
        return [key for key in self.chosen if key not in shown]

    def set_columns(self, keys: Iterable[str]) -> None:
        """Show the columns of `keys` (in table order; `id` always) and redraw."""
        wanted = set(keys) | {"id"}
        self.chosen = tuple(c.key for c in COLUMNS if c.key in wanted)
        self._layout_columns(force=True)

    def action_choose_columns(self) -> None:
        """`C`: the column chooser."""
        from sluice.tui.chooser import ColumnChooser

        self.app.push_screen(ColumnChooser(self))

    # -- cursor ----------------------------------------------------------------------------

    @property
    def selected_id(self) -> str | None:
        """The row key of the session under the cursor (its id in the app's own engine;
        node and id when attached: tui/merge.py), if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value

    def row_ids(self) -> list[str]:
        """The session ids of the rows, top to bottom."""
        return [str(row.key.value) for row in self.ordered_rows]

    def visible_rows(self) -> range:
        """Row indexes on screen now."""
        height = self.scrollable_content_region.height - (
            self.header_height if self.show_header else 0
        )
        top = round(self.scroll_y)
        return range(top, min(top + max(height, 0), self.row_count))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolled (wheel, scrollbar): the cursor stays on a row that can be seen."""
        super().watch_scroll_y(old_value, new_value)
        rows = self.visible_rows()
        if rows and self.cursor_row not in rows:
            row = rows.start if self.cursor_row < rows.start else rows.stop - 1
            self.move_cursor(row=row, scroll=False)

    def action_first_row(self) -> None:
        """`g` / Home: the first row."""
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        """`G` / End: the last row."""
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    # -- filter and sort -------------------------------------------------------------------

    def matches(self, s: SessionSnapshot) -> bool:
        """True when the session passes the `/` filter."""
        needle = self.filter_text
        if not needle:
            return True
        fields = (s.id, s.backend, s.state, s.error or "", getattr(s, "node", ""))
        return any(needle in field.lower() for field in fields)

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        """Sort by column `key`: numbers biggest first, text A to Z; the current column
        again flips the order."""
        col = column(key)
        if reverse is None:
            reverse = (not self.sort_reverse) if key == self.sort_column else col.numeric
        self.sort_column = key
        self.sort_reverse = reverse
        self._order = []  # force a re-sort on the next show

    def cycle_sort(self, reverse: bool = False) -> str:
        """`o`: sort by the next column shown; `O`: flip the order. Returns the column."""
        if reverse:
            self.set_sort(self.sort_column, not self.sort_reverse)
            return self.sort_column
        keys = [c.key for c, _ in self.shown] or [c.key for c in COLUMNS]
        at = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.set_sort(keys[(at + 1) % len(keys)])
        return self.sort_column

    def action_toggle_live_first(self) -> None:
        """`L`: keep live sessions above finished ones, or sort them all together."""
        self.live_first = not self.live_first
        self._order = []
        self.post_message(self.ViewChanged(self))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by that column."""
        event.stop()
        self.set_sort(str(event.column_key.value))
        self.post_message(self.ViewChanged(self))

    def sort_label(self) -> str:
        """'depth/max ▼ live first': the column's header, the direction, the grouping."""
        arrow = "▼" if self.sort_reverse else "▲"
        label = f"{column(self.sort_column).label} {arrow}"
        return label + (" live first" if self.live_first else "")

    class ViewChanged(Message):
        """The sort, its grouping or the columns changed (the app redraws at once)."""

        def __init__(self, table: SessionTable) -> None:
            super().__init__()
            self.table = table

    # -- rows ------------------------------------------------------------------------------

    def show(self, sessions: Sequence[SessionSnapshot]) -> TableView:
        """Make the rows match `sessions`; call inside `app.batch_update()`."""
        self._last = sessions
        return self._apply(sessions, self.selected_id)

    def redraw(self) -> TableView:
        """Show the last sessions again (after a sort or column change while paused)."""
        return self._apply(self._last, self.selected_id)

    def _apply(self, sessions: Sequence[SessionSnapshot], selected: str | None) -> TableView:
        matching = [s for s in sessions if self.matches(s)] if self.filter_text else list(sessions)
        if len(matching) > self.max_rows:
            matching.sort(key=busyness)
            visible = matching[: self.max_rows]
        else:
            visible = matching
        view = TableView(
            shown=len(visible),
            matching=len(matching),
            total=len(sessions),
            left_out=len(self.left_out),
        )
        if not self.shown:
            return view  # not laid out yet: the first resize draws the rows
        visible = ordered(visible, column(self.sort_column), self.sort_reverse, self.live_first)
        cursor_row = self.cursor_row
        keys = [row_key(s) for s in visible]
        wanted = set(keys)
        cells = self._cells
        for row_id in [k for k in cells if k not in wanted]:
            self.remove_row(row_id)
            del cells[row_id]
            self._made_from.pop(row_id, None)
        shown = self.shown
        for s, key in zip(visible, keys, strict=True):
            if self._made_from.get(key) is s:
                continue  # the same snapshot (a finished session's): nothing to redo
            self._made_from[key] = s
            new = tuple(c.text(s) for c, _ in shown)
            old = cells.get(key)
            if old is None:
                row = [c.cell(t) for (c, _), t in zip(shown, new, strict=True)]
                row[0] = _IdCell(s.id, key)
                self.add_row(*row, key=key)
            elif old != new:
                for i, (was, now) in enumerate(zip(old, new, strict=True)):
                    if was != now and i:
                        col = shown[i][0]
                        self.update_cell(key, col.key, col.cell(now))
            cells[key] = new
        order = keys
        if order != self._order:
            rank = {row_id: i for i, row_id in enumerate(order)}
            self.sort("id", key=lambda cell: rank[cell.session_id])
            self._order = order
            if order:
                # Follow the selected session; if it went, stay at the same place.
                target = rank.get(selected, min(cursor_row, len(order) - 1)) if selected else 0
                self.move_cursor(row=target, scroll=True)
        return view

    def note(self, view: TableView) -> Fitted:
        """The line under the table: how many sessions, the filter, the sort, the columns
        (on a narrow screen the last parts are left out whole)."""
        count = Text()
        if self.filter_text:
            count.append(f"{view.matching} of {view.total} sessions match '")
            count.append_text(fmt.plain(self.filter_text, limit=40))
            count.append("'")
            if view.hidden:
                count.append(f", {view.shown} shown")
        else:
            count.append(f"{view.shown} of {view.total} sessions")
        parts: list[tuple[int, Text]] = [(0, count)]
        if view.hidden:
            parts.append((1, Text(f", {view.hidden} hidden (busiest shown; / filters)")))
        parts.append((2, Text(f"  sort: {self.sort_label()}")))
        if view.left_out:
            parts.append((3, Text(f"  {view.left_out} columns need more width (C)")))
        return Fitted(parts)
