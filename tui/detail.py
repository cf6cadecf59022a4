"""The detail screen of one session: timeline, latency percentiles, buffer, error, text tail.

Opened with Enter on a table row; it re-reads `source.detail(id)` on a timer while open.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from sluice.engine.histogram import Percentiles
from sluice.engine.snapshot import STOP_WARNINGS, SessionDetail, SessionSnapshot
from sluice.tui import fmt
from sluice.tui.columns import stop_style
from sluice.tui.source import SnapshotSource

__all__ = [
    "DetailScreen",
    "Summary",
    "Timeline",
    "agent_line",
    "render_latencies",
    "render_summary",
    "render_timeline",
]

LONG = 4000  # characters of outside text (prompt, error, tail) shown at most
NAME = 300  # ... of an id, a backend's or a model's name


def render_timeline(s: SessionSnapshot, width: int = 40) -> Text:
    """Slot wait, time to first token, then streaming split into flowing and stalled time."""
    slot = s.slot_wait if s.slot_wait is not None else s.elapsed
    ttft = s.ttft or 0.0
    stall = min(s.stall, max(s.streaming_time - ttft, 0.0))
    flowing = max(s.streaming_time - ttft - stall, 0.0)
    parts = [
        ("slot wait", slot, "yellow"),
        ("ttft", ttft, "blue"),
        ("flowing", flowing, "green"),
        ("stalled", stall, "red"),
    ]
    total = sum(p[1] for p in parts) or 1.0
    text = Text(no_wrap=True)
    used = 0
    for i, (_name, value, style) in enumerate(parts):
        cells = width - used if i == len(parts) - 1 else round(value / total * width)
        cells = max(0, min(cells, width - used))
        text.append("█" * cells, style=style)
        used += cells
    text.append("\n")
    for name, value, style in parts:
        text.append("\n■ ", style=style)
        text.append(f"{name:<10}{fmt.seconds(value):>8}")
    text.append("\n(stalled: producer blocked on a full buffer)", style="dim")
    return text


def render_latencies(s: SessionSnapshot) -> Table:
    """A small table of the session's latency percentiles."""
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for header in ("metric", "n", "p50", "p90", "p99", "max"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    rows: list[tuple[str, Percentiles]] = [
        ("itl", s.itl),
        ("queue_wait", s.queue_wait),
        ("token_age", s.token_age),
        ("consumer_call", s.consumer_call),
    ]
    for name, p in rows:
        table.add_row(
            name,
            str(p.count),
            fmt.seconds(p.p50),
            fmt.seconds(p.p90),
            fmt.seconds(p.p99),
            fmt.seconds(p.max),
        )
    return table


def _packed(pairs: list[Text], width: int | None) -> Text:
    """Figures (each a label with its value) two spaces apart, a new line where the next
    would pass `width` (None: one line), so a label is never parted from its value."""
    out = Text()
    used = 0
    for pair in pairs:
        if used and width is not None and used + 2 + pair.cell_len > width:
            out.append("\n")
            used = 0
        elif used:
            out.append("  ")
            used += 2
        out.append_text(pair)
        used += pair.cell_len
    return out


def render_summary(detail: SessionDetail, width: int | None = None) -> Text:
    """Who, what state, how it ended, buffer figures and the prompt (all outside text plain);
    with `width`, the figures are laid out in lines of that many cells, each whole."""
    s = detail.snapshot
    text = Text()
    text.append_text(fmt.plain(s.id, "bold", one_line=False, limit=NAME))
    text.append("  ")
    text.append_text(fmt.plain(s.backend, one_line=False, limit=NAME))
    text.append("  ")
    text.append(s.state, style="bold")
    if detail.model:
        text.append("  model ")
        text.append_text(fmt.plain(detail.model, one_line=False, limit=NAME))
    reason = detail.stop_reason or s.stop_reason
    if reason:
        warning = STOP_WARNINGS.get(reason)
        style = stop_style(reason)  # a truncated or refused answer must not look complete
        text.append("  ")
        text.append("stop ", style=style)
        text.append_text(fmt.plain(reason, style, one_line=False, limit=NAME))
        if warning is not None:
            text.append(f": answer {warning}", style=style)
    if s.attempts > 1:
        text.append(f"  {s.attempts} attempts", style="yellow")
    agent = agent_line(s)
    if agent:
        text.append("\n" + agent)
    buffer = [
        f"buffer {s.depth}/{s.maxsize if s.maxsize else '∞'}",
        f"high water {s.high_water}",
        f"buffered {fmt.nbytes(s.buffered_bytes)}",
        f"held by session {fmt.nbytes(s.memory_bytes)}",
    ]
    text.append("\n")
    text.append_text(_packed([Text(pair) for pair in buffer], width))
    lost = Text("lost ")
    if s.state == "cancelled":
        # dropped because someone cancelled the session: not a fault, so not red
        lost.append(f"{s.tokens_lost} (cancelled)" if s.tokens_lost else "0")
    else:
        lost.append(str(s.tokens_lost), style="bold red" if s.tokens_lost else "")
    flow = [
        Text(f"tokens in {s.tokens_in}"),
        Text(f"out {s.tokens_out}"),
        lost,
        Text(f"rate in {fmt.rate(s.rate_in)}/s out {fmt.rate(s.rate_out)}/s"),
        Text(f"stall {fmt.pct(s.stall_ratio)}"),
        Text(f"elapsed {fmt.seconds(s.elapsed)}"),
    ]
    text.append("\n")
    text.append_text(_packed(flow, width))
    text.append("\nprompt: ", style="dim")
    text.append_text(fmt.plain(detail.prompt, one_line=False, limit=LONG))
    return text


def agent_line(s: SessionSnapshot) -> str:
    """What an agent session's result said (turns, cost, usage) and the deltas it counted
    but did not deliver as text; empty for other backends."""
    if s.turns is None and s.cost_usd is None and s.tool_deltas is None:
        return ""
    parts = []
    if s.turns is not None:
        parts.append(f"turns {s.turns}")
    if s.cost_usd is not None:
        parts.append(f"cost ${s.cost_usd:.4f}")
    if s.input_tokens is not None or s.output_tokens is not None:
        parts.append(f"usage in {s.input_tokens or 0} / out {s.output_tokens or 0} tokens")
    parts.append(f"tool deltas {s.tool_deltas or 0}  thinking deltas {s.thinking_deltas or 0}")
    return "agent: " + "  ".join(parts)


class Summary(Static):
    """The session's summary (`render_summary`), laid out at the widget's own width."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.detail: SessionDetail | None = None

    def show(self, detail: SessionDetail) -> None:
        """Redraw for `detail`."""
        self.detail = detail
        self.update(render_summary(detail, self.content_size.width or None))

    def on_resize(self) -> None:
        """A new width lays the figures out again."""
        if self.detail is not None:
            self.update(render_summary(self.detail, self.content_size.width or None))


class Timeline(Static):
    """The session's timeline bar, drawn to the widget's own width."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session: SessionSnapshot | None = None

    def show(self, session: SessionSnapshot) -> None:
        """Redraw for `session`."""
        self.session = session
        self.refresh(layout=True)

    def render(self) -> Text:
        """The bar and its legend at the current width."""
        if self.session is None:
            return Text("")
        return render_timeline(self.session, max(10, self.content_size.width))


class DetailScreen(Screen[None]):
    """One session in full; Escape goes back."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "back"),
        Binding("c", "cancel_session", "cancel"),
        # The main screen's keys still work here but stay out of the footer, so that at 80
        # columns it shows what matters on this screen (back, cancel, help, quit).
        Binding("s", "app.save", "save", show=False),
        Binding("n", "app.add_sessions", "add", show=False),
        Binding("p", "app.toggle_pause", "pause", show=False),
        Binding("t", "app.calibrate", "tune", show=False),
        Binding("slash", "ignore", "filter", show=False),
    ]

    def action_ignore(self) -> None:
        """Keys that mean nothing on this screen (the filter belongs to the table)."""

    def __init__(
        self, session_id: str, source: SnapshotSource, cancel: Callable[[str], object]
    ) -> None:
        super().__init__(id="detail")
        self.session_id = session_id
        self.source = source
        self.cancel = cancel

    def compose(self) -> ComposeResult:
        """Summary and timeline up top, latencies beside the error, then the text tail."""
        yield Summary(id="detail-summary")
        with Horizontal(id="detail-mid"):
            yield Timeline(id="detail-timeline")
            yield Static(id="detail-latency", markup=False)
        yield Static(id="detail-error", markup=False)
        box = VerticalScroll(id="detail-tail-box")
        box.border_title = "text processed so far (tail)"
        with box:
            yield Static(id="detail-tail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Draw now and then once a second."""
        self.refresh_detail()
        if getattr(self.app, "live", True):
            self.set_interval(1.0, self.refresh_detail)

    def refresh_detail(self) -> None:
        """Re-read the session and redraw."""
        detail = self.source.detail(self.session_id)
        if detail is None:
            gone = fmt.plain(self.session_id, "bold", one_line=False, limit=NAME)
            gone.append(": no longer tracked (finished sessions are pruned)")
            summary = self.query_one("#detail-summary", Summary)
            summary.detail = None  # a resize must not bring the old figures back
            summary.update(gone)
            return
        s = detail.snapshot
        self.query_one("#detail-summary", Summary).show(detail)
        self.query_one("#detail-timeline", Timeline).show(s)
        self.query_one("#detail-latency", Static).update(render_latencies(s))
        error = self.query_one("#detail-error", Static)
        if detail.error_detail:
            message = Text("error: ", style="bold red")
            message.append_text(
                fmt.plain(detail.error_detail, "bold red", one_line=False, limit=LONG)
            )
            error.update(message)
        else:
            error.update(Text("no error", style="dim"))
        if detail.tail:
            tail = fmt.plain(detail.tail[-LONG:], one_line=False)
        else:
            tail = Text("(nothing processed yet)", style="dim")
        self.query_one("#detail-tail", Static).update(tail)

    def action_cancel_session(self) -> None:
        """Cancel this session."""
        self.cancel(self.session_id)
        self.refresh_detail()
