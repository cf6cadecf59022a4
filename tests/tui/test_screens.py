"""Screenshots of the main and detail screens with frozen data, from 80x24 to 200x50.

The app reads a FrozenSource (prepared snapshots) and a frozen clock, with no timers, so the
same screen comes out every time. Regenerate after a deliberate UI change with
`pytest tests/tui/test_screens.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.pilot import Pilot

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.detail import render_summary
from sluice.tui.source import FrozenSource

from . import frozen
from .helpers import screen_text

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


@pytest.mark.parametrize("width", [60, 80, 120])
async def test_the_detail_keeps_each_label_with_its_value(width: int) -> None:
    """At 80 columns `elapsed` was at the end of one line and `11.1s` at the start of the
    next: each figure now moves to the next line whole."""
    app = frozen_app()
    async with app.run_test(size=(width, 30)) as pilot:
        await open_detail(pilot)
        summary = app.screen.query_one("#detail-summary")
        rows = screen_text(app).splitlines()[summary.region.y : summary.region.bottom]
        lines = [row.rstrip() for row in rows]
        text = "\n".join(lines)
        for label in ("elapsed", "stall", "lost", "out", "high water", "held by session"):
            assert not any(line.endswith(label) for line in lines), text
        assert any("elapsed " in line and line.endswith("s") for line in lines), text
        await pilot.press("escape", "q")


def test_the_summary_lays_figures_out_whole_at_any_width() -> None:
    """Big figures at 80 columns (the tester's `elapsed` / `11.1s` split): every line fits,
    and each label has its value on the same line."""
    snap = frozen.snapshot(39)
    s = dataclasses.replace(
        snap.sessions[0], tokens_in=1234567, tokens_out=1234560, tokens_lost=7, elapsed=11.1
    )
    detail = dataclasses.replace(frozen.details(snap)[s.id], snapshot=s)
    for width in range(40, 121, 7):
        lines = render_summary(detail, width).plain.splitlines()
        figures = [line for line in lines if not line.startswith("prompt")]
        assert all(len(line) <= width for line in figures), (width, lines)
        joined = "\n".join(lines)
        for pair in ("elapsed 11.1s", "lost 7", "tokens in 1234567", "out 1234560"):
            assert pair in joined, (width, lines)
