"""The column chooser (`C`): tick the session table's columns; the table follows at once.

The id column is always shown; `node` is offered only when attached to several nodes (with
one engine it is always empty) or while it is shown. A ticked line shows a `✓` (not a
colour alone); a ticked
column that does not fit the table's width says `no room` on its line, the line under the
list names it, and the table's note counts such columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import SelectionList, Static
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import Selection

from sluice.tui.columns import COLUMNS, Column

if TYPE_CHECKING:
    from sluice.tui.table import SessionTable

__all__ = ["ColumnChooser"]


TICKED, UNTICKED = "✓", " "
NO_ROOM = "no room at this width"


class TickList(SelectionList[str]):
    """A SelectionList whose tick box shows `✓` or nothing: Textual's shows the same `X`
    either way and tells them apart by colour only."""

    def render_line(self, y: int) -> Strip:
        """Textual's line, with the mark in the box (a line without the box stays as is)."""
        line = super().render_line(y)
        segments = list(line)
        if len(segments) < 2 or segments[1].text != ToggleButton.BUTTON_INNER:
            return line
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return line
        mark = TICKED if selection.value in self.selected else UNTICKED
        segments[1] = Segment(mark, segments[1].style)
        return Strip(segments, line.cell_length)


class ColumnChooser(ModalScreen[None]):
    """A list of the columns with a tick each; Space or Enter toggles, Esc or C closes."""

    BINDINGS = [Binding("escape,C,q", "app.pop_screen", "close")]

    def __init__(self, table: SessionTable) -> None:
        super().__init__(id="chooser")
        self.table = table
        self._no_room: set[str] = set()  # columns whose line says there is no room
        self._ticked: str | None = None  # the column ticked last, if ticked

    def offered(self) -> list[Column]:
        """The columns listed: every one but the id (always shown), and `node` only when
        attached to several nodes or already shown (so it can be taken away)."""
        link = getattr(self.app, "link", None)  # the app's Link (tui/link.py)
        several = link is not None and len(link.nodes()) > 1
        node = several or "node" in self.table.chosen
        return [c for c in COLUMNS if c.key != "id" and (c.key != "node" or node)]

    def compose(self) -> ComposeResult:
        """The help line, then one tickable line per offered column."""
        chosen = set(self.table.chosen)
        options = [
            Selection(self._prompt(c), c.key, c.key in chosen, id=f"col-{c.key}")
            for c in self.offered()
        ]
        with Vertical(id="chooser-box"):
            yield Static(
                Text("Columns: Space or Enter ticks, Esc closes. The id is always shown."),
                id="chooser-help",
            )
            yield TickList(*options, id="chooser-list")
            yield Static(id="chooser-note")

    def on_mount(self) -> None:
        """Say which ticked columns need more width."""
        self._show_note()

    @staticmethod
    def _prompt(col: Column, no_room: bool = False) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{col.label:<10}", style="bold")
        if no_room:
            text.append(NO_ROOM, style="yellow")
            text.append(": ")
        text.append(col.means)
        return text

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        """Apply the ticks to the table now (the note speaks of a column just ticked)."""
        event.stop()
        selected = event.selection_list.selected
        ticked = set(selected) - set(self.table.chosen)
        self._ticked = ticked.pop() if len(ticked) == 1 else None
        self.table.set_columns(selected)
        self._show_note()

    def _show_note(self) -> None:
        """Mark the lines of ticked columns with no room, and say which they are."""
        left_out = set(self.table.left_out)
        listing = self.query_one("#chooser-list", TickList)
        for col in self.offered():
            if (col.key in left_out) != (col.key in self._no_room):
                listing.replace_option_prompt(
                    f"col-{col.key}", self._prompt(col, col.key in left_out)
                )
        self._no_room = left_out
        note = self.query_one("#chooser-note", Static)
        if not left_out:
            note.update(Text("every ticked column is shown", style="dim"))
            return
        names = ", ".join(c.label for c in COLUMNS if c.key in left_out)
        text = Text(style="yellow")
        if self._ticked in left_out:
            label = next(c.label for c in COLUMNS if c.key == self._ticked)
            text.append(f"{label} is ticked but has no room at this width: ")
            text.append("untick another column or widen the terminal. ")
        text.append(f"No room for: {names}")
        note.update(text)
