"""Screenshots of the main and detail screens with frozen data, from 80x24 to 200x50.

The app reads a FrozenSource (prepared snapshots) and a frozen clock, with no timers, so the
same screen comes out every time. Regenerate after a deliberate UI change with
`pytest tests/tui/test_screens.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.source import FrozenSource

from . import frozen

STEPS = 40
SIZES = [(80, 24), (120, 40), (160, 48), (200, 50)]


def frozen_app() -> SluiceApp:
    """The app over 40 seconds of prepared snapshots, the engine idle."""
    snaps = [frozen.snapshot(t) for t in range(STEPS)]
    source = FrozenSource(snaps, frozen.details(snaps[-1]))
    return SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=source,
        clock=frozen.FrozenClock(),
        continuous=False,
        live=False,
    )


async def replay(pilot: Pilot[Any]) -> None:
    """Feed every prepared snapshot, then let the screen settle."""
    app = pilot.app
    assert isinstance(app, SluiceApp)
    for _ in range(STEPS):
        app.refresh_now()
    await pilot.pause()


async def open_detail(pilot: Pilot[Any]) -> None:
    """Replay, then Enter on the first row (a streaming session)."""
    await replay(pilot)
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(frozen_app(), terminal_size=size, run_before=replay)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(frozen_app(), terminal_size=size, run_before=open_detail)


async def test_frozen_replay_is_deterministic() -> None:
    """The frozen app draws the same history whatever the timing: one point per snapshot."""
    app = frozen_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await replay(pilot)
        assert len(app.history.times) == STEPS
        app.refresh_now()  # the last snapshot again: no new point
        assert len(app.history.times) == STEPS
        await pilot.press("q")
