"""The help screen (`?`): every key of the app, what the knobs mean, what the columns show."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sluice.engine.settings import live_settings
from sluice.tui.columns import COLUMNS

__all__ = ["HELP_KEYS", "HelpScreen"]

HELP_KEYS: tuple[tuple[str, str], ...] = (
    ("s", "save the knobs to the config file (atomic, previous kept as .bak); clears the *"),
    ("n", "10 more demo sessions (raises demo sess., the kept-running count)"),
    ("c", "cancel the selected session"),
    ("w", "sluice attach, several nodes: knobs to every node or to one (each in turn)"),
    ("p", "pause or resume the display (the engine keeps running)"),
    ("q", "quit: cancel every session, close every stream (asks once if knobs are unsaved)"),
    ("t", "calibrate: time the consumer, set maxsize and batch_max from it"),
    ("?", "this help"),
    ("/", "filter the table by id, backend, state or error (Esc clears, also after Enter)"),
    ("o / O", "sort by the next column / reverse the order (or click a header)"),
    ("L", "live sessions first on or off (on: running above finished whatever the sort)"),
    ("C", "choose the table's columns"),
    ("Up Down j k", "table: the previous / next session"),
    ("g G Home End", "table: the first / last session"),
    ("Enter", "on a session: its detail screen; on a slider: type an exact value"),
    ("e", "slider: type an exact value (as Enter)"),
    ("Esc", "clear the filter; drop a value being typed; close a screen"),
    ("Tab", "jump between the table and the knobs (back to the slider last used)"),
    ("Up Down", "slider: the previous / next slider"),
    ("Left Right h l", "slider: one step"),
    ("PgUp PgDn", "slider: ten steps"),
    ("Home End", "slider: minimum / maximum"),
    ("a", "slider: auto-tune on / off (maxsize, batch_max, claude lim, ollama lim)"),
    ("mouse", "click or drag a slider; click a header to sort"),
    ("Ctrl+P", "command palette"),
)


def knob_help() -> list[tuple[str, str]]:
    """Each slider's label and what it sets, from the settings registry (with the knob's
    config name, which `s` saves and the control API takes)."""
    return [(s.label, f"{s.help} [{s.name}]") for s in live_settings()]


class HelpScreen(ModalScreen[None]):
    """Keys and knobs; any of Escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        """Two small tables in a scrollable box."""
        keys = Table(title="Keys", box=None, padding=(0, 1), title_justify="left")
        keys.add_column("key", style="bold")
        keys.add_column("does")
        for key, does in HELP_KEYS:
            keys.add_row(Text(key), Text(does))
        knobs = Table(title="Knobs", box=None, padding=(0, 1), title_justify="left")
        knobs.add_column("knob", style="bold")
        knobs.add_column("means")
        for name, means in knob_help():
            knobs.add_row(Text(name), Text(means))
        columns = Table(title="Table columns", box=None, padding=(0, 1), title_justify="left")
        columns.add_column("column", style="bold")
        columns.add_column("shows")
        for col in COLUMNS:
            columns.add_row(Text(col.label), Text(col.means))
        with VerticalScroll(id="help-box"):
            yield Static("Up/Down or PgUp/PgDn scroll; Esc, q or ? closes.", classes="dim")
            yield Static(keys)
            yield Static(knobs)
            yield Static(columns)
            yield Static("Esc, q or ? closes this help.", classes="dim")
