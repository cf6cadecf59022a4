"""Ctrl+C in the app says how to quit in plain words (Textual's own toast is markup, which
this app shows as written)."""

from __future__ import annotations

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.source import FrozenSource

from . import frozen
from .helpers import record_notes


async def test_ctrl_c_tells_how_to_quit_without_raw_markup() -> None:
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([frozen.snapshot(3)]),
        clock=frozen.FrozenClock(),
        continuous=False,
        live=False,
    )
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        messages = [message for message, _ in notes]
        assert any("to quit" in m for m in messages), messages
        assert not any("[b]" in m for m in messages), messages
        await pilot.press("q")
