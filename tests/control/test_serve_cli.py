"""`sluice serve` as a real subprocess: the URL on stdout, the API on it, knobs reaching
running sessions, saving, metrics, the token, and a clean exit on SIGTERM/SIGINT/SIGHUP."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.engine.config import load_config
from tests.control.helpers import FAST_TOML, TOKEN

STARTUP_S = 60.0  # generous: two busy cores
STOP_S = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_TOKEN"}
    env.update(extra)
    return env


def _readline(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


@contextmanager
def serving(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start `sluice serve --bind 127.0.0.1:0 --config <tmp> ARGS`; yield it and its URL."""
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text(FAST_TOML)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--config",
            str(config),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        url = _readline(proc.stdout, STARTUP_S).strip()
        if not url.startswith("http://127.0.0.1:"):
            proc.kill()
            _, err = proc.communicate(timeout=STOP_S)
            pytest.fail(f"no URL printed (got {url!r}); stderr: {err}")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=STOP_S)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=STOP_S)
    return proc.returncode, out, err


def _send_garbage(url: str) -> None:
    """Malformed HTTP: a bad method, a smuggling attempt, an endless line, a broken chunk."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for payload in (
        b"GARBAGE\r\n\r\n",
        b"GET /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
        b"PATCH /v1/knobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000\r\n" + b"x" * 70_000 + b"\r\n0\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(payload)
            assert sock.recv(12).startswith(b"HTTP/1.")


def _wait_streaming(client: httpx.Client, count: int = 4) -> dict:  # type: ignore[type-arg]
    for _ in range(600):
        doc = client.get("/v1/snapshot").json()
        if sum(1 for s in doc["sessions"] if s["state"] == "streaming") >= count:
            return doc  # type: ignore[no-any-return]
        select.select([], [], [], 0.05)
    raise AssertionError("the served demo sessions never streamed")


def test_served_engine_answers_tunes_saves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with serving(tmp_path, "--demo") as (proc, url), httpx.Client(base_url=url, timeout=30) as c:
        doc = _wait_streaming(c)
        assert {"sessions", "totals", "process", "knobs", "node", "backends"} <= set(doc)
        assert doc["knobs"]["queue.maxsize"]["value"] == 16

        response = c.patch("/v1/knobs", json={"queue.maxsize": 40, "limits.demo": 5})
        assert response.status_code == 200
        doc = c.get("/v1/snapshot").json()
        running = [s for s in doc["sessions"] if s["state"] in ("queued", "streaming")]
        assert running and all(s["maxsize"] == 40 for s in running)

        response = c.patch("/v1/knobs", json={"queue.maxsize": 41, "limits.demo": 0})
        assert response.status_code == 422
        assert "limits.demo" in response.json()["error"]
        for bad in ({"nope": 1}, {"queue.maxsize": "41"}):
            assert c.patch("/v1/knobs", json=bad).status_code == 422
        assert c.patch("/v1/knobs", content=b"not json").status_code == 422
        knobs = c.get("/v1/knobs").json()["knobs"]
        assert knobs["queue.maxsize"]["value"] == 40 and knobs["limits.demo"]["value"] == 5

        families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
        assert families["sluice_chunks_in"].samples[0].value > 0
        assert families["sluice_queue_wait_seconds"].type == "histogram"

        response = c.post("/v1/save")
        assert response.status_code == 200
        config = tmp_path / "config.toml"
        assert response.json()["path"] == str(config)
        assert (tmp_path / "config.toml.bak").read_text() == FAST_TOML
        saved = load_config(config)
        assert saved["queue.maxsize"] == 40 and saved["limits.demo"] == 5
        assert "# a comment that saving must keep" in config.read_text()

        _send_garbage(url)

        code, out, err = _stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert len(err) < 4000  # malformed requests leave no traceback in the log
    assert out == ""  # stdout held the URL line (read above) and nothing else
    lines = err.splitlines()
    assert all(line.startswith("sluice serve: ") for line in lines), err
    assert any(
        "knobs changed by 127.0.0.1:" in line and "queue.maxsize 16 -> 40" in line for line in lines
    ), err
    assert any("knobs saved to" in line for line in lines), err
    assert any("SIGTERM received: stopping" in line for line in lines), err
    assert "stopped after" in lines[-1] and "cancelled" in lines[-1], err
    assert "tasks still running" not in err and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_it_cleanly_too(tmp_path: Path, sig: signal.Signals) -> None:
    with serving(tmp_path, "--demo") as (proc, url), httpx.Client(base_url=url, timeout=30) as c:
        _wait_streaming(c, 1)
        code, _, err = _stop(proc, sig)
    assert code == 0, err
    assert f"{sig.name} received" in err and "stopped after" in err
    assert "Traceback" not in err and "tasks still running" not in err


def test_with_sluice_token_every_request_needs_it_and_it_is_never_shown(tmp_path: Path) -> None:
    env = _env(SLUICE_TOKEN=TOKEN)
    with serving(tmp_path, "--demo", env=env) as (proc, url):
        with httpx.Client(base_url=url, timeout=30) as c:
            for route in ("/v1/snapshot", "/metrics", "/v1/events"):
                for headers in ({}, {"Authorization": "Bearer nope"}):
                    response = c.get(route, headers=headers)
                    assert response.status_code == 401
                    assert response.json() == {"error": "missing or wrong bearer token"}
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/v1/snapshot", headers=good).status_code == 200
            body = c.patch("/v1/knobs", json={"queue.maxsize": 3}, headers=good).text
            assert TOKEN not in body
        code, out, err = _stop(proc, signal.SIGTERM)
    assert code == 0
    assert TOKEN not in out and TOKEN not in err
    assert "auth: bearer token" in err


def test_a_workload_runs_and_the_service_stays_up_after_it_returns(tmp_path: Path) -> None:
    (tmp_path / "work.py").write_text(
        "async def main(engine):\n"
        "    for n in range(3):\n"
        "        engine.add_session(f'p{n}', 'demo', session_id=f'mine-{n}')\n"
        "    await engine.wait_idle()\n"
        "\n"
        "async def broken(engine):\n"
        "    raise RuntimeError('workload bug')\n"
    )
    (tmp_path / "config.toml").write_text(FAST_TOML.replace("tokens = 100000", "tokens = 30"))
    with serving(tmp_path, "work.py:main") as (proc, url), httpx.Client(base_url=url) as c:
        for _ in range(1200):
            doc = c.get("/v1/snapshot").json()
            if doc["totals"]["states"]["done"] == 3:
                break
            select.select([], [], [], 0.05)
        assert sorted(s["id"] for s in doc["sessions"]) == ["mine-0", "mine-1", "mine-2"]
        assert c.patch("/v1/knobs", json={"queue.maxsize": 8}).status_code == 200  # still up
        code, _, err = _stop(proc, signal.SIGTERM)
    assert code == 0
    assert "workload work.py:main returned; still serving" in err
    assert "3 sessions (3 done)" in err

    with serving(tmp_path, "work.py:broken") as (proc, url):
        with httpx.Client(base_url=url) as c:
            assert c.get("/v1/snapshot").status_code == 200
        code, _, err = _stop(proc, signal.SIGTERM)
    assert code == 0
    assert "workload work.py:broken raised RuntimeError: workload bug; still serving" in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--bind", "0.0.0.0:0", "--demo"], {}, "without a token"),
        (["--bind", "[::]:0", "--demo"], {"SLUICE_TOKEN": ""}, "without a token"),
        (["--bind", "localhost", "--demo"], {}, "HOST:PORT"),
        ([], {}, "nothing to run"),
        (["no_such_module_xyz:main"], {}, "cannot import"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "serve", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=tmp_path,
        timeout=STARTUP_S,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_an_address_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "config.toml").write_text(FAST_TOML)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sluice",
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--demo",
                "--config",
                str(tmp_path / "config.toml"),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=tmp_path,
            timeout=STARTUP_S,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    json.dumps(result.stderr)  # printable
