"""The column chooser (`C`): tick the session table's columns; the table follows at once.

The id column is always shown. Columns that are ticked but do not fit the table's width
say so here, and the table's note counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection

from sluice.tui.columns import COLUMNS

if TYPE_CHECKING:
    from sluice.tui.table import SessionTable

__all__ = ["ColumnChooser"]


class ColumnChooser(ModalScreen[None]):
    """A list of the columns with a tick each; Space or Enter toggles, Esc or C closes."""

    BINDINGS = [Binding("escape,C,q", "app.pop_screen", "close")]

    def __init__(self, table: SessionTable) -> None:
        super().__init__(id="chooser")
        self.table = table

    def compose(self) -> ComposeResult:
        """The help line, then one tickable line per column (id excluded: always shown)."""
        chosen = set(self.table.chosen)
        options = [
            Selection(self._prompt(c.label, c.means), c.key, c.key in chosen, id=f"col-{c.key}")
            for c in COLUMNS
            if c.key != "id"
        ]
        with Vertical(id="chooser-box"):
            yield Static(
                Text("Columns: Space or Enter ticks, Esc closes. The id is always shown."),
                id="chooser-help",
            )
            yield SelectionList[str](*options, id="chooser-list")
            yield Static(id="chooser-note")

    def on_mount(self) -> None:
        """Say which ticked columns need more width."""
        self._show_note()

    @staticmethod
    def _prompt(label: str, means: str) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{label:<10}", style="bold")
        text.append(means)
        return text

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        """Apply the ticks to the table now."""
        event.stop()
        self.table.set_columns(event.selection_list.selected)
        self._show_note()

    def _show_note(self) -> None:
        left_out = self.table.left_out
        note = self.query_one("#chooser-note", Static)
        if left_out:
            names = ", ".join(c.label for c in COLUMNS if c.key in left_out)
            note.update(Text(f"need more width to show: {names}", style="yellow"))
        else:
            note.update(Text("every ticked column is shown", style="dim"))
