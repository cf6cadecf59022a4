"""The session table as a user drives it: columns that fit, sorting, the cursor, the filter,
the column chooser and how a response ended."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.widgets import SelectionList

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot, SessionSnapshot
from sluice.tui.app import SluiceApp
from sluice.tui.chooser import ColumnChooser
from sluice.tui.columns import COLUMNS, column, fit, ordered
from sluice.tui.readout import Readout
from sluice.tui.source import FrozenSource
from sluice.tui.table import SessionTable

from . import frozen
from .helpers import screen_text

# the README's promise: depth, memory and latency per session
NEEDED = ("depth/max", "mem", "ttft", "qw p50", "qw p99", "age p99")


def frozen_app(snapshots: list[EngineSnapshot]) -> SluiceApp:
    """The app over prepared snapshots; `refresh_now()` shows the next one."""
    source = FrozenSource(snapshots, frozen.details(snapshots[-1]))
    return SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=source,
        clock=frozen.FrozenClock(),
        continuous=False,
        live=False,
    )


def with_sessions(snap: EngineSnapshot, sessions: list[SessionSnapshot]) -> EngineSnapshot:
    """`snap` showing `sessions` instead."""
    return dataclasses.replace(snap, sessions=tuple(sessions))


def table_of(app: SluiceApp) -> SessionTable:
    return app.query_one("#sessions", SessionTable)


def rows_on_screen(app: SluiceApp) -> dict[str, str]:
    """Session id -> the screen line of its row, for the rows on screen."""
    table = table_of(app)
    lines = screen_text(app).splitlines()
    top = table.region.y + 1  # under the header
    return {
        table.row_ids()[row]: lines[top + row - round(table.scroll_y)]
        for row in table.visible_rows()
    }


# -- columns -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(120, 40), (160, 48), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_depth_memory_and_latency_show_whole_at_120_columns_and_wider(
    size: tuple[int, int],
) -> None:
    snap = frozen.snapshot(3)
    app = frozen_app([snap])
    async with app.run_test(size=size) as pilot:
        app.refresh_now()
        await pilot.pause()
        table = table_of(app)
        shown = [c.label for c, _ in table.shown]
        assert set(NEEDED) <= set(shown)
        assert not table.left_out  # every default column: what the README names
        assert shown[-1] == "error"  # last: it truncates, it never pushes a column away
        assert table.virtual_size.width <= table.scrollable_content_region.width  # no scrolling
        header = screen_text(app).splitlines()[table.region.y]
        for label in shown:
            assert label in header
        by_id = {s.id: s for s in snap.sessions}
        for session_id, line in rows_on_screen(app).items():
            for col, _ in table.shown[:-1]:
                assert col.text(by_id[session_id]).strip() in line
        failed = next(s for s in snap.sessions if s.error)
        assert "…" in rows_on_screen(app)[failed.id] or failed.error in screen_text(app)
        await pilot.press("q")


@pytest.mark.parametrize("size", [(60, 16), (80, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_narrow_terminals_leave_figures_out_whole_and_keep_the_footer(
    size: tuple[int, int],
) -> None:
    snap = frozen.snapshot(3)
    snap = with_sessions(snap, [dataclasses.replace(s, maxsize=1024) for s in snap.sessions])
    app = frozen_app([snap])
    async with app.run_test(size=size) as pilot:
        app.refresh_now()
        await pilot.pause()
        table = table_of(app)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        by_id = {s.id: s for s in snap.sessions}
        for session_id, line in rows_on_screen(app).items():
            s = by_id[session_id]
            assert f"{s.depth}/1024" in line  # the whole figure, never "16/" or "0/1"
            for col, _ in table.shown[:-1]:
                assert col.text(s).strip() in line
        lines = screen_text(app).splitlines()
        for backend in snap.backends:
            figure = f"{backend.in_use}/{backend.limit}"
            assert f"{backend.name} {figure}" in lines[2] or backend.name not in lines[2]
        assert "lost 0" in lines[1]
        knobs = app.query_one("#knobs").region
        footer = app.query_one("Footer").region
        assert knobs.bottom <= footer.y  # the knobs never cover the footer
        assert table.region.bottom <= knobs.y
        assert "save" in lines[-1]
        await pilot.press("q")


def test_fit_leaves_out_the_lowest_ranked_columns_and_gives_the_rest_to_the_error() -> None:
    everything = [c.key for c in COLUMNS if c.key != "node"]  # node: only when attached
    wide = fit(everything, 400)
    assert [c.key for c, _ in wide] == everything
    widths = sum(column(k).width for k in everything[:-1])
    assert dict((c.key, w) for c, w in wide)["error"] == 400 - widths
    narrow = fit(everything, 79)
    kept = [c.key for c, _ in narrow]
    assert kept[:4] == ["id", "state", "depth", "memory"]
    attached = [c.key for c, _ in fit([*everything, "node"], 79)]
    assert attached[:5] == ["id", "node", "state", "depth", "memory"]
    assert {"ttft", "qw_p50", "qw_p99", "age_p99"} <= set(kept)
    assert sum(w for _, w in narrow) <= 79
    dropped = set(everything) - set(kept)
    assert min(column(k).rank for k in dropped) > max(column(k).rank for k in kept)
    assert [c.key for c, _ in fit(everything, 5)] == ["id"] and fit(everything, 5)[0][1] == 5


# -- sorting -----------------------------------------------------------------------------


def session(i: int, **changes: Any) -> SessionSnapshot:
    return dataclasses.replace(frozen.session(i, 0), **changes)


def test_numbers_sort_biggest_first_unknowns_last_and_live_sessions_first() -> None:
    rows = [
        session(1, state="done", ttft=9.0),
        session(2, state="streaming", ttft=None),
        session(3, state="streaming", ttft=0.5),
        session(4, state="failed", ttft=None),
        session(5, state="streaming", ttft=2.0),
    ]
    ttft = column("ttft")
    ids = [s.id[-1] for s in ordered(rows, ttft, reverse=True, live_first=True)]
    assert ids == ["5", "3", "2", "1", "4"]
    ids = [s.id[-1] for s in ordered(rows, ttft, reverse=False, live_first=True)]
    assert ids == ["3", "5", "2", "1", "4"]  # unknown stays last either way
    ids = [s.id[-1] for s in ordered(rows, ttft, reverse=True, live_first=False)]
    assert ids == ["1", "5", "3", "2", "4"]


async def test_sorting_by_keys_and_headers_labels_with_the_header_and_toggles_live_first() -> None:
    snap = frozen.snapshot(3)
    app = frozen_app([snap])
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        table = table_of(app)
        note = app.query_one("#table-note", Readout)
        x = sum(w for c, w in table.shown[: [c.key for c, _ in table.shown].index("memory")])
        await pilot.click("#sessions", offset=(x + 3, 0))  # the "mem" header
        await pilot.pause()
        assert (table.sort_column, table.sort_reverse) == ("memory", True)
        assert "sort: mem ▼ live first" in note.plain
        by_id = {s.id: s for s in snap.sessions}
        shown = [by_id[i] for i in table.row_ids()]
        live = [s for s in shown if not s.finished]
        assert shown[: len(live)] == live  # running sessions above finished ones
        mem = [s.memory_bytes for s in live]
        assert mem == sorted(mem, reverse=True)
        await pilot.press("L")
        assert not table.live_first
        assert "sort: mem ▼" in note.plain and "live first" not in note.plain
        shown = [by_id[i] for i in table.row_ids()]
        assert [s.memory_bytes for s in shown] == sorted(
            (s.memory_bytes for s in shown), reverse=True
        )
        assert any(s.finished for s in shown[: len(live)])  # finished ones mixed in now
        await pilot.press("O")
        assert "sort: mem ▲" in note.plain
        await pilot.press("q")


# -- cursor ------------------------------------------------------------------------------


async def test_the_cursor_follows_its_session_and_stays_on_screen() -> None:
    base = frozen.snapshot(3, sessions=60)
    rows = [
        dataclasses.replace(s, state="streaming", rate_in=float(i))
        for i, s in enumerate(base.sessions)
    ]
    first = with_sessions(base, rows)
    top = rows[0].id  # the slowest: first when sorted by rate, smallest first
    second = with_sessions(
        base, [dataclasses.replace(s, rate_in=1000.0) if s.id == top else s for s in rows]
    )
    third = with_sessions(base, [s for s in rows if s.id != top])  # then it is gone
    app = frozen_app([first, first, first, second, third])  # the app takes one at start
    async with app.run_test(size=(80, 24)) as pilot:
        app.refresh_now()
        table = table_of(app)
        table.set_sort("rate", reverse=False)
        app.refresh_now()
        await pilot.pause()
        table.move_cursor(row=table.row_ids().index(top))
        await pilot.pause()
        assert table.selected_id == top and table.cursor_row in table.visible_rows()
        app.refresh_now()  # `top` sorts elsewhere now
        await pilot.pause()
        assert table.selected_id == top
        assert table.cursor_row in table.visible_rows()
        assert top in rows_on_screen(app)
        app.refresh_now()  # `top` is gone: the cursor is on a row the user sees
        await pilot.pause()
        assert table.selected_id is not None and table.selected_id != top
        assert table.cursor_row in table.visible_rows()
        # scrolling away with the wheel takes the cursor along, so `c` hits a visible row
        table.scroll_to(y=30, animate=False)
        await pilot.pause()
        assert table.cursor_row in table.visible_rows()
        assert table.selected_id in rows_on_screen(app)
        await pilot.press("q")


async def test_j_k_g_g_home_end_move_in_the_table() -> None:
    app = frozen_app([frozen.snapshot(3, sessions=40)])
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_now()
        table = table_of(app)
        table.focus()
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 39 and 39 in table.visible_rows()
        await pilot.press("g")
        assert table.cursor_row == 0 and 0 in table.visible_rows()
        await pilot.press("end")
        assert table.cursor_row == 39
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("q")


# -- filter, chooser ---------------------------------------------------------------------


async def test_escape_on_the_table_clears_a_filter_kept_by_enter() -> None:
    app = frozen_app([frozen.snapshot(3)])
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_now()
        table = table_of(app)
        await pilot.press("slash", *"0007", "enter")
        assert app.focused is table and table.row_count == 1
        await pilot.press("escape")
        assert table.filter_text == "" and table.row_count == 12
        assert app.query_one("#filter").display is False
        assert "match" not in app.query_one("#table-note", Readout).plain
        await pilot.press("q")


async def test_the_column_chooser_shows_and_hides_columns() -> None:
    app = frozen_app([frozen.snapshot(3)])
    async with app.run_test(size=(200, 50)) as pilot:
        app.refresh_now()
        table = table_of(app)
        assert "tries" not in [c.label for c, _ in table.shown]  # not a default column
        await pilot.press("C")
        assert isinstance(app.screen, ColumnChooser)
        keys = [c.key for c in COLUMNS if c.key not in ("id", "node")]  # node: not offered
        for _ in range(keys.index("attempts")):  # the first line starts highlighted
            await pilot.press("down")
        await pilot.press("space")  # tick "tries"
        await pilot.press("up")
        await pilot.press("space")  # untick "stall"
        await pilot.pause()
        assert "attempts" in table.chosen and "stall" not in table.chosen
        await pilot.press("escape")
        assert not isinstance(app.screen, ColumnChooser)
        header = screen_text(app).splitlines()[table.region.y]
        assert " tries " in header and " stall " not in header
        table.set_columns(["memory"])
        assert [c.key for c, _ in table.shown] == ["id", "memory"]  # the id always stays
        await pilot.press("q")


async def test_the_chooser_marks_ticks_visibly_and_names_a_ticked_column_with_no_room() -> None:
    app = frozen_app([frozen.snapshot(3)])
    async with app.run_test(size=(80, 30)) as pilot:
        app.refresh_now()
        table = table_of(app)
        await pilot.press("C")
        await pilot.pause()

        def line_of(label: str) -> str:
            lines = screen_text(app).splitlines()
            return next(line for line in lines if f" {label} " in line and "│" in line)

        # a mark a user can see without colour: ticked lines show it, unticked ones do not
        assert "✓" in line_of("mem") and "✓" not in line_of("tries")
        assert "no room" not in line_of("mem")
        keys = [c.key for c in COLUMNS if c.key not in ("id", "node")]  # node: not offered
        for _ in range(keys.index("attempts")):
            await pilot.press("down")
        await pilot.press("space")  # tick "tries": 80 columns have no room for it
        await pilot.pause()
        assert "attempts" in table.chosen and "attempts" in table.left_out
        assert "✓" in line_of("tries") and "no room" in line_of("tries")
        note = str(app.screen.query_one("#chooser-note").render())
        assert "tries" in note and "no room" in note, note
        await pilot.press("space")  # untick it: no word about it any more
        await pilot.pause()
        assert "✓" not in line_of("tries") and "no room" not in line_of("tries")
        assert "tries" not in str(app.screen.query_one("#chooser-note").render())
        await pilot.press("escape", "q")


async def test_the_chooser_offers_node_only_when_attached_to_several_nodes() -> None:
    """The app on its own engine: `node` is always empty, so the chooser does not list it
    (ticking it only pushed other columns out)."""
    app = frozen_app([frozen.snapshot(3)])
    async with app.run_test(size=(80, 30)) as pilot:
        app.refresh_now()
        await pilot.press("C")
        await pilot.pause()
        listing = app.screen.query_one("#chooser-list", SelectionList)
        values = [listing.get_option_at_index(i).value for i in range(listing.option_count)]
        assert "node" not in values and "backend" in values
        assert not any(" node " in line for line in screen_text(app).splitlines())
        await pilot.press("escape")
        # The same app as if attached to two nodes (only the chooser asks): offered.
        app.link.nodes = lambda: ["web-1", "web-2"]  # type: ignore[method-assign,assignment,return-value]
        await pilot.press("C")
        await pilot.pause()
        listing = app.screen.query_one("#chooser-list", SelectionList)
        values = [listing.get_option_at_index(i).value for i in range(listing.option_count)]
        assert "node" in values
        await pilot.press("escape", "q")


# -- how it ended, what was lost ---------------------------------------------------------


async def test_a_cut_or_refused_answer_is_marked_in_the_table() -> None:
    snap = frozen.snapshot(3)
    reasons = ["max_tokens", "refusal", "end_turn", "length", None]
    rows = [
        dataclasses.replace(s, state="done", stop_reason=reasons[i % len(reasons)])
        for i, s in enumerate(snap.sessions)
    ]
    app = frozen_app([with_sessions(snap, rows)])
    async with app.run_test(size=(200, 50)) as pilot:
        app.refresh_now()
        await pilot.pause()
        table = table_of(app)
        lines = rows_on_screen(app)
        for s in rows:
            cell = table.get_cell(s.id, "stop")
            if s.stop_reason in ("max_tokens", "length"):
                assert cell.plain.strip() in ("max_tok!", "length!") and "yellow" in str(cell.style)
            elif s.stop_reason == "refusal":
                assert cell.plain.strip() == "refusal!" and "red" in str(cell.style)
            elif s.stop_reason == "end_turn":
                assert cell.plain.strip() == "end_turn" and not cell.style
            assert cell.plain.strip() in lines[s.id]
        await pilot.press("q")


async def test_a_new_row_lays_the_screen_out_only_when_a_scrollbar_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual.screen import Screen

    layouts: list[None] = []
    original = Screen._refresh_layout

    def counting(self: Screen[Any], *args: Any, **kwargs: Any) -> None:
        layouts.append(None)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counting)
    sizes = [12, 12, 13, 14, 15, 80, 81]  # the app takes the first when it starts
    app = frozen_app([frozen.snapshot(3, sessions=n) for n in sizes])

    async def settle(pilot: Any) -> None:
        """Pause until no layout came for a while (what a change set off has ended)."""
        for _ in range(50):
            seen = len(layouts)
            await pilot.pause(0.05)
            if len(layouts) == seen:
                return

    async with app.run_test(size=(160, 48)) as pilot:
        table = table_of(app)
        app.refresh_now()  # 12 rows
        await settle(pilot)
        assert not table.show_vertical_scrollbar
        layouts.clear()
        for _ in range(3):  # 13, 14, 15 rows: all fit, no scrollbar either way
            app.refresh_now()
            await settle(pilot)
        assert table.row_count == 15 and layouts == []  # no layout of the whole screen
        app.refresh_now()  # 80 rows: the scrollbar comes, so the screen is laid out
        await settle(pilot)
        assert layouts and table.show_vertical_scrollbar
        layouts.clear()
        app.refresh_now()  # 81: still a scrollbar, no layout; the end is reachable
        await settle(pilot)
        assert layouts == [] and table.row_count == 81
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 80 and 80 in table.visible_rows()
        assert table.scroll_y == table.max_scroll_y > 0
        await pilot.press("q")
