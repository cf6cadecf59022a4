"""SluiceApp: the live Textual monitor of every session, with sliders that retune the engine.

The engine runs inside the app as a Textual worker on the same event loop; the UI never gets
a message per token. It pulls frozen snapshots on timers instead: totals at 1 Hz for the
header, backends and knobs, for the sparklines as often as a column of theirs can change
(never while hidden; tui/pacing.py), every session at 1 Hz (half a second later) for the
table; periodic work that lands just after a key press waits for the key's frame. Every
part repaints only when what it shows changed (a repaint is a frame Textual composes, most
of the app's CPU). Tests inject a snapshot source and a clock to freeze what is shown.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Input
from textual.widgets._footer import FooterKey

from sluice.engine.config import Config, load_config
from sluice.engine.engine import Engine, KnobError
from sluice.engine.session import describe_error
from sluice.engine.snapshot import EngineSnapshot
from sluice.engine.tuning import Recommendation
from sluice.tui import fmt, gcpolicy
from sluice.tui.calibrate import recommend_for
from sluice.tui.detail import DetailScreen
from sluice.tui.footer import SluiceFooter
from sluice.tui.help import HelpScreen
from sluice.tui.knobs import KNOB_BY_KEY, KnobDef, KnobRow, KnobsPanel
from sluice.tui.link import Link, LocalLink, Outcome, Workload
from sluice.tui.nodes import NodesBar
from sluice.tui.pacing import Pace
from sluice.tui.panels import BackendsBar, ProcessBar, SparkHistory, SparkPanel
from sluice.tui.readout import Readout
from sluice.tui.slider import Slider
from sluice.tui.source import SnapshotSource
from sluice.tui.table import SessionTable

__all__ = ["FilterBox", "SluiceApp", "Workload"]

PAUSE_WORDS = ("pause ", "resume")  # the footer's `p`: live, paused

SAVE_CONFIRM_S = 5.0  # a second `s` this soon after "changed on disk" overwrites the file
KEY_FIRST_S = 0.1  # periodic work this soon after a key press waits this long: the key first
TURNS_S = 0.01  # long enough for a key read during a long job to reach the app's queue


class FilterBox(Input):
    """The `/` filter box; Escape clears and hides it."""

    BINDINGS = [Binding("escape", "clear", "clear filter", show=False)]

    class Cleared(Message):
        """The user dropped the filter."""

    def action_clear(self) -> None:
        """Empty, hide, tell the app."""
        self.value = ""
        self.display = False
        self.post_message(self.Cleared())


TARGET_KEY = "w"  # attached to several nodes: where knob changes go (the frame names it)


class SluiceApp(App[int]):
    """The Sluice app. It reads and acts only through `app.link` (tui/link.py): its own
    engine (`app.engine`; `source` may replace what the screen reads), or with
    `link=RemoteLink(urls)` engines served elsewhere (`sluice attach`).

    `continuous` keeps the config's demo sessions going; `workload` is a user's coroutine
    function given the engine (`sluice monitor`). `live=False` starts no timers: the screen
    then changes only through `refresh_now()` (for frozen screenshots). The intervals are
    the sparklines', the header's (None: the table's) and the table's refresh periods in
    seconds.
    `relax_gc` freezes the objects alive once the screen is built and makes full garbage
    collections rarer (tui/gcpolicy.py): for the `sluice` command, not for tests or
    embedding.
    """

    CSS_PATH = "app.tcss"
    TITLE = "Sluice"
    BINDINGS = [
        Binding("s", "save", "save"),
        Binding("n", "add_sessions", "add"),
        Binding("c", "cancel_selected", "cancel"),
        Binding(TARGET_KEY, "knob_target", "knobs to"),
        # Two bindings on `p` so the footer says what the key will do now; words of one
        # width, so the footer's key can change its word in place (no new layout).
        Binding("p", "pause_display", PAUSE_WORDS[0]),
        Binding("p", "resume_display", PAUSE_WORDS[1]),
        Binding("slash", "filter", "filter"),
        Binding("o", "sort", "sort", show=False),
        Binding("t", "calibrate", "tune"),
        Binding("O", "sort_reverse", "reverse sort", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("tab", "switch_area", "table/knobs", show=False, priority=True),
        Binding("shift+tab", "switch_area", "table/knobs", show=False, priority=True),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]
    # Screen classes by width (app.tcss): under 180 columns the panels go under the table,
    # under 100 the sparklines are left out, under 80 the detail screen stacks too.
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (80, "-narrow"), (100, "-medium"), (180, "-wide")]

    def __init__(
        self,
        config_path: str | Path | None = None,
        *,
        config: Config | None = None,
        engine: Engine | None = None,
        source: SnapshotSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        continuous: bool = True,
        workload: Workload | None = None,
        live: bool = True,
        add_count: int = 10,
        max_rows: int = 200,
        fast_interval: float = 0.2,
        header_interval: float | None = None,
        table_interval: float = 1.0,
        relax_gc: bool = False,
        link: Link | None = None,
    ) -> None:
        super().__init__()
        if config is None:
            if link is not None:
                config = Config()
            else:
                config = engine.config if engine is not None else load_config(config_path)
        self.config = config
        default_path = config.path or Path("config.toml")
        self.config_path = Path(config_path) if config_path else default_path
        if link is None:
            link = LocalLink(
                engine if engine is not None else Engine(config),
                self.config_path,
                continuous=continuous,
                workload=workload,
                source=source,
            )
        self.link: Link = link
        self.source: SnapshotSource = link
        self.clock = clock
        self.started_at = clock()
        self.live = live
        self.add_count = add_count
        self.max_rows = max_rows
        self.fast_interval = fast_interval
        self.header_interval = header_interval
        self.table_interval = table_interval
        self.relax_gc = relax_gc
        self._gc_thresholds: tuple[int, int, int] | None = None
        self._shown_target: tuple[str | None, str] | None = None  # under the knobs now
        self._node_column = False  # the table's node column was put in
        self._knobs_baselined = False  # attached: the knobs first seen were marked saved
        self.paused = False
        self.history = SparkHistory()
        # The newest sample (perhaps of totals only), and the newest with every session.
        self.latest: EngineSnapshot = self.source.snapshot()
        self.latest_full: EngineSnapshot = self.latest
        self.history.add(self.latest)
        self._table_at: float | None = None  # when the snapshot the table shows was taken
        # When the newest snapshot before the last knob change was taken: its knobs are
        # stale, so the sliders must not follow them back. (Times, not the snapshots: a
        # snapshot of 1,000 sessions kept alive is work for every garbage collection.)
        self._knobs_stale_at: float | None = None
        self.knob_changes = 0
        self._quit_asked = False  # `q` with unsaved knobs warned once; the next `q` quits
        self.last_recommendation: Recommendation | None = None
        self._shut = False
        self._stopping: asyncio.Task[None] | None = None
        self._save_refused_at = -math.inf  # when `s` last met a file changed on disk
        self._fast_pace = Pace()  # the sparklines' samples and frames (tui/pacing.py)
        self._sampled_at = -math.inf  # when the newest sample was taken (time.perf_counter)
        self._key_at = -math.inf  # when the last key arrived (time.perf_counter)

    @property
    def engine(self) -> Engine:
        """The app's own engine (RuntimeError when attached to served engines)."""
        if isinstance(self.link, LocalLink):
            return self.link.engine
        raise RuntimeError("attached to served engines: there is no engine in this process")

    def action_help_quit(self) -> None:
        """Ctrl+C (Textual's own toast, which is markup, would show its tags raw here)."""
        self.notify("Press q (or ctrl+q) to quit the app", title="Do you want to quit?")

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast. Plain text unless `markup=True`: messages carry session ids, paths and
        error text from outside, which must show as written (controls escaped)."""
        if not markup:
            message = fmt.clean(message, one_line=False, limit=2000)
            title = fmt.clean(title, limit=200)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header lines, then the table beside sparklines and knobs, then the footer."""
        yield ProcessBar(id="process")
        if self.link.remote:
            yield NodesBar(id="nodes")
        yield BackendsBar(id="backends")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield FilterBox(placeholder="filter: id, backend, state or error", id="filter")
                yield SessionTable(max_rows=self.max_rows, id="sessions")
                yield Readout("", id="table-note")
            with Vertical(id="right"):
                spark = SparkPanel(id="sparks")
                spark.border_title = "last minute"
                yield spark
                yield KnobsPanel(self.latest.knobs, self.apply_knob, id="knobs")
        yield SluiceFooter()

    def on_mount(self) -> None:
        """Start the engine worker and the refresh timers; draw the first frame."""
        self.query_one("#filter", Input).display = False
        if self.relax_gc:
            self._gc_thresholds = gcpolicy.relax()  # before the engine makes its sessions
        self.run_engine()
        self._draw_fast()
        self._draw_table()
        table = self.query_one("#sessions", SessionTable)
        table.hold_repaint = self.key_hold  # a key's frame first, rows after it
        table.focus()
        if self.live:
            self._every(self.header_interval or self.table_interval, self._tick_header, "header")
            # A quarter of its period later: the sparklines' frame is not the header's (the
            # two together would be a frame of the whole screen between them).
            self.set_timer(
                self.fast_interval / 4,
                partial(self._every, self.fast_interval, self._tick_fast, "fast-refresh"),
            )
            # Half a period later than the others: the table's work (a sample of every
            # session, its rows, their frame) never lands in the same moment as theirs.
            self.set_timer(
                self.table_interval / 2,
                partial(self._every, self.table_interval, self._tick_table, "table-refresh"),
            )

    def _every(self, interval: float, work: Callable[[], None], name: str) -> None:
        """Do `work` every `interval` seconds, as a message of the app's own queue: a key
        pressed before it is handled first (a timer's callback would run ahead of keys),
        and its effect drawn first too (`_after_keys`)."""
        self.set_interval(interval, partial(self.call_later, self._after_keys, work), name=name)

    def _after_keys(self, work: Callable[[], None]) -> None:
        """Do `work` now, or KEY_FIRST_S later if a key just arrived: the key's frame (one
        slider line, the header's PAUSED) is not kept waiting behind a sample of every
        session and a table frame. Put off once, so held keys cannot starve it."""
        if time.perf_counter() - self._key_at < KEY_FIRST_S:
            self.set_timer(KEY_FIRST_S, partial(self.call_later, work))
        else:
            work()

    def key_hold(self) -> float:
        """Seconds until periodic work may join the frames of the last key press (0: now)."""
        return max(0.0, KEY_FIRST_S - (time.perf_counter() - self._key_at))

    async def on_event(self, event: events.Event) -> None:
        """Note when a key arrives (see `_after_keys`), then handle it as usual."""
        if isinstance(event, events.Key):
            self._key_at = time.perf_counter()
        await super().on_event(event)

    # -- the engine ------------------------------------------------------------------------

    @work(exclusive=True, group="engine", exit_on_error=True)
    async def run_engine(self) -> None:
        """The link's lifetime: the app's own engine started, its demo kept going or the
        workload run, and closed when the app ends (served engines: followed)."""
        try:
            await self.link.run(self._report)
        finally:
            await self.shutdown_engine()

    def _report(self, title: str, message: str) -> None:
        self.notify(message, title=title, severity="error", timeout=30)

    async def shutdown_engine(self) -> None:
        """Cancel every session and close every stream (idempotent); attached, close the
        links only (the served engines keep running)."""
        if self._shut:
            return
        self._shut = True
        await self.link.aclose()

    async def on_unmount(self) -> None:
        """Whatever ended the app, leave no session running (and the collector as it was)."""
        await self.shutdown_engine()
        if self._gc_thresholds is not None:
            gcpolicy.restore(self._gc_thresholds)
            self._gc_thresholds = None

    # -- refresh ---------------------------------------------------------------------------

    def _sample(self, *, sessions: bool) -> EngineSnapshot:
        """Take a snapshot (with every session, or totals only) and record it."""
        snap = self.source.snapshot(sessions=sessions)
        self._sampled_at = time.perf_counter()
        self.latest = snap
        if sessions:
            self.latest_full = snap
        self.history.add(snap)
        return snap

    def _tick_fast(self) -> None:
        """Sample the totals and redraw the sparklines (those whose columns changed) and
        their figures: as often as a column can show something new (half a column's span;
        never while they are hidden) and within the sample's share of a core."""
        if not self.is_running:
            return  # shutting down: the widgets are being taken apart
        sparks = self.query_one("#sparks", SparkPanel)
        span = sparks.column_seconds(self.history)
        if span is None or not self._fast_pace.due(max(span / 2, self.fast_interval)):
            return
        with self._fast_pace.run():
            if time.perf_counter() - self._sampled_at > span / 4:  # else the header's will do
                self._sample(sessions=False)
            if not self.paused:
                sparks.show(self.history)

    def _tick_header(self) -> None:
        """The header from a fresh sample of the totals (its own unless the sparklines'
        took one within `fast_interval`); the sparklines keep their own frame."""
        if self.is_running and not self.paused:
            if time.perf_counter() - self._sampled_at > self.fast_interval:
                self._sample(sessions=False)
            self._draw_fast(sparks=False)

    def _tick_table(self) -> None:
        """Sample every session, then (once keys already waiting got their turn) the table.

        The header has its own moment: a frame repaints the rectangle around everything
        that changed, and the header and the table together span the whole screen (the
        knobs and sparklines too), while each alone is a strip or the table's own area.
        """
        if self.is_running and not self.paused:
            self._sample(sessions=True)
            # An unchanged snapshot (a frozen source, a stalled engine) needs no redraw.
            if self.latest_full.taken_at != self._table_at:
                # A few loop turns later, not in the same one: a key that arrived during
                # the sample (10-30 ms at 1,000 sessions) is handled and drawn first.
                self.set_timer(
                    TURNS_S, partial(self.call_later, self._after_keys, self._draw_table_now)
                )

    def _draw_fast(self, *, sparks: bool = True) -> None:
        """The header, backends, the knobs and (with `sparks`) the sparklines with their
        figures. Without them a frame of the header is the header's strip, not the screen
        from the header down to the sparklines."""
        snap = self.latest
        merged = sum(1 for node in self.link.nodes() if node.live)
        self.query_one("#process", ProcessBar).show(
            snap, uptime=self.clock() - self.started_at, paused=self.paused, nodes=merged
        )
        self.query_one("#backends", BackendsBar).show(snap)
        if sparks:
            self.query_one("#sparks", SparkPanel).show(self.history)
        knobs = self.query_one("#knobs", KnobsPanel)
        if self._knobs_stale_at is None or snap.taken_at > self._knobs_stale_at:
            knobs.sync(snap.knobs)
            knobs.show_auto(snap.autotune)
        self._mark_unused_knobs(knobs, snap)
        if self.link.remote:
            self._draw_nodes(knobs)

    def _draw_nodes(self, knobs: KnobsPanel) -> None:
        """Attached: each node's line, which knobs differ between the target's nodes, and
        where a knob change goes (under the knobs)."""
        link = self.link
        nodes = link.nodes()
        self.query_one("#nodes", NodesBar).show(nodes, self.clock(), link.target, link.registry())
        table = self.query_one("#sessions", SessionTable)
        if len(nodes) > 1 and not self._node_column:
            self._node_column = True  # once: the user may take it away with `C`
            table.set_columns((*table.chosen, "node"))
        if not self._knobs_baselined and any(n.status.state == "connected" for n in nodes):
            # What the nodes run with when first seen counts as saved: only changes made
            # from here are marked until `s`.
            self._knobs_baselined = True
            knobs.sync(self.latest.knobs)
            knobs.mark_saved(self.latest.knobs)
        mixed = link.mixed()
        for row in knobs.rows.values():
            row.set_mixed(row.knob.spec.name in mixed)
        shown = (link.target, link.target_label() if len(nodes) > 1 else "")
        if shown != self._shown_target:
            self._shown_target = shown
            knobs.border_subtitle = f"to {shown[1]} ({TARGET_KEY}: switch)" if shown[1] else ""

    def _mark_unused_knobs(self, knobs: KnobsPanel, snap: EngineSnapshot) -> None:
        """Dim the knobs that reach none of the sessions (the link knows which)."""
        for row in knobs.rows.values():
            row.set_unused(self.link.unused_reason(row.knob, self.latest_full))

    def _draw_table(self) -> None:
        table = self.query_one("#sessions", SessionTable)
        self._table_at = self.latest_full.taken_at
        with self.batch_update(), table.deferred_repaint():
            view = table.show(self.latest_full.sessions)
        self.query_one("#table-note", Readout).update(table.note(view))

    def refresh_now(self) -> None:
        """Pull one snapshot and redraw everything now (paused or not)."""
        self._sample(sessions=True)
        self._draw_fast()
        self._draw_table()

    # -- knobs -----------------------------------------------------------------------------

    def apply_knob(self, knob: KnobDef, value: float) -> bool:
        """A slider moved or a value was typed: hand it to the engine(s) at once."""
        typed = int(value) if knob.spec.integer else value
        try:
            self.link.set_knobs({knob.spec.name: typed}, partial(self._knob_sent, knob))
        except (KnobError, KeyError) as exc:
            self._knob_refused(knob, str(exc))
            return False
        self.knob_changes += 1
        self._knobs_stale_at = self.latest.taken_at
        self._quit_asked = False  # a new change: `q` warns again
        return True

    def _knob_refused(self, knob: KnobDef, message: str) -> None:
        self.notify(message, title="value refused", severity="error")
        row = self.query_one(f"#row-{knob.key}", KnobRow)
        row.slider.pending = False
        row.sync(knob.read(self.link.snapshot(sessions=False).knobs))

    def _knob_sent(self, knob: KnobDef, outcomes: Sequence[Outcome]) -> None:
        """A served node refused a change (or could not be reached): say which and why."""
        for outcome in outcomes:
            if not outcome.ok and self.is_running:
                self._knob_refused(knob, f"{outcome.node}: {outcome.message}")

    # -- actions ---------------------------------------------------------------------------

    def action_save(self) -> None:
        """Write the knobs to the config file (attached: each node to its own), keeping
        every key they do not cover. A file changed on disk since it was loaded is kept;
        `s` again within SAVE_CONFIRM_S overwrites it."""
        # A slider key pressed just before `s` may have its move still in the row's queue.
        self.query_one("#knobs", KnobsPanel).commit_pending()
        now = self.clock()
        overwrite = now - self._save_refused_at <= SAVE_CONFIRM_S
        self._save_refused_at = -math.inf
        values = dict(self.link.snapshot(sessions=False).knobs)
        self.link.save(overwrite, partial(self._saved, now, values))

    def _saved(
        self, asked_at: float, values: dict[str, object], outcomes: Sequence[Outcome]
    ) -> None:
        """Each engine's answer to `s`: one toast (a line per node when attached)."""
        if not self.is_running:
            return
        if not outcomes:
            self.notify("no node attached: nothing saved", severity="warning")
            return
        if any(o.changed_on_disk for o in outcomes):
            self._save_refused_at = asked_at
        if all(o.ok for o in outcomes):
            saved = outcomes[0].saved if len(outcomes) == 1 else None
            self.query_one("#knobs", KnobsPanel).mark_saved(saved or values)
        lines = []
        for o in outcomes:
            message = o.message
            if o.changed_on_disk:
                message = f"{message}. Press s again within {SAVE_CONFIRM_S:g} s to overwrite it."
            lines.append(f"{o.node}: {message}" if o.node else message)
        text = "\n".join(lines)
        if all(o.ok for o in outcomes):
            self.notify(text, title="knobs saved")
        elif any(o.changed_on_disk for o in outcomes):
            self.notify(text, title="not saved", severity="warning", timeout=10)
        else:
            self.notify(text, title="not saved", severity="error", timeout=10)

    def action_add_sessions(self) -> None:
        """`add_count` more demo sessions: while the demo is kept running, its count (the
        `demo sess.` knob) goes up, so the top-up keeps them; otherwise they run once."""
        if self.link.closed:
            return
        self.link.add_sessions(self.add_count, self._added)

    def _added(self, outcomes: Sequence[Outcome]) -> None:
        if not self.is_running:
            return
        for o in outcomes:
            message = f"{o.node}: {o.message}" if o.node else o.message
            self.notify(message, severity="information" if o.ok else "warning")
        if any(o.ok for o in outcomes):
            self._knobs_stale_at = None  # show the new count from the next snapshot
            snap = self.link.snapshot(sessions=False)
            row = self.query_one("#knobs", KnobsPanel).row(KNOB_BY_KEY["sessions"].key)
            row.sync(KNOB_BY_KEY["sessions"].read(snap.knobs))

    def cancel_session(self, session_id: str) -> None:
        """Cancel one session (by its row key); a toast says what happened, once its engine
        answered."""
        self.link.cancel(session_id, self._cancelled)

    def _cancelled(self, outcomes: Sequence[Outcome]) -> None:
        if not self.is_running:
            return
        for o in outcomes:
            message = f"{o.node}: {o.message}" if o.node else o.message
            self.notify(message, severity="information" if o.ok else "warning")

    def action_knob_target(self) -> None:
        """`w`: knob changes go to every attached node, or to one node (each in turn)."""
        if not self.link.remote:
            self.notify("the app runs one engine: knob changes go to it")
            return
        self.link.next_target()
        self._draw_fast()
        self.notify(f"knob changes now go to {self.link.target_label()}")

    def action_cancel_selected(self) -> None:
        """Cancel the session under the table's cursor."""
        session_id = self.query_one("#sessions", SessionTable).selected_id
        if session_id is None:
            self.notify("no session selected", severity="warning")
            return
        self.cancel_session(session_id)

    def action_calibrate(self) -> None:
        """Time the consumer and move maxsize and batch_max to the recommendation."""
        reason = self.link.unsupported("calibrate")
        if reason is not None:
            self.notify(reason, title="not available", severity="warning", timeout=10)
            return
        self.notify("timing the consumer...", title="calibrating")
        self.calibrate_knobs()

    @work(exclusive=True, group="calibrate", exit_on_error=False)
    async def calibrate_knobs(self) -> None:
        """The calibration itself, off the UI's back (the consumer calls take real time)."""
        try:
            rec, timing = await recommend_for(self.engine)
        except Exception as exc:
            self.notify(describe_error(exc), title="calibration failed", severity="error")
            return
        self.last_recommendation = rec
        for key, value in (("maxsize", rec.maxsize), ("batch_max", rec.batch_max)):
            self.query_one(f"#knob-{key}", Slider).set_value(value, user=True)
        notes = " ".join(rec.notes)
        # Timed inside the running app: a busy event loop makes calls look slower than
        # `sluice calibrate` measures them alone, so say what was measured.
        self.notify(
            f"maxsize {rec.maxsize}, batch_max {rec.batch_max}: consumer call mean "
            f"{timing.mean * 1000:.1f} ms over {timing.calls} calls, timed in the running app; "
            f"ceil({rec.target_buffer_ms:g} ms / {timing.mean * 1000:.1f} ms). {notes}".strip(),
            title="calibrated",
            timeout=15,
        )

    def action_toggle_pause(self) -> None:
        """Freeze or resume the display; the engine keeps running either way."""
        self.paused = not self.paused
        # The header alone first, a strip: with the footer's word (the bottom line) or the
        # sparklines in the same frame, that frame would span the whole screen.
        self._draw_fast(sparks=False)
        self.call_after_refresh(self._show_pause_word)
        if not self.paused:
            # The header's change first; the table (a bigger frame) right after it.
            self.set_timer(0.02, partial(self._draw_table_now, sample=True))

    def _draw_table_now(self, *, sample: bool = False) -> None:
        """The table from the newest sample of every session (a fresh one with `sample`),
        unless paused meanwhile."""
        if self.is_running and not self.paused:
            if sample:
                self._sample(sessions=True)
            self._draw_table()

    def _show_pause_word(self) -> None:
        """The footer's `p` says the other word now. In place: rebuilding the footer (what
        refresh_bindings does) lays out the whole screen, 40 ms before the key shows."""
        word = PAUSE_WORDS[self.paused]
        for key in self.query(FooterKey):
            if key.key == "p":
                key.description = word
                key.refresh()
                return
        self.refresh_bindings()  # no footer key to change (a narrow footer): rebuild it

    def action_pause_display(self) -> None:
        """`p` while live: freeze the display."""
        self.action_toggle_pause()

    def action_resume_display(self) -> None:
        """`p` while paused: show live figures again."""
        self.action_toggle_pause()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer (and show in the footer) only the `p` binding that applies now."""
        if action == "pause_display":
            return not self.paused
        if action == "resume_display":
            return self.paused
        if action == "knob_target":
            return self.link.remote
        return True

    def action_filter(self) -> None:
        """Show the filter box and focus it."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the user types."""
        if event.input.id == "filter":
            self.query_one("#sessions", SessionTable).filter_text = event.value.strip().lower()
            self._draw_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter box: keep the filter, go back to the table."""
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.display = False
            self.query_one("#sessions", SessionTable).focus()

    def action_clear_filter(self) -> None:
        """Escape on the table: drop the filter (also after Enter kept it)."""
        box = self.query_one("#filter", FilterBox)
        if box.value or box.display:
            box.action_clear()

    def on_filter_box_cleared(self, _event: FilterBox.Cleared) -> None:
        """Escape in the filter box: no filter, back to the table."""
        self.query_one("#sessions", SessionTable).filter_text = ""
        self._draw_table()
        self.query_one("#sessions", SessionTable).focus()

    def action_sort(self) -> None:
        """Sort the table by the next column."""
        self.query_one("#sessions", SessionTable).cycle_sort()
        self._draw_table()

    def action_sort_reverse(self) -> None:
        """Flip the table's order."""
        self.query_one("#sessions", SessionTable).cycle_sort(reverse=True)
        self._draw_table()

    def on_session_table_view_changed(self, event: SessionTable.ViewChanged) -> None:
        """A header click, `L`, the column chooser or a resize changed the table: redraw at
        once (paused: the same rows, re-sorted or re-laid out)."""
        if not self.paused:
            self._draw_table()
            return
        with self.batch_update():
            view = event.table.redraw()
        self.query_one("#table-note", Readout).update(event.table.note(view))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a session opens its detail screen."""
        if event.row_key.value is not None:
            self.push_screen(DetailScreen(event.row_key.value, self.source, self.cancel_session))

    def action_switch_area(self) -> None:
        """Tab: jump between the session table and the knobs (Up/Down move among knobs).

        The slider last used gets focus back, so Tab, a few key presses, Tab returns to
        the table without walking through every slider. In a text box Tab moves on as usual.
        """
        focused = self.focused
        if isinstance(focused, Input) or self.screen is not self.screen_stack[0]:
            self.screen.focus_next()
            return
        knobs = self.query_one("#knobs", KnobsPanel)
        if isinstance(focused, Slider):
            knobs.remember(focused)
            self.query_one("#sessions", SessionTable).focus()
            return
        knobs.slider_to_return_to().focus()

    def action_help(self) -> None:
        """Show the help screen."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Cancel every session, close every stream, then leave; with unsaved knobs, warn
        once first (a second `q` quits, `s` saves). Attached: close the links and leave."""
        unsaved = self.query_one("#knobs", KnobsPanel).unsaved
        # Attached, the knobs stay live on the served engines: quitting loses nothing.
        if unsaved and not self._quit_asked and not self.link.closed and not self.link.remote:
            self._quit_asked = True
            self.notify(
                f"unsaved knobs: {', '.join(unsaved)}\nPress q again to quit without "
                "saving, or s to save them.",
                title="quit?",
                severity="warning",
                timeout=10,
            )
            return
        await self._quit(0)

    async def _quit(self, return_code: int) -> None:
        await self.shutdown_engine()  # bounded by the engine's shutdown grace
        self.exit(return_code=return_code)

    def stop(self, return_code: int) -> None:
        """A stop signal arrived: shut the engine down and exit the app normally (so Textual
        leaves the alternate screen and turns mouse tracking off) with `return_code`. The
        signal handlers that call this are installed by `sluice.cli.app.run_app`."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self._quit(return_code), name="sluice-stop"
            )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The app's own actions in the command palette, after Textual's."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Save knobs", "Write the knobs to the config file", self.action_save)
        yield SystemCommand(
            "Add demo sessions",
            f"Start {self.add_count} more demo sessions",
            self.action_add_sessions,
        )
        yield SystemCommand(
            "Cancel selected session",
            "Cancel the session under the cursor",
            self.action_cancel_selected,
        )
        yield SystemCommand(
            "Pause / resume display", "The engine keeps running", self.action_toggle_pause
        )
        yield SystemCommand("Filter sessions", "Filter the table", self.action_filter)
        yield SystemCommand(
            "Calibrate", "Time the consumer; set maxsize and batch_max", self.action_calibrate
        )
        yield SystemCommand("Help", "Keys and knobs", self.action_help)
