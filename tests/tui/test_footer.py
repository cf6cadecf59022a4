"""The footer: help and quit stay on a narrow screen, lesser hints go first; while a knob's
value is being typed it says how to apply or cancel."""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from sluice.engine.config import Config
from sluice.tui.app import SluiceApp
from sluice.tui.slider import Slider

from .helpers import screen_text


def footer_line(app: SluiceApp) -> str:
    """The bottom line of the screen as a user reads it."""
    return screen_text(app).splitlines()[-1]


def footer_words(app: SluiceApp) -> list[str]:
    return [key.description.strip() for key in app.query(FooterKey) if key.display]


@pytest.mark.parametrize("width", [60, 80, 120])
async def test_help_and_quit_stay_visible_with_a_knob_focused(width: int) -> None:
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(width, 30)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.pause()
        line = footer_line(app)
        assert "? help" in line and "q quit" in line, line
        assert "type a value" in line, line  # the focused slider's own key comes first
        if width >= 120:  # room for every hint
            assert "t tune" in line and "palette" in line, line
        await pilot.press("tab")  # the table: the same two stay
        await pilot.pause()
        line = footer_line(app)
        assert "? help" in line and "q quit" in line, line
        await pilot.press("q")


async def test_typing_a_knob_value_shows_how_to_apply_or_cancel() -> None:
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.press("enter")
        await pilot.pause()
        line = footer_line(app)
        assert "apply" in line and "esc cancel" in line, line
        assert "type a value" not in line and "s save" not in line, line  # keys that type
        await pilot.press("2", "0", "enter")
        await pilot.pause()
        assert app.engine.knob("queue.maxsize") == 20
        assert "apply" not in footer_line(app)
        await pilot.press("enter", "escape")
        await pilot.pause()
        assert "esc cancel" not in footer_line(app)
        assert app.engine.knob("queue.maxsize") == 20
        await pilot.press("q")


async def test_footer_order_is_help_quit_then_the_sliders_keys_then_the_most_used() -> None:
    """README: `? help` and `q quit` always, then the focused slider's own keys (`a` on a
    knob with an auto mode), then the others from the most used; the rest left out."""
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#knob-maxsize", Slider).focus()
        await pilot.pause()
        words = footer_words(app)
        assert words[:4] == ["help", "quit", "type a value", "auto on/off"], words
        assert words[4:6] == ["save", "pause"], words  # the most used of the app's keys
        app.query_one("#knob-delay_ms", Slider).focus()  # no auto mode: no `a` hint
        await pilot.pause()
        words = footer_words(app)
        assert words[:3] == ["help", "quit", "type a value"] and "auto on/off" not in words
        await pilot.press("a")  # still says it has none
        await pilot.pause()
        await pilot.press("q")


@pytest.mark.parametrize("key", ["maxsize", "batch_max", "limit-claude", "limit-ollama"])
async def test_a_shows_on_every_slider_with_an_auto_mode(key: str) -> None:
    app = SluiceApp(config=Config(), continuous=False, live=False)
    async with app.run_test(size=(120, 30)) as pilot:
        app.query_one(f"#knob-{key}", Slider).focus()
        await pilot.pause()
        assert "a auto on/off" in footer_line(app), footer_line(app)
        await pilot.press("q")
