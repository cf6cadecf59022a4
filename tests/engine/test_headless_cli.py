"""`sluice run --headless`: the JSON schema of docs/json.md, the table, exit codes 0/1/2,
progress on a terminal, and the consumer's set-up and output (signals: test_headless_signals)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, main, run_command
from sluice.engine.chunk import Chunk
from sluice.engine.config import load_config
from sluice.engine.engine import Engine
from sluice.engine.headless import run_headless
from sluice.engine.prompts import plan_sessions
from sluice.engine.report import to_json_dict
from tests.fakes import other_tasks

FAST = """\
[queue]
maxsize = {maxsize}
batch_max = 2
[limits]
demo = 6
[consumer]
kind = "{kind}"
delay_ms = 1
path = "{path}"
[demo]
sessions = {sessions}
tokens = 30
rate = 3000
ttft_ms = 2
seed = 5
"""

NUMBER = (int, float)
PERCENTILE_KEYS = ("count", "mean", "p50", "p90", "p99", "max")
SESSION_KEYS: dict[str, Any] = {
    "id": str,
    "backend": str,
    "state": str,
    "error": (str, type(None)),
    "attempts": int,
    "slot_wait": (*NUMBER, type(None)),
    "ttft": (*NUMBER, type(None)),
    "stall": NUMBER,
    "stall_ratio": NUMBER,
    "depth": int,
    "maxsize": int,
    "high_water": int,
    "buffered_bytes": int,
    "tokens_in": int,
    "tokens_out": int,
    "tokens_lost": int,
    "rate_in": NUMBER,
    "rate_out": NUMBER,
    "memory_bytes": int,
    "elapsed": NUMBER,
    "streaming_time": NUMBER,
    "input_tokens": (int, type(None)),
    "output_tokens": (int, type(None)),
    "stop_reason": (str, type(None)),
    "cost_usd": (*NUMBER, type(None)),
    "turns": (int, type(None)),
    "tool_deltas": (int, type(None)),
    "thinking_deltas": (int, type(None)),
}
LATENCIES = ("itl", "queue_wait", "token_age", "consumer_call")
TOTAL_KEYS = (
    "sessions", "states", "tokens_in", "tokens_out", "tokens_lost", "rate_in", "rate_out",
    "depth", "buffered_bytes", "memory_bytes", "high_water", "stall", "tokens_lost_cancelled",
)  # fmt: skip
TOTAL_LATENCIES = (
    "queue_wait",
    "token_age",
    "consumer_call",
    "ttft",
    "slot_wait",
    "queue_wait_10s",
)
PROCESS_KEYS = (
    "rss", "cpu_percent", "memory_limit", "machine_memory", "loop_lag", "loop_lag_p99", "peak_rss",
    "loop_lag_p99_10s",
)  # fmt: skip
KNOB_KEYS = ("maxsize", "batch_max", "limits", "delay_ms", "rate", "sessions", "autotune")


def write_config(
    tmp_path: Path, *, maxsize: int = 16, kind: str = "sleep", sessions: int = 3, path: str = ""
) -> Path:
    config = tmp_path / "run.toml"
    db = path or str(tmp_path / "out.db")
    config.write_text(FAST.format(maxsize=maxsize, kind=kind, sessions=sessions, path=db))
    return config


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert out.count("\n") == 1, "one JSON object on one line"
    assert "Traceback" not in err
    return code, json.loads(out)


def check_schema(doc: dict[str, Any]) -> None:
    assert set(doc) == {
        "sessions",
        "totals",
        "process",
        "knobs",
        "backends",
        "autotune",
        "wall_time",
        "dropped_queued",
        "stopped_by",
        "cluster",
    }
    assert doc["autotune"] == []  # no [autotune] switch on in these runs
    assert doc["knobs"]["autotune"] == {"claude": False, "ollama": False, "maxsize": False}
    assert isinstance(doc["wall_time"], float) and doc["wall_time"] > 0
    assert doc["stopped_by"] in (None, "SIGINT", "SIGTERM", "SIGHUP")
    assert doc["cluster"] is None  # standalone (tests/cluster/ checks the cluster's member)
    for s in doc["sessions"]:
        expected = set(SESSION_KEYS) | {f"{n}_{k}" for n in LATENCIES for k in PERCENTILE_KEYS}
        assert set(s) == expected
        for key, kind in SESSION_KEYS.items():
            assert isinstance(s[key], kind), (key, s[key])
        for name in LATENCIES:
            assert isinstance(s[f"{name}_count"], int)
            for k in PERCENTILE_KEYS[1:]:
                assert s[f"{name}_{k}"] is None or isinstance(s[f"{name}_{k}"], NUMBER)
        assert s["state"] in ("queued", "streaming", "draining", "done", "failed", "cancelled")
    totals = doc["totals"]
    expected_totals = set(TOTAL_KEYS) | {
        f"{n}_{k}" for n in TOTAL_LATENCIES for k in PERCENTILE_KEYS
    }
    assert set(totals) == expected_totals
    assert set(totals["states"]) == {
        "queued", "streaming", "draining", "done", "failed", "cancelled"
    }  # fmt: skip
    assert set(doc["process"]) == set(PROCESS_KEYS)
    assert set(doc["knobs"]) == set(KNOB_KEYS)
    assert set(doc["knobs"]["limits"]) >= {"claude", "ollama", "demo"}
    for backend in doc["backends"]:
        assert set(backend) == {"name", "limit", "in_use", "waiting"}


def test_json_output_follows_the_documented_schema_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sessions=3)
    code, doc = run_json(["run", "--headless", "--json", "--config", str(config)], capsys)
    assert code == 0
    check_schema(doc)
    sessions = doc["sessions"]
    assert [s["id"] for s in sessions] == ["demo-0001", "demo-0002", "demo-0003"]
    assert all(s["state"] == "done" and s["error"] is None for s in sessions)
    assert all(s["tokens_in"] == s["tokens_out"] > 0 and s["tokens_lost"] == 0 for s in sessions)
    assert all(s["maxsize"] == 16 and s["high_water"] <= 16 for s in sessions)
    assert all(s["queue_wait_count"] == s["tokens_out"] for s in sessions)
    totals = doc["totals"]
    assert totals["sessions"] == 3 and totals["states"]["done"] == 3
    assert totals["tokens_out"] == sum(s["tokens_out"] for s in sessions)
    assert totals["queue_wait_count"] == totals["tokens_out"]
    assert doc["knobs"]["maxsize"] == 16 and doc["knobs"]["batch_max"] == 2
    assert doc["process"]["rss"] > 0


def test_sessions_option_overrides_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sessions=3)
    argv = ["run", "--headless", "--json", "--sessions", "5", "--config", str(config)]
    code, doc = run_json(argv, capsys)
    assert code == 0 and len(doc["sessions"]) == 5
    assert doc["knobs"]["sessions"] == 5


def test_a_failed_session_exits_1_and_reports_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_db = tmp_path / "x.db"
    not_a_db.write_bytes(b"not a database" * 100)
    config = write_config(tmp_path, kind="sqlite", sessions=2, path=str(not_a_db))
    code, doc = run_json(["run", "--headless", "--json", "--config", str(config)], capsys)
    assert code == 1
    check_schema(doc)
    assert {s["state"] for s in doc["sessions"]} == {"failed"}
    assert all(
        s["error"] == f"consumer: DatabaseError: {not_a_db}: file is not a database"
        for s in doc["sessions"]
    )
    assert doc["totals"]["states"]["failed"] == 2


def test_the_summary_table_has_a_row_per_session_and_a_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sessions=2)
    assert main(["run", "--headless", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["session", "backend", "state"]
    assert sum(line.startswith("demo-000") for line in lines) == 2
    assert any(line.startswith("total (2)") for line in lines)
    assert "session memory (buffers + bookkeeping, not RSS)" in out
    assert err == ""  # no progress when stderr is not a terminal


def test_duration_runs_the_demo_continuously_then_lets_streams_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sessions=2)
    argv = ["run", "--headless", "--json", "--duration", "0.3", "--config", str(config)]
    code, doc = run_json(argv, capsys)
    assert code == 0
    assert len(doc["sessions"]) > 2  # finished sessions were replaced while it ran
    assert all(s["state"] == "done" for s in doc["sessions"])
    assert doc["totals"]["tokens_lost"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sessions", "-1"], "--sessions -1: must be an integer from 0 to 10000"),
        (["--duration", "0"], "--duration 0: must be a number of seconds"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = write_config(tmp_path)
    assert main(["run", "--headless", "--config", str(config), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_when_it_is_a_terminal(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, sessions=2))
    args = build_parser().parse_args(["run", "--headless", "--duration", "0.7"])
    out, err = io.StringIO(), FakeTerminal()
    assert run_command(args, CommandIO(out, err), config) == 0
    assert "chunks" in err.getvalue() and "\r\x1b[K" in err.getvalue()
    assert "total" in out.getvalue()


async def test_a_consumer_injected_through_the_python_api_fails_its_sessions(
    tmp_path: Path,
) -> None:
    before = set(asyncio.all_tasks())
    config = load_config(write_config(tmp_path, sessions=2))

    class Webhook:
        """A user's consumer whose endpoint is down."""

        async def process(self, batch: Sequence[Chunk]) -> None:
            raise ConnectionRefusedError("webhook down")

    async with Engine(config, consumer=Webhook(), history=None) as engine:
        snapshot, wall = await run_headless(engine, plan_sessions(["demo"], None, 2, 2))
    assert other_tasks(before) == set()
    assert wall > 0
    assert [s.state for s in snapshot.sessions] == ["failed", "failed"]
    doc = to_json_dict(snapshot, wall_time=wall, dropped_queued=0, stopped_by=None)
    check_schema(doc)
    assert doc["sessions"][0]["error"] == "consumer: ConnectionRefusedError: webhook down"


def test_duration_drops_queued_sessions_and_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sessions=6)
    text = config.read_text().replace("demo = 6", "demo = 2")
    assert text != config.read_text(), "the fast config must set a demo limit to lower"
    config.write_text(text)
    argv = ["run", "--headless", "--json", "--duration", "0.2", "--config", str(config)]
    code = main(argv)
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 0
    assert "4 still queued for a slot dropped" in err
    # Continuous mode keeps six going under a limit of two: at the deadline two stream (and
    # finish) and four wait for a slot; those four are dropped, none of them in `sessions`.
    assert doc["dropped_queued"] == 4
    assert {s["state"] for s in doc["sessions"]} == {"done"}
    assert doc["totals"]["tokens_lost"] == 0


def test_an_unusable_sqlite_path_stops_the_run_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "x.db"
    config = write_config(tmp_path, kind="sqlite", path=str(missing))
    assert main(["run", "--headless", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f'sluice run: [consumer] path = "{missing}": folder {missing.parent} does not exist\n'
    )


def test_with_json_the_stdout_consumer_writes_its_text_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, kind="stdout", sessions=2)
    code = main(["run", "--headless", "--json", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)  # before the fix: the text came first on stdout and this failed
    check_schema(doc)
    assert doc["totals"]["tokens_out"] > 0
    assert len(err.split()) >= doc["totals"]["tokens_out"] // 2  # the words, on stderr
