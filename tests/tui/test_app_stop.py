"""Leaving the app is bounded: `q`, Ctrl+Q and a stop signal end it even when a consumer
swallows CancelledError (its session is reported abandoned), with the signal's exit code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from tests.fakes import wait_until

from .helpers import streaming


class Stubborn:
    """A consumer that sleeps through every cancel until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()

    async def process(self, batch: Sequence[Chunk]) -> None:
        self.hanging.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                pass


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_quitting_is_bounded_when_a_consumer_swallows_cancel(
    fast_config: Config, key: str
) -> None:
    consumer = Stubborn()
    engine = Engine(fast_config, consumer=consumer, shutdown_grace=0.2)
    app = SluiceApp(engine=engine)
    try:
        async with asyncio.timeout(30):  # before the fix: the key press never returned
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_until(lambda: len(streaming(app)) >= 1, pause=pilot.pause)
                await asyncio.wait_for(consumer.hanging.wait(), 10)
                await pilot.press(key)
        assert app.return_code == 0
        errors = {s.error for s in engine.sessions.values() if s.state == "failed"}
        assert "consumer: Abandoned: did not stop within 0.2s of cancel" in errors
    finally:
        consumer.release.set()
        await asyncio.sleep(0)


async def test_stop_exits_the_app_with_the_signals_code(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config)
    async with asyncio.timeout(30):
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(lambda: len(streaming(app)) >= 1, pause=pilot.pause)
            app.stop(143)
            app.stop(129)  # a second signal changes nothing
            await pilot.pause(0.1)
    assert app.return_code == 143
    assert app.engine.closed
    assert {s.state for s in app.engine.sessions.values()} <= {"done", "cancelled"}


def test_the_app_refuses_an_unusable_sqlite_path_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.cli.main import main

    missing = tmp_path / "gone" / "x.db"
    config = tmp_path / "c.toml"
    config.write_text(f'[consumer]\nkind = "sqlite"\npath = "{missing}"\n')
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["--config", str(config)]) == 2
    _, err = capsys.readouterr()
    assert err == f'sluice: [consumer] path = "{missing}": folder {missing.parent} does not exist\n'
