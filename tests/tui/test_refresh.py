"""The app repaints only what changed: sparkline columns fixed to the clock, bar heights
instead of raw values, readouts that skip equal content, no frame when nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.screen import Screen

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot
from sluice.tui.app import SluiceApp
from sluice.tui.panels import SparkHistory, bar_levels
from sluice.tui.readout import Readout
from sluice.tui.source import FrozenSource

from . import frozen


def at(snap: EngineSnapshot, t: float, rate: float) -> EngineSnapshot:
    """`snap` as if taken at `t` with `rate` chunks/s in."""
    from dataclasses import replace

    return replace(snap, taken_at=t, totals=replace(snap.totals, rate_in=rate))


def test_columns_are_fixed_to_the_clock_and_hold_the_largest_value() -> None:
    history = SparkHistory(window=60.0)
    base = frozen.snapshot(0)
    # 6 columns of 10 s, the newest [120, 130): [70, 80) ... [120, 130)
    for t, rate in ((100.0, 1.0), (104.0, 7.0), (109.9, 2.0), (125.0, 5.0)):
        assert history.add(at(base, t, rate))
    # before 100: no data (None, drawn blank); [100, 110): max(1, 7, 2); [110, 120) empty:
    # the one before it; [120, 130): 5
    assert history.columns("rate", 6) == [None, None, None, 7.0, 7.0, 5.0]
    assert not history.add(at(base, 125.0, 9.0))  # not newer: ignored
    history.add(at(base, 126.0, 4.0))  # smaller, same column: nothing changes
    assert history.columns("rate", 6) == [None, None, None, 7.0, 7.0, 5.0]
    history.add(at(base, 131.0, 1.0))  # a new column: the others move left by one
    assert history.columns("rate", 6) == [None, None, 7.0, 7.0, 5.0, 1.0]
    assert SparkHistory().columns("rate", 6) == []


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.01, 7.0), st.floats(0.0, 1e6), st.booleans()),
        min_size=1,
        max_size=120,
    ),
    width=st.integers(1, 30),
)
def test_columns_kept_point_by_point_equal_columns_worked_out_afresh(
    steps: list[tuple[float, float, bool]], width: int
) -> None:
    kept, fresh_points = SparkHistory(window=60.0), []
    base = frozen.snapshot(0)
    t = 1000.0
    for n, (gap, rate, look) in enumerate(steps):
        t += gap
        kept.add(at(base, t, rate))
        fresh_points.append(at(base, t, rate))
        if not look and n < len(steps) - 1:
            continue  # several samples between two redraws
        fresh = SparkHistory(window=60.0)
        for point in fresh_points:
            fresh.add(point)
        assert kept.columns("rate", width) == fresh.columns("rate", width)


def sparkline_text(data: Sequence[float], width: int) -> str:
    """What Textual's sparkline draws for `data` (bars only)."""
    console = Console(width=width, color_system=None)
    segments = console.render(SparklineRenderable(data, width=width), console.options)
    return "".join(segment.text for segment in segments)


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        [48.1e6, 48.2e6, 48.2e6, 49.9e6, 51.0e6, 50.0e6],
        [3.0, 3.0, 3.0],
        [0.001, 0.5, 0.25, 0.125, 0.9, 0.33],
    ],
)
def test_bar_levels_draw_the_same_bars_as_the_values(values: list[float]) -> None:
    width = len(values)
    assert sparkline_text(bar_levels(values), width) == sparkline_text(values, width)


async def test_sparklines_leave_the_time_before_the_first_sample_blank() -> None:
    """Five seconds after start, the rest of the minute is blank, not the first sample
    drawn across it (a start-up peak looked like a minute of load)."""
    base = frozen.snapshot(0)
    t0 = base.taken_at
    snaps = [at(base, t0 + n, rate) for n, rate in enumerate((77.0, 40.0, 20.0, 5.0, 1.0, 1.0))]
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource(snaps),
        clock=frozen.FrozenClock(),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in snaps:
            app.refresh_now()
        await pilot.pause()
        spark = app.query_one("#spark-rate")
        line = "".join(segment.text for segment in spark.render_line(0))
        drawn = line.strip()
        assert line.startswith(" " * (len(line) - 6))  # 60 s over its width: 6 s drawn
        assert drawn and line.endswith(drawn) and set(drawn) <= set("▁▂▃▄▅▆▇█")
        await pilot.press("q")


def test_a_readout_does_not_repaint_what_it_already_shows() -> None:
    readout = Readout(Text("12 sessions", style="bold"))
    repaints: list[None] = []
    readout.refresh = lambda *a, **k: repaints.append(None)  # type: ignore[method-assign]
    readout.update(Text("12 sessions", style="bold"))
    assert repaints == []
    readout.update(Text("12 sessions", style="red"))  # same text, another look
    readout.update(Text("13 sessions", style="red"))
    assert len(repaints) == 2


async def test_nothing_changed_means_no_frame() -> None:
    snap = frozen.snapshot(10)
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([snap]),
        clock=frozen.FrozenClock(),
        continuous=False,
        fast_interval=0.02,
        header_interval=0.03,
        table_interval=0.05,
    )
    frames: list[Any] = []
    original = Screen._compositor_refresh

    def counting(self: Screen[Any]) -> None:
        frames.append(None)
        original(self)

    Screen._compositor_refresh = counting  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            # Settle (first frames, the first refresh of everything): wait for a quiet
            # second, however long a loaded machine takes to get there (bounded).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30.0
            while True:
                seen = len(frames)
                await pilot.pause(1.0)
                if len(frames) == seen:
                    break
                assert loop.time() < deadline, "the screen never stopped redrawing"
            frames.clear()
            await pilot.pause(0.5)  # ten table refreshes, twenty-five samples
            assert frames == []
            await pilot.press("q")
    finally:
        Screen._compositor_refresh = original  # type: ignore[method-assign]
