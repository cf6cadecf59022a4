"""Smoke runs of every benchmark part at tiny sizes: shapes and zero loss, never times."""

from __future__ import annotations

import argparse
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from sluice.bench.anthropic_sse import render_stream
from sluice.bench.long_response import LongResult, run_long
from sluice.bench.overhead import VARIANTS, run_overhead
from sluice.bench.plot import scenario_svg
from sluice.bench.report import goals, markdown
from sluice.bench.runner import BenchParams, result_from_dict, run_bench
from sluice.bench.scale import idle_session_memory, run_scale, streaming_session_memory
from sluice.bench.scenario import (
    MODES,
    ScenarioResult,
    ScenarioSpec,
    expected_duration,
    makespan,
    run_scenario,
)
from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config

# A model 2x faster than the consumer, as in the original (40 tokens/s vs 20 calls/s).
TINY = ScenarioSpec(
    sessions=4, limit=2, delay_ms=5.0, rate=400.0, tokens=40, ttft_ms=10.0, maxsize=8, batch_max=8
)


# -- the clock-free schedule ----------------------------------------------------------------


def test_expected_duration_generation_only() -> None:
    # No consumer time: the last of 11 chunks arrives 10 intervals after the first token.
    assert expected_duration(11, ttft=0.3, rate=40.0, delay=0.0, batch_max=1) == pytest.approx(
        0.3 + 10 / 40
    )


def test_expected_duration_consumer_bound_per_chunk() -> None:
    # 50 ms per chunk vs 25 ms between chunks: n calls back to back after the first arrives.
    assert expected_duration(10, ttft=0.3, rate=40.0, delay=0.05, batch_max=1) == pytest.approx(
        0.3 + 10 * 0.05
    )


def test_expected_duration_batched_keeps_up() -> None:
    # Batches take what arrived meanwhile: finishing one call after the last chunk arrives.
    got = expected_duration(100, ttft=0.3, rate=40.0, delay=0.05, batch_max=16)
    assert got == pytest.approx(0.3 + 99 / 40 + 0.05, abs=0.05)
    assert got < expected_duration(100, ttft=0.3, rate=40.0, delay=0.05, batch_max=1)


def test_makespan_first_come_first_served() -> None:
    assert makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert makespan([1.0] * 6, 2) == 3.0
    assert makespan([], 4) == 0.0
    with pytest.raises(ValueError):
        makespan([1.0], 0)


# -- each part ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
async def test_scenario_mode_runs_whole_without_loss(mode: str) -> None:
    r = await run_scenario(mode, TINY)
    assert r.mode == mode and r.sessions == TINY.sessions
    assert r.failed == 0
    assert r.tokens_lost == 0
    assert r.tokens_out == r.tokens_in == r.tokens_expected > 0
    assert r.completion_s > 0 and r.estimate_s > 0
    assert r.series and all(len(row) == 4 for row in r.series)
    assert r.peak_rss >= r.rss_start > 0
    assert 0.0 <= r.stall_ratio <= 1.0
    if r.maxsize:
        assert r.high_water <= r.maxsize
    if mode == "generation":
        assert r.consumer == "null"
    else:
        assert r.queue_wait_p99 is not None and r.token_age_p99 is not None
    again = ScenarioResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r


async def test_unbounded_buffers_more_than_bounded() -> None:
    unbounded = await run_scenario("unbounded", TINY)
    bounded = await run_scenario("bounded", TINY)
    assert bounded.high_water <= TINY.maxsize < unbounded.high_water
    assert unbounded.stall_ratio == 0.0  # nothing ever waits on an unbounded buffer


async def test_overhead_shape() -> None:
    r = await run_overhead(chunks=500, rounds=1)
    assert set(r.rate) == set(VARIANTS) == set(r.ratio)
    assert r.ratio["queue"] == 1.0
    assert all(v > 0 for v in r.rate.values())
    assert r.us_per_chunk("session") > 0


async def test_scale_shape() -> None:
    r = await run_scale(30, rate=50.0, window=0.3, warmup=0.2)
    assert r.sessions == 30 and r.nominal_cps == 1500.0
    assert r.streaming == 30
    assert r.delivered_cps > 0 and r.cpu_percent >= 0
    assert r.loop_lag_p99 is not None
    assert r.bookkeeping_engine > 0
    assert not r.profiled and r.profile == ()


async def test_scale_profile_names_functions() -> None:
    r = await run_scale(10, rate=50.0, window=0.3, warmup=0.1, profile=True, top=5)
    assert r.profiled and 0 < len(r.profile) <= 5
    assert all(0.0 <= share <= 1.0 for _, share in r.profile)


async def test_idle_and_steady_memory_shape() -> None:
    idle = await idle_session_memory(30)
    assert idle.sessions == 30 and idle.bytes_per_session > 0 and idle.engine_reported > 0
    assert any(name.startswith("engine/") for name, _ in idle.by_file)
    steady = await streaming_session_memory(4, rate=5000.0, chunks_each=60)
    assert steady.bytes_per_session > 0 and steady.model_state > 0
    assert steady.engine_per_session == pytest.approx(steady.bytes_per_session - steady.model_state)


async def test_long_responses_shape() -> None:
    r = await run_long((200, 600), rounds=2)
    assert (r.sizes, r.rounds) == ((200, 600), 2)
    assert all(us > 0 for us in r.cpu_us) and all(w > 0 for w in r.wall_s)
    assert r.ratio > 0 and r.lag_max is not None
    assert LongResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(ValueError):
        await run_long((200, 200), rounds=1)


def test_long_response_server_streams_what_the_api_sends() -> None:
    body = render_stream(3).decode()
    events = [block.split("\n")[0] for block in body.strip().split("\n\n")]
    assert events == [
        "event: message_start",
        "event: content_block_start",
        "event: ping",
        *["event: content_block_delta"] * 3,
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]


# -- the whole run, its report and its plot -------------------------------------------------


TINY_PARAMS = replace(
    BenchParams(),
    # The app part drives the real app through tmux: tests/test_bench_app_cost.py has its own;
    # the cluster part runs serve nodes on Redis: tests/cluster/test_bench_cluster.py has its.
    parts=tuple(part for part in BenchParams().parts if part not in ("app", "cluster")),
    tokens=TINY.tokens,
    sessions=TINY.sessions,
    limit=TINY.limit,
    delay_ms=TINY.delay_ms,
    rate=TINY.rate,
    ttft_ms=TINY.ttft_ms,
    overhead_chunks=300,
    overhead_rounds=1,
    scale_sizes=(20,),
    scale_window=0.3,
    scale_warmup=0.2,
    idle_sessions=20,
    steady_sessions=3,
    long_sizes=(100, 300),
    long_rounds=1,
    serve_sessions=20,
    serve_window=0.3,
    serve_rounds=1,
    serve_scrapes=2,
    agent_deltas=2_000,
)


def test_run_bench_in_process_report_and_plot() -> None:
    result = run_bench(TINY_PARAMS, isolate=False)
    assert result.errors == ()
    assert [r.mode for r in result.scenario] == list(MODES)
    assert result.overhead is not None and len(result.scale) == 1
    assert result.idle is not None and result.steady is not None
    text = markdown(result)
    assert result.long is not None and result.long.sizes == (100, 300)
    for heading in (
        "Original scenario",
        "Engine overhead",
        "Scale",
        "Memory per session",
        "Long responses",
        "Serving (`sluice serve`)",
        "Agent back-pressure",
    ):
        assert f"### {heading}" in text
    assert "| unbounded |" in text and "| batched |" in text
    checked = {g.name: g for g in goals(result)}
    assert checked["zero tokens lost, every mode"].met
    assert checked["bounded modes hold at most maxsize chunks per session"].met
    data = json.loads(json.dumps(result.to_dict()))
    assert {"machine", "params", "scenario", "overhead", "scale", "idle", "steady", "long"} <= set(
        data
    )
    assert markdown(result_from_dict(data)) == text  # a saved --json run renders the same
    svg = ET.fromstring(scenario_svg(result.scenario))
    polylines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(polylines) == 3 * len(MODES)  # three panels, one line per mode
    assert all(p.get("points") for p in polylines)


def test_run_bench_isolated_scenario_in_worker_processes() -> None:
    result = run_bench(replace(TINY_PARAMS, parts=("scenario",)), isolate=True)
    assert result.errors == ()
    assert sorted(r.mode for r in result.scenario) == sorted(MODES)
    assert all(r.tokens_lost == 0 for r in result.scenario)


# -- the command ----------------------------------------------------------------------------


def bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def run_bench_command(
    args: argparse.Namespace, config: Config, *, stdout: io.StringIO, stderr: io.StringIO
) -> int:
    """`sluice bench` in-process with these streams."""
    return run_command(args, CommandIO(stdout, stderr), config)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--only", "scenario,nonsense"), "--only scenario,nonsense: parts must be among"),
        (("--tokens", "0"), "--tokens 0"),
        (("--scale-sizes", "10,x"), "--scale-sizes 10,x"),
        (("--scale-window", "0"), "--scale-window 0"),
        (("--overhead-chunks", "5"), "--overhead-chunks 5"),
        (("--plot", "/no/such/folder/x.svg"), "--plot /no/such/folder/x.svg"),
    ],
)
def test_bench_bad_input_exit_2(argv: tuple[str, ...], needle: str) -> None:
    err, out = io.StringIO(), io.StringIO()
    assert run_bench_command(bench_args(*argv), Config(), stdout=out, stderr=err) == 2
    assert needle in err.getvalue() and err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


def test_bench_command_json_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "bench.svg"
    out = io.StringIO()
    args = bench_args("--quick", "--only", "overhead", "--in-process", "--json")
    assert run_bench_command(args, Config(), stdout=out, stderr=io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["overhead"]["chunks"] == 5000 and data["scenario"] == []
    assert any(g["name"].startswith("engine >= 0.5x") for g in data["goals"])
    args = bench_args("--quick", "--only", "scenario", "--in-process", "--plot", str(plot))
    out = io.StringIO()
    assert run_bench_command(args, Config(), stdout=out, stderr=io.StringIO()) == 0
    assert "### Original scenario" in out.getvalue()
    assert ET.parse(plot).getroot().tag.endswith("svg")
