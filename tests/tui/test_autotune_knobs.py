"""Auto knobs in the app: `auto` on the slider, the reason line, a hand move makes the knob
manual at once, `a` gives it back to auto-tune; the plot of the auto knobs' history."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from sluice.engine.config import Config
from sluice.engine.snapshot import AutoKnobSnapshot
from sluice.tui.app import SluiceApp
from sluice.tui.autotune import AutoReason, PlotLine, spark_text
from sluice.tui.knobs import KnobRow, KnobsPanel
from sluice.tui.slider import Slider
from tests.fakes import wait_until


def test_spark_text_scales_and_leaves_gaps() -> None:
    assert spark_text([1.0, None, 8.0], 3) == "▁ █"
    assert spark_text([5.0, 5.0], 4) == "▁▁"
    assert spark_text([None, None], 2) == "  "


async def test_a_hand_move_makes_the_knob_manual_and_a_gives_it_back(fast_config: Config) -> None:
    config = fast_config.with_values({"autotune.maxsize": True, "autotune.window_s": 0.2})
    app = SluiceApp(config=config)
    async with app.run_test(size=(160, 48)) as pilot:
        engine = app.engine
        slider = app.query_one("#knob-maxsize", Slider)
        batch = app.query_one("#knob-batch_max", Slider)
        reason = app.query_one("#reason-maxsize", AutoReason)
        assert slider.auto and batch.auto and reason.display
        assert "auto" in reason.plain
        assert "auto" in slider.render().plain
        # It moves by itself: the engine's calibration reaches the slider and the reason line.
        await wait_until(
            lambda: engine.autotune.last_reason("queue.maxsize") is not None, pause=pilot.pause
        )
        await wait_until(lambda: slider.value == engine.knob("queue.maxsize"), pause=pilot.pause)
        await wait_until(lambda: "target 500 ms" in reason.plain, pause=pilot.pause)
        plot = app.query_one("#plot-maxsize-value", PlotLine)
        await wait_until(lambda: plot.display, pause=pilot.pause)
        assert app.query_one("#plot-maxsize-signal", PlotLine).display
        assert not app.query_one("#plot-claude-value", PlotLine).display

        panel = app.query_one("#knobs", KnobsPanel)
        assert panel.unsaved == []  # values auto chose are not the user's changes
        slider.focus()
        await pilot.pause()
        await pilot.press("left")
        await pilot.pause()
        assert engine.knob("autotune.maxsize") is False  # manual, at the value chosen
        chosen = slider.value
        assert engine.knob("queue.maxsize") == chosen
        assert not slider.auto and not batch.auto  # shown at once
        assert "manual (set by hand)" in reason.plain  # a slider move did it
        assert not plot.display  # its old auto values would read as the knob's now
        assert not app.query_one("#row-maxsize", KnobRow).has_class("auto")
        assert panel.unsaved == ["maxsize", "batch_max"]  # taken over: not what is saved
        await asyncio.sleep(0.5)  # two auto windows: a manual knob stays where it was put
        await pilot.pause()
        assert engine.knob("queue.maxsize") == chosen == slider.value

        await pilot.press("a")
        await pilot.pause()
        assert engine.knob("autotune.maxsize") is True
        assert slider.auto and batch.auto
        assert "manual" not in reason.plain and "target 500 ms" in reason.plain
        assert panel.unsaved == []  # auto again, as the config file says
        await wait_until(lambda: plot.display, pause=pilot.pause)
        await pilot.press("a")  # off again, with `a` this time: said so, not "by hand"
        await pilot.pause()
        assert "manual (auto off with a)" in reason.plain and "by hand" not in reason.plain
        assert not plot.display


async def test_an_auto_switch_turned_on_is_the_unsaved_change_said_as_such(
    fast_config: Config,
) -> None:
    app = SluiceApp(config=fast_config)
    async with app.run_test(size=(160, 48)) as pilot:
        app.query_one("#knob-limit-claude", Slider).focus()
        await pilot.press("a")
        await pilot.pause()
        panel = app.query_one("#knobs", KnobsPanel)
        assert panel.unsaved == ["claude lim (auto on)"]  # the value is as saved: the switch


async def test_a_on_a_knob_without_auto_says_so(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    notes: list[str] = []
    original = app.notify
    app.notify = lambda message, **kw: (notes.append(message), original(message, **kw))[1]  # type: ignore[method-assign]
    async with app.run_test(size=(160, 48)) as pilot:
        app.query_one("#knob-delay_ms", Slider).focus()
        await pilot.press("a")
        await pilot.pause()
        assert notes == ["delay ms has no auto mode"]
        assert not app.query_one("#reason-maxsize", AutoReason).display


async def test_the_plot_shows_value_and_signal() -> None:
    track = AutoKnobSnapshot(
        knob="limits.ollama",
        switch="autotune.ollama",
        on=True,
        reason="x0.62: TTFT p75 290 ms vs baseline 160 ms",
        moved_at=3.0,
        signal="ttft p75 ms",
        baseline=160.0,
        retry_after=None,
        points=((1.0, 8.0, 150.0), (2.0, 9.0, None), (3.0, 5.0, 290.0)),
    )

    class Plot(App[None]):
        def compose(self) -> ComposeResult:
            yield PlotLine("autotune.ollama", "value", "ollama lim", id="value")
            yield PlotLine("autotune.ollama", "signal", "ollama lim", id="signal")

    app = Plot()
    async with app.run_test(size=(60, 4)) as pilot:
        value = app.query_one("#value", PlotLine)
        signal = app.query_one("#signal", PlotLine)
        value.show(None)
        assert not value.display  # nothing to plot: hidden
        value.show(track)
        signal.show(track)
        await pilot.pause()
        assert value.display and signal.display
        line = value.render().plain
        assert line.startswith("ollama lim") and line.rstrip().endswith("5")
        assert "290 vs 160 ms" in signal.render().plain
        assert signal.region.y == value.region.y + 1  # stacked: the signal under the value


async def test_a_cluster_node_that_does_not_lead_names_the_leader() -> None:
    track = AutoKnobSnapshot(
        knob="limits.claude",
        switch="autotune.claude",
        on=True,
        reason="-10%: 429 at 10:00:00",  # a move from when this node led: not the news now
        moved_at=1.0,
        signal="429s",
        baseline=None,
        retry_after=None,
        points=(),
        led_by="web-2",
    )

    class Reason(App[None]):
        def compose(self) -> ComposeResult:
            yield AutoReason("claude lim", id="reason")

    app = Reason()
    async with app.run_test(size=(60, 3)) as pilot:
        line = app.query_one("#reason", AutoReason)
        line.show(True, track)
        await pilot.pause()
        assert line.plain.rstrip() == "claude lim  auto (led by web-2)"
        line.show(False, track)  # a hand took it over: manual, whoever led
        assert line.plain.startswith("claude lim  manual")


async def test_reason_lines_sit_under_the_sliders_name_their_knob_and_end_with_an_ellipsis() -> (
    None
):
    """80x24, `a` on claude lim and maxsize: in the two-column grid the reason lines landed
    in cells beside unrelated sliders; now each is under the grid, naming its knob, cut
    with `…` where the panel ends."""
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("limit-claude", "maxsize"):
            app.query_one(f"#knob-{key}", Slider).focus()
            await pilot.press("a")
        await pilot.pause()
        rows = list(app.query(KnobRow))
        bottom = max(row.region.bottom for row in rows)
        left = min(row.region.x for row in rows)
        for key, label in (("limit-claude", "claude lim"), ("maxsize", "maxsize")):
            reason = app.query_one(f"#reason-{key}", AutoReason)
            assert reason.display and reason.region.y >= bottom  # under every slider
            assert reason.region.x == left  # the panel's whole width, not a grid cell
            assert reason.plain.startswith(label) and "auto" in reason.plain
        await pilot.press("a")  # maxsize: off with `a`
        await pilot.pause()
        maxsize = app.query_one("#reason-maxsize", AutoReason)
        assert "manual (auto off with a)" in maxsize.plain
        assert "by hand" not in maxsize.plain
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(200, 50)) as pilot:  # wide: a 44-column panel
        app.query_one("#knob-limit-claude", Slider).focus()
        await pilot.press("a")
        await pilot.pause()
        reason = app.query_one("#reason-limit-claude", AutoReason)
        shown = "".join(s.text for s in reason.render_line(0)).rstrip()
        assert shown.endswith("…") and shown.startswith("claude lim  auto: no signal yet")


async def test_an_auto_knob_without_any_signal_does_not_promise_to_move() -> None:
    """claude lim on a demo-only run: no 429 or answer will ever come to move it."""
    from sluice.tui.autotune import NO_SIGNAL_YET

    silent = AutoKnobSnapshot(
        knob="limits.claude", switch="autotune.claude", on=True, reason=None, moved_at=None,
        signal="429s", baseline=None, retry_after=None, points=((1.0, 4.0, None),),
    )  # fmt: skip
    heard = AutoKnobSnapshot(
        knob="limits.claude", switch="autotune.claude", on=True, reason=None, moved_at=None,
        signal="429s", baseline=None, retry_after=None, points=((1.0, 4.0, 0.0),),
    )  # fmt: skip

    class Reasons(App[None]):
        def compose(self) -> ComposeResult:
            yield AutoReason("claude lim", id="reason")

    app = Reasons()
    async with app.run_test(size=(100, 3)) as pilot:
        reason = app.query_one("#reason", AutoReason)
        for track in (None, silent):
            reason.show(True, track)
            await pilot.pause()
            assert f"auto: {NO_SIGNAL_YET}" in reason.render().plain  # type: ignore[union-attr]
        reason.show(True, heard)
        await pilot.pause()
        assert "waiting for a full window of signals" in reason.render().plain  # type: ignore[union-attr]


async def test_auto_switched_off_elsewhere_is_said_not_just_gone(fast_config: Config) -> None:
    """A PATCH from a shell (here: the engine's own call, as the API makes it)."""
    app = SluiceApp(config=fast_config.with_values({"autotune.claude": True}))
    async with app.run_test(size=(160, 48)) as pilot:
        reason = app.query_one("#reason-limit-claude", AutoReason)
        await wait_until(lambda: reason.display and "auto" in reason.plain, pause=pilot.pause)
        app.engine.set_knobs({"autotune.claude": False})
        await wait_until(lambda: "manual" in reason.plain, pause=pilot.pause)
        assert reason.display and "auto off elsewhere" in reason.plain
