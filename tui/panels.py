"""The read-only panels above and beside the table: process figures, backends, sparklines.

Each panel is fed a frozen `EngineSnapshot` by the app's timers and redraws only from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from sluice.engine.snapshot import EngineSnapshot
from sluice.tui import fmt
from sluice.tui.readout import Fitted, Readout

__all__ = ["BackendsBar", "ProcessBar", "SparkHistory", "SparkPanel"]

WINDOW = 60.0  # seconds of history the sparklines show


def _part(text: str, style: str = "") -> Text:
    return Text(text, style=style, end="")


def _pair(label: str, value: str, style: str = "bold") -> Text:
    """A label and its figure, kept or left out together."""
    text = Text(label, end="")
    text.append(value, style=style)
    return text


class ProcessBar(Readout):
    """Two lines: memory, CPU and loop lag; then sessions by state, total rates, tokens lost.

    On a narrow terminal the least important figures are left out whole (`Fitted`)."""

    def show(self, snap: EngineSnapshot, *, uptime: float, paused: bool) -> None:
        """Redraw from `snap`."""
        proc = snap.process
        limit = proc.memory_limit
        limit_name = "cgroup" if limit else "machine"
        limit = limit or proc.machine_memory
        fill = proc.rss / limit if limit else 0.0
        first: list[tuple[int, Text]] = []
        if paused:
            first.append((0, _part("PAUSED ", "bold reverse yellow")))
        first += [
            (8, _part("Sluice ", "bold")),
            (0, _pair("RSS ", f"{fmt.nbytes(proc.rss)}/{fmt.nbytes(limit)}")),
            (6, _part(f" {limit_name}", "bold")),
            (7, _part(" " + fmt.bar(fill, 6), "red" if fill > 0.8 else "green")),
            (3, _part(f" {fmt.pct(fill)}")),
            (1, _pair("  CPU ", f"{proc.cpu_percent:.0f}%")),
            (2, _pair("  lag ", fmt.seconds(proc.loop_lag))),
        ]
        if proc.loop_lag_p99 is not None:
            first.append((4, _part(f" (p99 {fmt.seconds(proc.loop_lag_p99)})")))
        first.append((9, _part(f"  up {fmt.seconds(uptime)}", "dim")))
        self.update(Group(Fitted(first), Fitted(self._sessions_line(snap))))

    @staticmethod
    def _sessions_line(snap: EngineSnapshot) -> list[tuple[int, Text]]:
        totals = snap.totals
        states = totals.states
        parts: list[tuple[int, Text]] = [
            (0, _part(f"{fmt.count(totals.sessions)} sessions:", "bold"))
        ]
        for state, prio in (
            ("streaming", 1),
            ("draining", 5),
            ("queued", 2),
            ("done", 6),
            ("failed", 1),
            ("cancelled", 6),
        ):
            n = states.get(state, 0)
            if n or state in ("streaming", "queued"):
                style = "red" if state == "failed" and n else ""
                parts.append((prio, _part(f" {n} {state}", style)))
        parts.append((3, _pair("  in ", f"{fmt.rate(totals.rate_in)}/s")))
        parts.append((3, _pair(" out ", f"{fmt.rate(totals.rate_out)}/s")))
        # Chunks a user's cancel dropped were dropped on request: shown apart, not in red.
        cancelled = totals.tokens_lost_cancelled
        lost = totals.tokens_lost - cancelled
        parts.append((0, _pair("  lost ", fmt.count(lost), "bold red" if lost else "bold green")))
        if cancelled:
            parts.append((2, _part(f" (+{fmt.count(cancelled)} dropped by cancel)", "dim")))
        return parts


class BackendsBar(Readout):
    """One line: each backend's permits in use against its limit, and sessions waiting.

    Narrow: the bars go first, then the idle backends; names are shown as plain text."""

    def show(self, snap: EngineSnapshot) -> None:
        """Redraw from `snap`."""
        parts: list[tuple[int, Text]] = [(9, _part("backends", "bold"))]
        for backend in snap.backends:
            fill = backend.in_use / backend.limit if backend.limit else 0.0
            busy = backend.in_use or backend.waiting
            figures = fmt.plain(f"  {backend.name} ", limit=26)
            figures.end = ""
            figures.append(f"{backend.in_use}/{backend.limit}", style="bold")
            parts.append((0 if busy else 3, figures))
            parts.append((6, _part(" " + fmt.bar(fill, 4), "yellow" if fill >= 1 else "green")))
            if backend.in_use > backend.limit:
                # A lowered limit never preempts: say why in-use exceeds it for a while.
                parts.append((7, _part(" (over: running ones finish)", "dim")))
            if backend.waiting:
                parts.append((1, _part(f" +{backend.waiting} waiting", "yellow")))
        self.update(Fitted(parts))


class SparkHistory:
    """The last minute of a few totals, one point per new snapshot (by `taken_at`)."""

    SERIES: tuple[tuple[str, str, Callable[[EngineSnapshot], float], Callable[[float], str]], ...]
    SERIES = (
        ("rate", "chunks/s", lambda s: s.totals.rate_in, lambda v: f"{fmt.rate(v)}/s"),
        ("depth", "depth", lambda s: float(s.totals.depth), lambda v: fmt.count(int(v))),
        ("rss", "RSS", lambda s: float(s.process.rss), lambda v: fmt.nbytes(int(v))),
        (
            "qwait",
            "qwait p99",
            lambda s: s.totals.queue_wait.p99 or 0.0,
            fmt.seconds,
        ),
    )

    def __init__(self, window: float = WINDOW, maxlen: int = 600) -> None:
        self.window = window
        self.times: deque[float] = deque(maxlen=maxlen)
        self.values: dict[str, deque[float]] = {
            key: deque(maxlen=maxlen) for key, *_ in self.SERIES
        }

    def add(self, snap: EngineSnapshot) -> bool:
        """Record `snap` if it is newer than the last one; True if it was recorded."""
        if self.times and snap.taken_at <= self.times[-1]:
            return False
        self.times.append(snap.taken_at)
        for key, _label, read, _show in self.SERIES:
            self.values[key].append(read(snap))
        while self.times and self.times[0] < snap.taken_at - self.window:
            self.times.popleft()
            for series in self.values.values():
                series.popleft()
        return True


class SparkPanel(Vertical):
    """One labelled sparkline per series of SparkHistory, with the latest value."""

    def compose(self) -> ComposeResult:
        """A row per series: name and value, then the sparkline."""
        for key, label, _read, _show in SparkHistory.SERIES:
            with Horizontal(classes="spark-row"):
                yield Label(label, classes="spark-name")
                yield Readout("-", id=f"spark-value-{key}", classes="spark-value")
                yield Sparkline([], id=f"spark-{key}", classes="spark")

    def show(self, history: SparkHistory) -> None:
        """Redraw every sparkline from `history`."""
        for key, _label, _read, show in SparkHistory.SERIES:
            values = history.values[key]
            self.query_one(f"#spark-{key}", Sparkline).data = list(values)
            latest = show(values[-1]) if values else "-"
            self.query_one(f"#spark-value-{key}", Readout).update(latest)
