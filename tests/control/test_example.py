"""The README's embedding example runs as written: it prints its URL, serves the API while
its own work goes on, and ends cleanly."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import httpx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serve_embedded.py"


def test_the_embedding_example_serves_its_engine_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # no config.toml here: the built-in defaults
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("control API: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(600):
                doc = client.get("/v1/snapshot").json()
                if any(s["id"].startswith("job-") for s in doc["sessions"]):
                    break
                select.select([], [], [], 0.05)
            assert any(s["id"].startswith("job-") for s in doc["sessions"])
            response = client.patch("/v1/knobs", json={"limits.demo": 8})
            assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
