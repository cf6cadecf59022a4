"""`sluice monitor MODULE:FUNCTION`: loading the workload, refusing bad targets, watching it."""

from __future__ import annotations

import pytest

from sluice.cli.main import main
from sluice.cli.monitor import WorkloadError, load_workload
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.tui.app import SluiceApp
from sluice.tui.table import SessionTable
from tests.fakes import wait_until

from .helpers import record_notes


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("examples.monitor_workload", "expected MODULE:FUNCTION"),
        (":main", "expected MODULE:FUNCTION"),
        ("no_such_module_xyz:main", "cannot import 'no_such_module_xyz'"),
        ("examples.monitor_workload:nope", "has no attribute 'nope'"),
        ("examples.monitor_workload:PROMPTS", "must be an async function"),
        ("examples/missing.py:main", "no such file"),
    ],
)
def test_bad_targets_are_refused_with_a_reason(target: str, reason: str) -> None:
    with pytest.raises(WorkloadError, match=reason):
        load_workload(target)


def test_cli_exits_2_on_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "examples.monitor_workload:nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sluice monitor: ") and "nope" in err


def test_a_file_path_target_loads() -> None:
    func = load_workload("examples/monitor_workload.py:main")
    assert func.__name__ == "main"


async def test_the_example_workload_runs_under_the_app(fast_config: Config) -> None:
    workload = load_workload("examples.monitor_workload:main")
    app = SluiceApp(config=fast_config, continuous=False, workload=workload, table_interval=0.1)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(
            lambda: any(s.startswith("hook-0-") for s in app.engine.sessions), pause=pilot.pause
        )
        await wait_until(
            lambda: any(s.tokens_out > 0 for s in app.engine.snapshot().sessions), pause=pilot.pause
        )
        await pilot.pause(0.2)
        table = app.query_one("#sessions", SessionTable)
        shown = set(table.row_ids())
        assert any(row.startswith("hook-") for row in shown)
        # no demo sessions: only the workload's own
        assert all(s.startswith("hook-") for s in app.engine.sessions)
        await pilot.press("q")
    assert app.engine.closed


async def test_a_failing_workload_is_shown_and_the_app_stays(fast_config: Config) -> None:
    async def broken(engine: Engine) -> None:
        engine.add_demo_sessions(1)
        raise RuntimeError("workload exploded")

    app = SluiceApp(config=fast_config, continuous=False, workload=broken)
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: any("workload exploded" in m for m, _ in notes), pause=pilot.pause)
        assert notes[-1][1]["severity"] == "error"
        assert app.is_running
        await pilot.press("q")


def test_sluice_alone_needs_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    # under pytest stdin is not a terminal: the app refuses with a pointer to `sluice run`
    assert main([]) == 2
    assert "sluice run" in capsys.readouterr().err


def test_app_saves_to_the_config_it_was_started_with(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False)
    assert app.config_path == fast_config.path
