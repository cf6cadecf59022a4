"""The app-cost part of `sluice bench`: its report, its goals as ratios, its tmux check, and a
tiny real run (when tmux is here). Shapes only, never times."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from sluice.bench.app_cost import (
    AppCostResult,
    AttachCost,
    measure_app_cost,
    p99,
    write_config,
)
from sluice.bench.report import goals, markdown
from sluice.bench.runner import BenchParams, BenchResult, result_from_dict
from sluice.cli.bench import build_params
from sluice.cli.command import CommandIO, UsageError
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config, load_config


def result(sessions: int, cpu: float, keys: list[float], limit: int = 64) -> AppCostResult:
    return AppCostResult(
        sessions=sessions,
        demo_limit=min(sessions, limit),
        app_cpu_percent=cpu,
        headless_cpu_percent=1.5,
        others_cpu_percent=3.0,
        key_ms=tuple(keys),
        in_app_key_ms=(4.0, 6.0),
        snapshot_ms=0.2,
        app_rss_mb=50.0,
        lag_label_shown=True,
    )


def bench_with(*app: AppCostResult, skipped: str | None = None) -> BenchResult:
    params = BenchParams(parts=("app",))
    return BenchResult(
        machine={
            "cores": 2,
            "python": "3.11",
            "implementation": "cpython",
            "platform": "Linux",
            "load_average": [0.1, 0.1, 0.1],
        },
        params=_params_dict(params),
        wall_s=1.0,
        app=app,
        app_skipped=skipped,
    )


def _params_dict(params: BenchParams) -> dict[str, object]:
    data = asdict(params)
    data["parts"] = list(params.parts)
    return data


def test_p99_is_nearest_rank() -> None:
    assert p99([5.0]) == 5.0
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 51)]) == 50.0  # fewer than 100: the largest


def test_goals_are_ratios_of_the_measured_to_the_target() -> None:
    run = bench_with(
        result(12, 9.0, [10.0]),  # all 12 streaming: reported, not the goal's row
        result(12, 3.0, [10.0] * 49 + [60.0], limit=4),  # the shipped app
        result(1000, 30.0, [50.0, 150.0]),
    )
    checked = {g.name: g for g in goals(run)}
    cpu = checked["the app showing 12 sessions (demo limit 4): CPU < 5% of a core"]
    assert cpu.met and "3.0% = 0.60x the goal" in cpu.measured
    keys = checked["1,000 sessions: key press to screen p99 < 100 ms"]
    assert not keys.met and "150 ms = 1.50x the goal" in keys.measured
    assert checked["the header's loop-lag p99 covers the last 10 s"].met
    text = markdown(run)
    assert "### App cost" in text and "| 1,000 | 64 | 30.0% |" in text
    again = result_from_dict(json.loads(json.dumps(run.to_dict())))
    assert again.app == run.app and markdown(again) == text


def test_the_attached_apps_figures_are_reported_with_their_goal() -> None:
    attach = AttachCost(4.0, 9.0, 30.0, (20.0, 140.0), (15.0, 160.0), 60.0)
    run = bench_with(replace(result(1000, 30.0, [50.0]), attach=attach))
    checked = {g.name: g for g in goals(run)}
    goal = checked[
        "1,000 sessions, sluice attach: key press to screen through the API p99 < 150 ms"
    ]
    assert not goal.met and "160 ms = 1.07x the goal (screen 140 ms, engine 160 ms" in goal.measured
    text = markdown(run)
    assert "| 1,000 | 64 | 4.0% | 9.0% | 30% | 80 / 140 ms | 88 / 160 ms | 60 MiB |" in text
    again = result_from_dict(json.loads(json.dumps(run.to_dict())))
    assert again.app == run.app


def test_a_run_without_tmux_says_the_part_was_skipped() -> None:
    text = markdown(bench_with(skipped="needs tmux on PATH"))
    assert "### App cost\n\nSkipped: needs tmux on PATH." in text


@pytest.mark.parametrize(
    ("text", "sizes"), [("12", ((12, 12),)), ("12:4,1000", ((12, 4), (1000, 64)))]
)
def test_app_sizes_take_sessions_and_an_optional_limit(
    text: str, sizes: tuple[tuple[int, int], ...]
) -> None:
    parser = build_parser()
    assert build_params(parser.parse_args(["bench", "--app-sizes", text])).app_sizes == sizes
    with pytest.raises(UsageError, match="--app-sizes 12:x"):
        build_params(parser.parse_args(["bench", "--app-sizes", "12:x"]))


def test_only_app_without_tmux_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    err = io.StringIO()
    args = build_parser().parse_args(["bench", "--only", "app"])
    code = run_command(args, CommandIO(io.StringIO(), err), Config())
    assert code == 2
    assert "--only app: the app part needs tmux on PATH" in err.getvalue()


def test_the_config_it_runs_the_app_with(tmp_path: Path) -> None:
    shipped = Config()
    edited = {"demo.sessions", "limits.demo"}
    for sessions, limit in ((12, 4), (1000, 64)):
        config = load_config(write_config(tmp_path, sessions, limit))
        assert (config["demo.sessions"], config["limits.demo"]) == (sessions, limit)
        rest = [name for name in shipped.values if name not in edited]
        assert all(config[name] == shipped[name] for name in rest)  # the rest as shipped


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_tiny_real_run_measures_every_figure() -> None:
    r = measure_app_cost(4, 2, warmup=1.5, window=1.0, presses=2)
    assert r.sessions == 4 and r.demo_limit == 2
    assert len(r.key_ms) == 4 and all(ms > 0 for ms in r.key_ms)
    assert r.in_app_key_ms and r.app_cpu_percent > 0 and r.headless_cpu_percent > 0
    assert r.snapshot_ms > 0 and r.app_rss_mb > 0
    assert r.lag_label_shown
    a = r.attach
    assert a is not None and len(a.screen_ms) == len(a.engine_ms) == 2
    assert a.attach_cpu_percent > 0 and a.served_cpu_percent > 0 and a.attach_rss_mb > 0
