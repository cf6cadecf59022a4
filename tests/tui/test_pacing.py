"""How often the app samples: as often as the sparklines can show (never while hidden),
within a share of a core, and never in front of a key's frame."""

from __future__ import annotations

import pytest

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot
from sluice.tui import app as app_module
from sluice.tui.app import SluiceApp
from sluice.tui.pacing import Pace
from sluice.tui.source import FrozenSource
from tests.fakes import wait_until

from . import frozen


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_job_is_due_after_its_period_and_after_its_cost_fits_the_share() -> None:
    clock = Clock()
    pace = Pace(share=0.01, clock=clock)
    assert pace.due(1.0)  # never ran
    with pace.run():
        clock.now += 0.002  # a 2 ms run: 0.2 s keeps it within 1% of a core
    clock.now += 0.1
    assert not pace.due(0.05)  # the period passed, the cost's share not yet
    clock.now += 0.1
    assert pace.due(0.05) and not pace.due(0.5)  # now the period decides
    with pace.run():
        clock.now += 0.030  # a 30 ms run (1,000 sessions): 3 s before the next
    clock.now += 2.0
    assert not pace.due(0.2)
    clock.now += 1.0
    assert pace.due(0.2)
    with pytest.raises(ValueError):
        Pace(share=0)


class CountingSource(FrozenSource):
    """A frozen source that counts the samples of totals only."""

    def __init__(self, snaps: list[EngineSnapshot]) -> None:
        super().__init__(snaps)
        self.totals_samples = 0

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        if not sessions:
            self.totals_samples += 1
        return super().snapshot(sessions=sessions)


def counting_app(source: CountingSource, fast_interval: float = 0.01) -> SluiceApp:
    return SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=source,
        continuous=False,
        fast_interval=fast_interval,
        header_interval=60,  # only the sparklines' timer runs in the test's time
        table_interval=60,
    )


@pytest.mark.parametrize(("width", "hidden"), [(80, True), (160, False)])
async def test_no_sampling_for_sparklines_that_are_hidden(
    width: int, hidden: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()  # the pace's clock: it moves only when the test moves it
    monkeypatch.setattr(app_module, "Pace", lambda: Pace(clock=clock))
    source = CountingSource([frozen.snapshot(t) for t in range(3)])
    app = counting_app(source)
    async with app.run_test(size=(width, 40)) as pilot:
        if hidden:
            await pilot.pause(0.4)  # forty ticks of the sparklines' timer
            clock.now += 60.0
            await pilot.pause(0.2)
            assert source.totals_samples == 0  # under 100 columns nothing shows them
        else:
            await wait_until(lambda: source.totals_samples >= 1, pause=pilot.pause)
            first = source.totals_samples
            await pilot.pause(0.4)  # forty more ticks, no time passed for the pace
            assert source.totals_samples == first
            clock.now += 0.5  # less than half a column (a column spans ~2 s)
            await pilot.pause(0.2)
            assert source.totals_samples == first
            clock.now += 5.0
            await wait_until(lambda: source.totals_samples > first, pause=pilot.pause)
        await pilot.press("q")


async def test_periodic_work_waits_for_the_frame_of_a_key_just_pressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "KEY_FIRST_S", 3.0)  # longer than a press, however slow
    app = counting_app(CountingSource([frozen.snapshot(0)]), fast_interval=60)
    done: list[str] = []
    async with app.run_test(size=(160, 40)) as pilot:
        app._after_keys(lambda: done.append("idle"))
        assert done == ["idle"]  # no key lately: at once
        await pilot.press("j")
        app._after_keys(lambda: done.append("after key"))
        assert done == ["idle"]  # put off: the key's effect is drawn first
        await wait_until(lambda: len(done) > 1, pause=pilot.pause)
        await pilot.pause(0.1)
        assert done == ["idle", "after key"]  # then done, once
        await pilot.press("q")


async def test_p_draws_the_header_strip_alone_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame that shows PAUSED spans the header only: with the footer's word or the
    sparklines in it, it would span the screen and take longer to reach it."""
    from textual._compositor import Compositor
    from textual.geometry import Region

    crops: list[Region] = []
    original = Compositor.render_partial_update

    def recording(self: Compositor) -> object:
        if self._dirty_regions:
            crops.append(Region.from_union(list(self._dirty_regions)))
        return original(self)

    monkeypatch.setattr(Compositor, "render_partial_update", recording)
    app = SluiceApp(
        config=Config(),
        engine=Engine(Config()),
        source=FrozenSource([frozen.snapshot(t) for t in range(3)]),
        continuous=False,
        live=False,
    )
    async with app.run_test(size=(160, 48)) as pilot:
        app.refresh_now()
        for _ in range(50):  # until the first screens' frames are all out
            seen = len(crops)
            await pilot.pause(0.05)
            if len(crops) == seen:
                break
        crops.clear()
        await pilot.press("p")
        await pilot.pause()
        assert app.paused and crops
        header = next(crop for crop in crops if crop.y == 0)  # the frame showing PAUSED
        assert header.height <= 2, crops  # the header's two lines, not the screen
        await pilot.press("q")


class KeyDuringSample(FrozenSource):
    """A source during whose sample of every session a key arrives, as the terminal's
    input thread hands one over while the loop is busy."""

    def __init__(self, snaps: list[EngineSnapshot]) -> None:
        super().__init__(snaps)
        self.app: SluiceApp | None = None

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot:
        if sessions and self.app is not None:
            from textual import events

            self.app._driver.send_message(events.Key("j", None))  # type: ignore[union-attr]
            self.app = None  # once
        return super().snapshot(sessions=sessions)


async def test_a_key_that_arrives_during_the_tables_sample_is_handled_before_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At 1,000 sessions the sample takes 10-30 ms and the table's rows about as long
    # again: the key must not wait for both (nor its frame for the table's).
    monkeypatch.setattr(app_module, "KEY_FIRST_S", 3.0)  # longer than a press, however slow
    source = KeyDuringSample([frozen.snapshot(t) for t in range(3)])
    app = counting_app(source, fast_interval=60)
    drawn: list[bool] = []  # per table draw: had the key been handled?
    original = app._draw_table

    def recording() -> None:
        drawn.append(app._key_at > 0)
        original()

    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        app._draw_table = recording  # type: ignore[method-assign]
        source.app = app
        app._tick_table()
        await wait_until(lambda: bool(drawn), pause=pilot.pause)
        assert drawn == [True]  # the key first, the table after it
        await pilot.press("q")


async def test_table_rows_wait_for_a_key_just_pressed(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.tui.table import SessionTable

    monkeypatch.setattr(app_module, "KEY_FIRST_S", 3.0)  # longer than a press, however slow
    app = counting_app(CountingSource([frozen.snapshot(0)]), fast_interval=60)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.query_one(SessionTable)
        assert table.hold_repaint() == 0  # no key yet
        await pilot.press("j")
        assert 0 < table.hold_repaint() <= 3.0  # the rows wait for the key's frame
        app._key_at -= 3.0  # as if the key came that long ago
        assert table.hold_repaint() == 0
        await pilot.press("q")
