"""Every key of the app against a running engine: s, n, c, p, q, ?, /, o, O, Enter, Escape."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

from textual.command import CommandPalette

from sluice.engine.config import Config, load_config
from sluice.tui.app import SluiceApp
from sluice.tui.detail import DetailScreen
from sluice.tui.help import HelpScreen
from sluice.tui.readout import Readout
from sluice.tui.slider import Slider
from sluice.tui.table import SessionTable
from tests.fakes import wait_until

from .helpers import read_text, record_notes, streaming, write_text


def sluice_tasks() -> list[asyncio.Task[object]]:
    """Tasks the engine started (sessions, their producers/consumers, the sampler)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith(("sluice-", "demo-")) or ":producer" in t.get_name()
    ]


async def test_save_writes_knobs_atomically_and_keeps_other_keys(
    fast_config: Config, config_path: Path
) -> None:
    original = read_text(config_path)
    app = SluiceApp(config=fast_config)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.press("pageup")  # 8 -> 18
        app.query_one("#knob-limit-demo", Slider).focus()
        await pilot.press("right")  # 3 -> 4
        app.query_one("#knob-delay_ms", Slider).focus()
        await pilot.press("e", "7", ".", "5", "enter")
        await pilot.press("s")
        await pilot.press("q")
    assert any(str(config_path) in message for message, _ in notes)
    saved = load_config(config_path)
    assert saved["queue.maxsize"] == 18
    assert saved["limits.demo"] == 4
    assert saved["consumer.delay_ms"] == 7.5
    assert saved["queue.batch_max"] == fast_config["queue.batch_max"]
    assert saved["demo.tokens"] == fast_config["demo.tokens"]
    assert saved["demo.seed"] == 3
    # the knobs it loads back to are the ones the engine ran with
    assert saved.with_values({}) == app.engine.tuned_config().with_values({})
    raw = tomllib.loads(read_text(config_path))
    assert raw["x-extra"] == {"owner": "someone else", "numbers": [1, 2, 3]}
    text = read_text(config_path)
    assert "# a config the app tests start from" in text
    assert "maxsize = 18 # buffer" in text
    backup = config_path.with_name("config.toml.bak")
    assert read_text(backup) == original
    leftovers = [p.name for p in config_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


async def test_a_slider_key_and_s_at_once_save_the_value_just_set(
    fast_config: Config, config_path: Path
) -> None:
    """A fast `Right s`: the slider's move may still be queued when `s` is handled."""
    app = SluiceApp(config=fast_config)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        slider = app.query_one("#knob-maxsize", Slider)
        slider.focus()
        await pilot.pause()
        start = app.engine.knob("queue.maxsize")
        slider.action_move(1)  # its Changed message is queued, not yet handled
        app.action_save()
        await pilot.pause()
        assert load_config(config_path)["queue.maxsize"] == start + 1
        assert app.engine.knob("queue.maxsize") == start + 1
        assert [kw.get("title") for _, kw in notes] == ["knobs saved"]
        await pilot.press("q")


async def test_save_failure_is_reported_and_changes_nothing(
    fast_config: Config, config_path: Path
) -> None:
    write_text(config_path, "not = [valid")
    app = SluiceApp(config=fast_config, continuous=False)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await pilot.press("q")
    assert notes[-1][1].get("severity") == "error"
    assert read_text(config_path) == "not = [valid"


async def test_n_adds_demo_sessions(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False, add_count=5)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.engine.sessions == {}
        await pilot.press("n")
        assert len(app.engine.sessions) == 5
        await pilot.press("n")
        assert len(app.engine.sessions) == 10
        await pilot.press("q")


async def test_c_cancels_the_selected_session(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, table_interval=0.1)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 3, pause=pilot.pause)
        table = app.query_one("#sessions", SessionTable)
        app.refresh_now()
        await pilot.pause()
        table.focus()
        target = table.selected_id
        assert target is not None
        assert app.engine.sessions[target].state == "streaming"  # state-sorted: first is live
        others = {s.id for s in streaming(app)} - {target}
        await pilot.press("c")
        await wait_until(
            lambda: app.engine.sessions[target].state == "cancelled", pause=pilot.pause
        )
        # nobody else was touched
        assert all(app.engine.sessions[o].state != "cancelled" for o in others)
        await pilot.press("q")


async def test_p_pauses_the_display_not_the_engine(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, fast_interval=0.05, table_interval=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 1, pause=pilot.pause)
        await pilot.press("p")
        assert app.paused
        bar = app.query_one("#process", Readout)
        assert "PAUSED" in bar.plain
        note = app.query_one("#table-note", Readout).plain
        tokens = app.engine.snapshot().totals.tokens_out
        await wait_until(
            lambda: app.engine.snapshot().totals.tokens_out > tokens + 20, pause=pilot.pause
        )
        assert app.query_one("#table-note", Readout).plain == note
        shown = bar.plain
        await pilot.pause(0.2)
        assert bar.plain == shown  # frozen
        await pilot.press("p")
        assert not app.paused
        assert "PAUSED" not in bar.plain
        await pilot.press("q")


async def test_q_quits_within_a_second_leaving_no_task(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 3, pause=pilot.pause)
        assert sluice_tasks()
        await pilot.press("q")
        assert app.engine.closed
    assert app.return_code == 0
    assert all(t.done() for t in sluice_tasks())
    states = {s.state for s in app.engine.snapshot().sessions}
    assert states <= {"done", "cancelled"}
    assert all(s.depth == 0 or s.finished for s in app.engine.snapshot().sessions)
    assert all(session.buffer.closed for session in app.engine.sessions.values())


async def test_question_mark_opens_help_and_escape_closes_it(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")


async def test_enter_opens_detail_and_escape_goes_back(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 1, pause=pilot.pause)
        app.refresh_now()
        table = app.query_one("#sessions", SessionTable)
        table.focus()
        target = table.selected_id
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.session_id == target
        summary = str(app.screen.query_one("#detail-summary").render())
        assert target in summary
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        await pilot.press("q")


async def test_slash_filters_and_escape_clears(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.engine.add_demo_sessions(4)
        app.refresh_now()
        table = app.query_one("#sessions", SessionTable)
        assert table.row_count == 4
        target = sorted(app.engine.sessions)[2]
        await pilot.press("slash")
        await pilot.press(*target)
        assert table.row_count == 1
        assert table.selected_id == target
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is table and table.row_count == 1
        await pilot.press("slash", "escape")
        assert table.row_count == 4
        assert app.query_one("#filter").display is False
        await pilot.press("q")


async def test_o_and_header_click_sort(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.engine.add_demo_sessions(5)
        app.refresh_now()
        table = app.query_one("#sessions", SessionTable)
        await pilot.press("o")  # state -> depth, the next column shown
        assert (table.sort_column, table.sort_reverse) == ("depth", True)  # numbers: big first
        await pilot.press("O")
        assert not table.sort_reverse
        table.set_sort("id", reverse=True)
        app.refresh_now()
        ids = table.row_ids()
        assert ids == sorted(ids, reverse=True)
        await pilot.click("#sessions", offset=(2, 0))  # the "id" header flips the order
        await pilot.pause()
        ids = table.row_ids()
        assert ids == sorted(ids)
        await pilot.press("q")


async def test_command_palette_lists_the_app_actions(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(120, 40)) as pilot:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Save knobs", "Add demo sessions", "Cancel selected session"} <= titles
        assert {"Pause / resume display", "Help"} <= titles
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        await pilot.press("q")


async def test_many_sessions_show_the_busiest_and_count_the_hidden(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False, max_rows=20)
    async with app.run_test(size=(160, 48)) as pilot:
        app.engine.add_demo_sessions(60)
        await wait_until(lambda: len(streaming(app)) >= 3, pause=pilot.pause)
        app.refresh_now()
        table = app.query_one("#sessions", SessionTable)
        assert table.row_count == 20
        live = {s.id for s in streaming(app)}
        shown = set(table.row_ids())
        assert live <= shown
        assert "40 hidden" in app.query_one("#table-note", Readout).plain
        await pilot.press("q")


async def test_t_calibrates_and_moves_the_sliders(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    notes = record_notes(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(streaming(app)) >= 2, pause=pilot.pause)
        await pilot.press("t")
        await wait_until(lambda: app.last_recommendation is not None, pause=pilot.pause)
        rec = app.last_recommendation
        assert rec is not None
        # a 20 ms consumer: about 500 ms of work is 25 chunks, whatever the exact timing
        assert 10 <= rec.maxsize <= 26
        await pilot.pause()
        knobs = app.engine.knobs
        assert (knobs["queue.maxsize"], knobs["queue.batch_max"]) == (rec.maxsize, rec.batch_max)
        assert app.query_one("#knob-maxsize", Slider).value == rec.maxsize
        running = [s for s in app.engine.snapshot().sessions if not s.finished]
        assert running and all(s.maxsize == rec.maxsize for s in running)
        assert any(kw.get("title") == "calibrated" for _, kw in notes)
        await pilot.press("q")


async def test_tab_jumps_between_the_table_and_the_last_used_slider(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.query_one("#sessions", SessionTable)
        table.focus()
        await pilot.press("tab")
        assert isinstance(app.focused, Slider) and app.focused.id == "knob-maxsize"
        await pilot.press("down", "down")
        assert isinstance(app.focused, Slider) and app.focused.id == "knob-limit-claude"
        await pilot.press("tab")
        assert app.focused is table
        await pilot.press("shift+tab")
        assert isinstance(app.focused, Slider) and app.focused.id == "knob-limit-claude"
        await pilot.press("q")


async def test_tab_returns_to_the_slider_last_changed_after_focus_walked_off() -> None:
    """Tab, down to `delay ms`, Right, then Down past the last slider (focus leaves the
    knobs), Tab: back on `delay ms`, the slider last used, not the first one."""
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#sessions", SessionTable).focus()
        await pilot.press("tab")
        while isinstance(app.focused, Slider) and app.focused.id != "knob-delay_ms":
            await pilot.press("down")
        assert isinstance(app.focused, Slider) and app.focused.id == "knob-delay_ms"
        await pilot.press("right")
        assert app.engine.knob("consumer.delay_ms") == 51
        await pilot.press("down", "down", "down")
        assert not isinstance(app.focused, Slider)
        await pilot.press("tab")
        assert isinstance(app.focused, Slider) and app.focused.id == "knob-delay_ms"
        await pilot.press("q")


# How Textual names a key, as the help screen spells it.
_SPELLED = {
    "slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter", "tab": "Tab",
    "shift+tab": "Tab", "home": "Home", "end": "End", "pageup": "PgUp", "pagedown": "PgDn",
    "left": "Left", "right": "Right", "up": "Up", "down": "Down",
}  # fmt: skip


def test_every_key_bound_on_the_main_screen_is_on_the_help_screen() -> None:
    """The help table is written by hand: a binding added without a line there fails."""
    from sluice.tui.help import HELP_KEYS
    from sluice.tui.knobs import KnobRow

    shown = {word for keys, _ in HELP_KEYS for word in keys.replace("/", " ").split()}
    shown |= {"/"} if any(keys.startswith("/") for keys, _ in HELP_KEYS) else set()
    bound = [
        key
        for owner in (SluiceApp, SessionTable, Slider, KnobRow)
        for binding in owner.BINDINGS
        for key in binding.key.split(",")  # type: ignore[union-attr]
    ]
    missing = sorted({_SPELLED.get(k, k) for k in bound} - shown)
    assert missing == []
