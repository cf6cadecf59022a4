"""The read-only panels above and beside the table: process figures, backends, sparklines.

Each panel is fed a frozen `EngineSnapshot` by the app's timers and redraws only from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.app import RenderResult as WidgetRender
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.widgets import Label, Sparkline

from sluice.engine.snapshot import EngineSnapshot
from sluice.tui import fmt
from sluice.tui.merge import has_figures
from sluice.tui.readout import Fitted, Part, Readout

__all__ = [
    "BackendsBar",
    "GappedSparkline",
    "ProcessBar",
    "SparkHistory",
    "SparkPanel",
    "bar_levels",
]

WINDOW = 60.0  # seconds of history the sparklines show
SPARK_WIDTH = 24  # columns a sparkline is assumed to have before it is laid out


def _part(text: str, style: str = "") -> Text:
    return Text(text, style=style, end="")


def _pair(label: str, value: str, style: str = "bold") -> Text:
    """A label and its figure, kept or left out together."""
    text = Text(label, end="")
    text.append(value, style=style)
    return text


def _decor(prio: int, text: Text) -> Part:
    """A part that says nothing a figure beside it does not (a title, a bar): it goes
    without a sign on a narrow screen."""
    return Part(prio, text, named=False)


class ProcessBar(Readout):
    """Two lines: memory, CPU and loop lag; then sessions by state, total rates, tokens lost.

    On a narrow terminal the least important figures take a shorter form or are left out
    whole, and a line that left one out ends with `…` (`Fitted`)."""

    def show(self, snap: EngineSnapshot, *, uptime: float, paused: bool, nodes: int = 1) -> None:
        """Redraw from `snap`, merged from `nodes` served engines (attached)."""
        proc = snap.process
        if not has_figures(snap):  # attached, with every node down: unknown, not zero
            unknown = Part(0, _part("no node connected: figures unknown", "bold yellow"))
            parts = [_decor(9, _part("Sluice ", "bold")), unknown, *self._cluster_parts(snap)]
            self.update(Group(Fitted(parts), Text("")))
            return
        limit = proc.memory_limit
        limit_name = "cgroup" if limit else "machine"
        limit = limit or proc.machine_memory
        fill = proc.rss / limit if limit else 0.0
        first: list[Part] = []
        if paused:
            first.append(Part(0, _part("PAUSED ", "bold reverse yellow")))
        first.append(_decor(9, _part("Sluice ", "bold")))
        if nodes > 1:  # limits do not add up (nodes may share a machine): each node's line
            first.append(Part(0, _pair("RSS ", f"{fmt.nbytes(proc.rss)} on {nodes} nodes")))
        else:
            first += [
                Part(0, _pair("RSS ", f"{fmt.nbytes(proc.rss)}/{fmt.nbytes(limit)}")),
                Part(6, _part(f" {limit_name}", "bold")),
                _decor(8, _part(" " + fmt.bar(fill, 6), "red" if fill > 0.8 else "green")),
                Part(3, _part(f" {fmt.pct(fill)}")),
            ]
        first += [
            Part(1, _pair("  CPU ", f"{proc.cpu_percent:.0f}%")),
            Part(2, _pair("  lag ", fmt.seconds(proc.loop_lag))),
        ]
        if proc.loop_lag_p99_10s is not None:  # the last 10 s, not the whole run
            p99 = fmt.seconds(proc.loop_lag_p99_10s)
            first.append(Part(4, _pair("  lag p99 10s ", p99), short=_pair(" p99 10s ", p99)))
        first.append(_decor(7, _part(f"  up {fmt.seconds(uptime)}", "dim")))
        first += self._cluster_parts(snap)
        self.update(Group(Fitted(first), Fitted(self._sessions_line(snap))))

    @staticmethod
    def _cluster_parts(snap: EngineSnapshot) -> list[Part]:
        """`cluster NAME: N nodes`, or in red (never left out) `cluster: disconnected since
        HH:MM:SS`: shared backends admit nobody new until Redis is back."""
        cluster = snap.cluster
        if cluster is None:
            return []
        if cluster.state == "connecting":
            return [Part(5, _part(f"  cluster: {cluster.state}", "dim"))]
        if not cluster.connected:
            return [Part(0, _part(f"  cluster: {cluster.state}", "bold red"))]
        text = fmt.plain(f"  cluster {cluster.name}", limit=40)
        text.end = ""
        text.append(f": {cluster.nodes} node{'s' if cluster.nodes != 1 else ''}", style="bold")
        return [Part(5, text)]

    @staticmethod
    def _sessions_line(snap: EngineSnapshot) -> list[Part]:
        totals = snap.totals
        states = totals.states
        count = fmt.count(totals.sessions)
        parts: list[Part] = [
            Part(0, _part(f"{count} sessions:", "bold"), short=_part(f"{count} sess.:", "bold"))
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
                parts.append(Part(prio, _part(f" {n} {state}", style)))
        rate_in, rate_out = f"{fmt.rate(totals.rate_in)}/s", f"{fmt.rate(totals.rate_out)}/s"
        rates = [_pair(gap + "in ", rate_in) + _pair(" out ", rate_out) for gap in ("  ", " ")]
        parts.append(Part(3, rates[0], short=rates[1]))  # in and out, kept together
        # Chunks a user's cancel dropped were dropped on request: shown apart, not in red.
        cancelled = totals.tokens_lost_cancelled
        lost = totals.tokens_lost - cancelled
        style = "bold red" if lost else "bold green"
        parts.append(Part(0, _pair("  lost ", fmt.count(lost), style)))
        if cancelled:
            dropped = fmt.count(cancelled)
            parts.append(
                Part(
                    4,
                    _part(f" (+{dropped} dropped by cancel)", "dim"),
                    short=_part(f" (+{dropped} by cancel)", "dim"),
                )
            )
        return parts


class BackendsBar(Readout):
    """One line: each backend's permits in use against its limit, and sessions waiting.

    Narrow: the title and bars go first, then idle backends (the line then ends with `…`);
    names are shown as plain text, long ones cut shorter."""

    def show(self, snap: EngineSnapshot) -> None:
        """Redraw from `snap`."""
        parts: list[Part] = [_decor(9, _part("backends", "bold"))]
        caps = {cap.backend: cap for cap in snap.cluster.shared} if snap.cluster else {}
        for backend in snap.backends:
            fill = backend.in_use / backend.limit if backend.limit else 0.0
            busy = backend.in_use or backend.waiting
            in_use = f"{backend.in_use}/{backend.limit}"
            figures, short = (fmt.plain(f"  {backend.name} ", limit=n) for n in (26, 12))
            for text in (figures, short):
                text.end = ""
                text.append(in_use, style="bold")
            parts.append(Part(0 if busy else 3, figures, short=short))
            parts.append(
                _decor(6, _part(" " + fmt.bar(fill, 4), "yellow" if fill >= 1 else "green"))
            )
            if backend.in_use > backend.limit:
                # A lowered limit never preempts: say why in-use exceeds it for a while.
                parts.append(
                    Part(
                        7,
                        _part(" (over: running ones finish)", "dim"),
                        short=_part(" (over)", "dim"),
                    )
                )
            if backend.waiting:
                waiting = f" +{backend.waiting}"
                parts.append(
                    Part(
                        1,
                        _part(f"{waiting} waiting", "yellow"),
                        short=_part(f"{waiting} wait", "yellow"),
                    )
                )
            cap = caps.get(backend.name)
            if cap is not None and snap.cluster is not None:  # counted across the cluster
                nodes = snap.cluster.nodes
                across = f"{cap.in_use}/{cap.limit} across {nodes} node{'' if nodes == 1 else 's'}"
                parts.append(
                    Part(
                        2,
                        _pair(" cluster ", across),
                        short=_pair(" ", f"{cap.in_use}/{cap.limit} on {nodes}"),
                    )
                )
        self.update(Fitted(parts))


class SparkHistory:
    """The last minute of a few totals, one point per new snapshot (by `taken_at`).

    `columns` sums it up for a sparkline of a given width: one value per column of time,
    columns aligned to the clock, so between two snapshots only the newest column can
    change and a sparkline redraws only when something it shows changed.
    """

    SERIES: tuple[tuple[str, str, Callable[[EngineSnapshot], float], Callable[[float], str]], ...]
    SERIES = (
        ("rate", "chunks/s", lambda s: s.totals.rate_in, lambda v: f"{fmt.rate(v)}/s"),
        ("depth", "depth", lambda s: float(s.totals.depth), lambda v: fmt.count(int(v))),
        ("rss", "RSS", lambda s: float(s.process.rss), lambda v: fmt.nbytes(int(v))),
        (
            "qwait",
            "qwait p99",  # of the chunks processed in the last 10 s, not the whole run
            lambda s: s.totals.queue_wait_10s.p99 or 0.0,
            fmt.seconds,
        ),
    )

    def __init__(self, window: float = WINDOW, maxlen: int = 600) -> None:
        self.window = window
        self.times: deque[float] = deque(maxlen=maxlen)
        self.values: dict[str, deque[float]] = {
            key: deque(maxlen=maxlen) for key, *_ in self.SERIES
        }
        self._added = 0  # points ever added
        self.unknown = False  # the newest snapshot had no figures (see `add`)
        # (series, width) -> (index of the oldest column, columns, points folded in): the
        # columns are kept up to date point by point, not rebuilt on every sample.
        self._kept: dict[tuple[str, int], tuple[int, list[float | None], int]] = {}

    def add(self, snap: EngineSnapshot) -> bool:
        """Record `snap` if it is newer than the last one; True if it was recorded. A
        snapshot without figures (attached, every node down) is not a point: `unknown`
        says the newest figures are not current."""
        self.unknown = not has_figures(snap)
        if self.unknown or (self.times and snap.taken_at <= self.times[-1]):
            return False
        self.times.append(snap.taken_at)
        self._added += 1
        for key, _label, read, _show in self.SERIES:
            self.values[key].append(read(snap))
        while self.times and self.times[0] < snap.taken_at - self.window:
            self.times.popleft()
            for series in self.values.values():
                series.popleft()
        return True

    def columns(self, key: str, width: int) -> list[float | None]:
        """Series `key` as `width` columns of `window / width` seconds each (the largest
        value in each), oldest first, the newest on the right. Columns before the first
        point are None (nothing was measured then: drawn blank, so a young history grows in
        from the right); an empty column after it repeats the one before it (a sample the
        pacing skipped, not a gap in the data)."""
        if not self.times or width < 1:
            return []
        span = self.window / width
        oldest = int(self.times[-1] // span) - width + 1
        kept = self._kept.get((key, width))
        new = self._added - kept[2] if kept is not None else len(self.times)
        if kept is None or new > len(self.times):  # first time (or too far behind): all
            cols: list[float | None] = [None] * width
            new = len(self.times)
        else:
            moved = oldest - kept[0]  # columns that scrolled off on the left
            cols = kept[1][moved:] + [None] * min(moved, width) if moved else kept[1]
        times, values = self.times, self.values[key]
        for n in range(len(times) - new, len(times)):
            i = int(times[n] // span) - oldest
            if i >= 0:
                held = cols[i]
                value = values[n]
                cols[i] = value if held is None or value > held else held
        self._kept[(key, width)] = (oldest, cols, self._added)
        out: list[float | None] = []
        for col in cols:
            out.append(col if col is not None or not out else out[-1])
        return out


def bar_levels(values: Sequence[float | None], levels: int = 8) -> list[int | None]:
    """Each value as the bar (0 to levels-1) a one-line sparkline draws for it, scaled
    between the smallest and the largest value as Textual's Sparkline scales them; None
    (no data) stays None."""
    known = [value for value in values if value is not None]
    if not known:
        return [None] * len(values)
    low, high = min(known), max(known)
    extent = (high - low) or 1
    return [
        None if value is None else int((value - low) / extent * (levels - 1)) for value in values
    ]


class _BlankThenBars:
    """`blank` spaces, then Textual's sparkline bars in the rest of the one line."""

    def __init__(self, blank: int, bars: SparklineRenderable[float]) -> None:
        self.blank = blank
        self.bars = bars

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment(" " * self.blank)
        yield from console.render(self.bars, options.update_width(self.bars.width or 1))


class GappedSparkline(Sparkline):
    """A one-line sparkline whose leading columns without data (None) are left blank
    instead of drawn as bars: time before the first sample is not a measurement."""

    data = reactive[Sequence[float | None] | None](None)  # type: ignore[assignment]

    def render(self) -> WidgetRender:
        """Blank columns, then the bars Textual's Sparkline draws for the rest."""
        data: Sequence[float | None] = self.data or []
        blank = next((n for n, value in enumerate(data) if value is not None), len(data))
        width = self.size.width
        if blank >= len(data) or blank >= width:
            return Text(" " * width)
        bars = super().render()
        assert isinstance(bars, SparklineRenderable)
        bars.data = [value for value in data[blank:] if value is not None]
        bars.width = width - blank
        return _BlankThenBars(blank, bars)


class SparkPanel(Vertical):
    """One labelled sparkline per series of SparkHistory, with the latest value."""

    def compose(self) -> ComposeResult:
        """A row per series: name and value, then the sparkline."""
        for key, label, _read, _show in SparkHistory.SERIES:
            with Horizontal(classes="spark-row"):
                yield Label(label, classes="spark-name")
                yield Readout("-", id=f"spark-value-{key}", classes="spark-value")
                yield GappedSparkline([], id=f"spark-{key}", classes="spark")

    def column_seconds(self, history: SparkHistory) -> float | None:
        """Seconds of history one column of the sparklines spans (a sample more often shows
        nothing new), or None while they are hidden (a narrow screen)."""
        if not self.display:
            return None
        width = min(spark.size.width or SPARK_WIDTH for spark in self.query(Sparkline))
        return history.window / max(width, 1)

    def show(self, history: SparkHistory, *, values: bool = True) -> None:
        """Redraw the sparklines from `history` (each only if its columns changed), and with
        `values` the latest figure beside each."""
        for key, _label, _read, show in SparkHistory.SERIES:
            spark = self.query_one(f"#spark-{key}", GappedSparkline)
            # Equal data is a no-op for the reactive: no repaint, no frame. Bar heights, not
            # raw values, so a change too small to move a bar does not redraw either.
            spark.data = bar_levels(history.columns(key, spark.size.width or SPARK_WIDTH))
            if values:
                series = history.values[key]
                latest = show(series[-1]) if series and not history.unknown else "-"
                self.query_one(f"#spark-value-{key}", Readout).update(latest)
