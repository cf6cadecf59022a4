"""What a new user ran into: `n` undone by the top-up, unsaved knobs unmarked, `q` losing
them, a footer that says "pause" while paused, moot knobs under `sluice monitor`, and a
loop-lag p99 that only ever grew."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets._footer import FooterKey

from sluice.engine import Chunk
from sluice.engine.config import Config, load_config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.knobs import KnobRow, KnobsPanel
from sluice.tui.readout import Readout
from sluice.tui.slider import Slider
from tests.fakes import wait_until

from .helpers import record_notes


def value_shown(app: SluiceApp, key: str) -> str:
    """The text beside knob `key`'s slider."""
    return app.query_one(f"#row-{key}", KnobRow).value_label.plain.strip()


def active_demo(app: SluiceApp) -> int:
    """Demo sessions not finished (queued or streaming)."""
    return sum(1 for s in app.engine.snapshot().sessions if s.backend == "demo" and not s.finished)


# -- n ----------------------------------------------------------------------------------------


async def test_n_raises_the_kept_running_count_so_the_top_up_keeps_them(
    fast_config: Config,
) -> None:
    short = fast_config.with_values({"demo.tokens": 20})  # ~0.5 s each
    app = SluiceApp(config=short, add_count=10)  # the demo kept at 6
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: active_demo(app) == 6, pause=pilot.pause)
        await pilot.press("n")
        assert app.engine.knobs["demo.sessions"] == 16
        assert app.query_one("#knob-sessions", Slider).value == 16
        assert value_shown(app, "sessions") == "16*"  # changed, not saved yet
        # sessions end and the top-up replaces them: still 16, none retired
        ended = finished(app)
        await wait_until(lambda: finished(app) >= ended + 8, pause=pilot.pause)
        assert active_demo(app) == 16
        await pilot.press("s", "q")


def finished(app: SluiceApp) -> int:
    """Sessions that ended so far (including those folded into the totals)."""
    states = app.engine.snapshot().totals.states
    return states["done"] + states["failed"] + states["cancelled"]


async def test_n_without_a_kept_running_demo_adds_one_off_sessions(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False, add_count=4)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("n")
        assert len(app.engine.sessions) == 4
        assert (
            app.engine.knobs["demo.sessions"] == fast_config["demo.sessions"]
        )  # the knob is untouched
        await pilot.press("q")
    assert app.return_code == 0


# -- unsaved knobs, q, s ------------------------------------------------------------------------


async def test_a_changed_knob_is_marked_until_saved(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.query_one("#knobs", KnobsPanel)
        assert value_shown(app, "maxsize") == "8" and "unsaved" not in str(panel.border_title)
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.pause()
        await pilot.press("right")
        assert value_shown(app, "maxsize") == "9*"
        assert "unsaved" in str(panel.border_title) and panel.unsaved == ["maxsize"]
        await pilot.press("left")  # back to the saved value: nothing unsaved
        assert value_shown(app, "maxsize") == "8" and panel.unsaved == []
        await pilot.press("right", "s")
        assert value_shown(app, "maxsize") == "9" and panel.unsaved == []
        assert "unsaved" not in str(panel.border_title)
        assert load_config(fast_config.path)["queue.maxsize"] == 9
        await pilot.press("q")
    assert app.return_code == 0


async def test_q_with_unsaved_knobs_asks_once_then_quits(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    notes = record_notes(app)
    async with app.run_test(size=(160, 48)) as pilot:
        app.query_one("#knob-batch_max", Slider).focus()
        await pilot.pause()
        await pilot.press("right")
        await pilot.press("q")
        assert app.is_running and not app.engine.closed
        message, kwargs = notes[-1]
        assert kwargs.get("title") == "quit?" and "batch_max" in message
        assert "q again" in message and "s to save" in message
        await pilot.press("q")
        assert app.engine.closed
    assert app.return_code == 0
    assert load_config(fast_config.path)["queue.batch_max"] == fast_config["queue.batch_max"]


async def test_q_after_saving_quits_at_once(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    notes = record_notes(app)
    async with app.run_test(size=(160, 48)) as pilot:
        app.query_one("#knob-batch_max", Slider).focus()
        await pilot.pause()
        await pilot.press("right")
        await pilot.press("q")  # warned
        assert app.is_running
        await pilot.press("s", "q")  # saved: nothing to lose
        assert app.engine.closed
    assert sum(kw.get("title") == "quit?" for _, kw in notes) == 1
    assert load_config(fast_config.path)["queue.batch_max"] == fast_config["queue.batch_max"] + 1


async def test_a_knob_change_is_not_undone_by_redrawing_an_older_snapshot(
    fast_config: Config,
) -> None:
    # The header redraws often from the last sample, which here is never refreshed: it
    # predates the change, and the slider must not follow it back.
    app = SluiceApp(config=fast_config, continuous=False, fast_interval=60, header_interval=0.01)
    async with app.run_test(size=(160, 48)) as pilot:
        slider = app.query_one("#knob-maxsize", Slider)
        slider.focus()
        await pilot.pause()
        await pilot.press("right")
        await pilot.pause(0.15)
        assert slider.value == 9 and app.engine.knobs["queue.maxsize"] == 9
        assert value_shown(app, "maxsize") == "9*"
        await pilot.press("s", "q")


# -- the footer's p ---------------------------------------------------------------------------


def footer_words(app: SluiceApp) -> set[str]:
    return {key.description.strip() for key in app.query(FooterKey)}


async def test_the_footer_says_what_p_will_do(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert app.screen.active_bindings["p"].binding.description.strip() == "pause"
        assert "pause" in footer_words(app) and "resume" not in footer_words(app)
        await pilot.press("p")
        await pilot.pause()
        assert app.paused
        assert app.screen.active_bindings["p"].binding.description == "resume"
        assert "resume" in footer_words(app) and "pause" not in footer_words(app)
        # a footer rebuilt now (focus moves, a screen comes and goes) says the same
        app.refresh_bindings()
        await pilot.pause()
        assert "resume" in footer_words(app) and "pause" not in footer_words(app)
        await pilot.press("p")
        await pilot.pause()
        assert not app.paused and "pause" in footer_words(app)
        await pilot.press("q")


# -- sluice monitor: knobs that do not reach the workload --------------------------------------


class Sink:
    """A workload's own consumer."""

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Take the batch."""


async def test_monitor_dims_the_knobs_its_workload_does_not_use(fast_config: Config) -> None:
    async def workload(engine: Engine) -> None:
        for n in range(3):
            engine.add_session(f"prompt {n}", "demo", consumer=Sink(), session_id=f"own-{n}")

    app = SluiceApp(config=fast_config, continuous=False, workload=workload, header_interval=0.05)
    notes = record_notes(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: len(app.engine.sessions) == 3, pause=pilot.pause)
        rows = app.query_one("#knobs", KnobsPanel).rows

        def dim() -> set[str]:
            return {key for key, row in rows.items() if row.has_class("inactive")}

        # its own consumer, no kept-running demo, no claude, ollama or agent sessions
        await wait_until(
            lambda: (
                dim() == {"delay_ms", "sessions", "limit-claude", "limit-ollama", "limit-agent"}
            ),
            pause=pilot.pause,
        )
        assert "not used by this workload" in str(rows["delay_ms"].tooltip)
        assert rows["delay_ms"].slider.inactive and not rows["rate"].slider.inactive
        # still settable: the value reaches the engine, and a toast says it is moot
        before = app.engine.knobs["consumer.delay_ms"]
        rows["delay_ms"].slider.focus()
        await pilot.pause()
        await pilot.press("right")
        assert app.engine.knobs["consumer.delay_ms"] == before + 1
        assert notes[-1][1].get("title") == "knob not in use"
        await pilot.press("right")  # told once, not on every step
        assert sum(kw.get("title") == "knob not in use" for _, kw in notes) == 1
        await pilot.press("s", "q")


async def test_the_demo_app_uses_every_knob_it_shows(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, header_interval=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(lambda: active_demo(app) > 0, pause=pilot.pause)
        await pilot.pause(0.2)
        rows = app.query_one("#knobs", KnobsPanel).rows
        assert not any(row.has_class("inactive") for row in rows.values())
        await pilot.press("q")


# -- the header's loop lag ----------------------------------------------------------------------


async def test_the_header_shows_the_loop_lag_p99_of_the_last_10_seconds(
    fast_config: Config,
) -> None:
    app = SluiceApp(config=fast_config, continuous=False, header_interval=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        sampler = app.engine.sampler
        await wait_until(
            lambda: app.engine.snapshot().process.loop_lag_p99_10s is not None, pause=pilot.pause
        )
        sampler.record_lag(0.75)  # a spike now
        await wait_until(
            lambda: "lag p99 10s 750ms" in app.query_one("#process", Readout).plain,
            pause=pilot.pause,
        )
        await pilot.press("q")
