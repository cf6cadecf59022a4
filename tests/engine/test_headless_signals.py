"""Stopping a headless run from outside, in real subprocesses: SIGINT, SIGTERM and SIGHUP
cancel every session, print the summary (table or one JSON object) and exit 130 / 143 / 129;
a reader that goes away (`| true`) ends the run without a traceback; and a consumer that
swallows its cancel does not keep the process alive."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SLUICE = Path(sys.executable).with_name("sluice")
COMMAND = [str(SLUICE)] if SLUICE.exists() else [sys.executable, "-m", "sluice"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDEVMODE": "1"}
NOISE = ("Traceback", "Task was destroyed", "never retrieved", "Exception ignored",
         "was never awaited", "ResourceWarning")  # fmt: skip

SLOW = """\
[limits]
demo = 4
[consumer]
kind = "{kind}"
delay_ms = 20
path = "{path}"
[demo]
sessions = 8
tokens = 100000
rate = 200
ttft_ms = 1
"""


def start(
    tmp_path: Path, kind: str, *args: str, stdout: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    config = tmp_path / "slow.toml"
    config.write_text(SLOW.format(kind=kind, path=tmp_path / "slow.db"))
    return subprocess.Popen(
        [*COMMAND, "run", "--headless", "--config", str(config), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=ENV,
    )


def rows_written(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert proc.poll() is None, "the run ended before it was signalled"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def finish(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (out or b"").decode(), err.decode()


@pytest.mark.parametrize(
    ("sig", "code", "shown"),
    [
        (signal.SIGINT, 130, "SIGINT (Ctrl+C)"),
        (signal.SIGTERM, 143, "SIGTERM"),
        (signal.SIGHUP, 129, "SIGHUP"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_stop_signal_cancels_everything_prints_the_summary_and_exits_128_plus_n(
    tmp_path: Path, sig: signal.Signals, code: int, shown: str, as_json: bool
) -> None:
    proc = start(tmp_path, "sqlite", *(["--json"] if as_json else []))
    wait_until(lambda: rows_written(tmp_path / "slow.db") > 0, proc)  # sessions are streaming
    proc.send_signal(sig)
    out, err = finish(proc)
    assert proc.returncode == code, err  # before the fix: -15 / -1 and nothing printed
    for bad in NOISE:
        assert bad not in err, err
    assert f"sluice run: stopped by {shown}; the sessions still running were cancelled; " in err
    assert "sessions: 8 cancelled; chunks in " in err
    assert "/ lost " in err and err.count("\n") == 1
    if as_json:
        doc = json.loads(out)  # the whole of stdout is one JSON object
        assert doc["stopped_by"] == sig.name
        states = doc["totals"]["states"]
        assert states["cancelled"] == 8 and states["streaming"] == states["queued"] == 0
        t = doc["totals"]
        assert t["tokens_in"] > 0 and t["tokens_lost"] == t["tokens_in"] - t["tokens_out"]
        assert t["tokens_out"] == rows_written(tmp_path / "slow.db")  # what committed counts
    else:
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["session", "backend", "state"]
        assert sum(" cancelled " in line for line in lines if line.startswith("demo-")) == 8
        assert any(line.startswith("total (8)") for line in lines)


def test_stopped_with_json_and_the_stdout_consumer_stdout_is_still_one_object(
    tmp_path: Path,
) -> None:
    proc = start(tmp_path, "stdout", "--json")
    assert proc.stderr is not None
    assert proc.stderr.read(20)  # the token text goes to stderr while it streams
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 143, err
    for bad in NOISE:
        assert bad not in err, err
    doc = json.loads(out)
    assert doc["stopped_by"] == "SIGTERM"


def test_a_reader_that_goes_away_ends_the_run_without_a_traceback(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # `sluice run --headless | true`
    try:
        proc = start(tmp_path, "stdout", "--sessions", "3", stdout=write_fd)
    finally:
        os.close(write_fd)
    _, err = finish(proc)
    assert proc.returncode == 1, err  # every session failed: its output could not be written
    for bad in NOISE:
        assert bad not in err, err  # before the fix: BrokenPipeError tracebacks
    # The summary could not go to stdout: one line on stderr says how the run ended.
    (line,) = err.splitlines()
    assert line.startswith("sluice run: stdout was closed by its reader"), err
    assert "sessions: 3 failed" in line
    assert "error: consumer: BrokenPipeError: <stdout> was closed by its reader" in line


STUBBORN = """\
import asyncio, sys
from sluice.engine import Engine
from sluice.cli.runner import run_to_exit


class Stubborn:
    async def process(self, batch):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass


async def main():
    async with Engine(consumer=Stubborn(), shutdown_grace=0.3) as engine:
        session = engine.add_session("p", "demo")
        while session.tokens_in == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    print(session.state, session.error, flush=True)
    return 3


sys.exit(run_to_exit(main()))
"""


def test_a_consumer_that_swallows_its_cancel_does_not_keep_the_process_alive(
    tmp_path: Path,
) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "failed consumer: Abandoned: did not stop within 0.3s of cancel\n"
    assert proc.stderr == "sluice: 1 task(s) still running at exit; left behind\n"
