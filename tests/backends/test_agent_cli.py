"""`sluice run --headless --backend agent` against the fake CLI: the text exactly and the
usage in the JSON, a mixed run with each backend under its own cap, bad input as one line
(exit 2), SIGTERM leaving no CLI behind, and a base run that never imports the SDK."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import parse_config
from tests.backends.agent_helpers import FAKE_CLI
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import OllamaServer


def run(
    argv: list[str], config_data: dict[str, object], env: dict[str, str]
) -> tuple[int, str, str]:
    """`sluice run --headless ...` in-process; (exit code, stdout, stderr)."""
    args = build_parser().parse_args(["run", "--headless", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_command(args, CommandIO(out, err, env), parse_config(config_data))
    return code, out.getvalue(), err.getvalue()


def sluice(argv: list[str], env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    """`sluice ...` as a real subprocess (the environment replaced by `env` plus PATH)."""
    full = {"PATH": os.environ["PATH"], "NO_PROXY": "127.0.0.1,localhost", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "sluice", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
        **kw,  # type: ignore[call-overload]
    )


def test_headless_run_delivers_the_text_exactly_and_reports_usage(
    fake_cli: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[consumer]\nkind = "stdout"\n[agent]\ncli_path = "{fake_cli}"\n')
    prompt = "Explain back-pressure in one paragraph"
    proc = sluice(
        [
            "--config",
            str(config),
            "run",
            "--headless",
            "--backend",
            "agent",
            "--prompt",
            prompt,
            "--json",
        ],
        {"ANTHROPIC_API_KEY": TEST_KEY},
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == f"You said: {prompt}"  # the stdout consumer writes to stderr with --json
    (session,) = json.loads(out)["sessions"]
    assert (session["backend"], session["state"], session["error"]) == ("agent", "done", None)
    assert (session["input_tokens"], session["output_tokens"]) == (11, 7)
    assert (session["cost_usd"], session["turns"], session["stop_reason"]) == (
        0.0123,
        1,
        "end_turn",
    )
    assert (session["tokens_in"], session["tokens_lost"]) == (session["tokens_out"], 0)
    assert TEST_KEY not in out + err


def test_mixed_run_keeps_agent_and_ollama_each_under_its_own_cap(
    fake_cli: Path,
    tmp_path: Path,
    ollama_server: OllamaServer,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_SPANS", str(spans))
    ollama_server.pace = 0.01
    ollama_server.chunks = 10
    data = {
        "limits": {"agent": 2, "ollama": 1},
        "consumer": {"kind": "null"},
        "agent": {"cli_path": str(fake_cli)},
        "ollama": {"host": ollama_server.url, "model": "llama-test", "timeout_s": 5},
    }
    code, out, err = run(
        ["--backend", "agent,ollama", "--prompt", "[fake:slow] q", "--sessions", "5", "--json"],
        data,
        {"ANTHROPIC_API_KEY": TEST_KEY},
    )
    assert code == 0, err
    summary = json.loads(out)
    states = [(s["backend"], s["state"]) for s in summary["sessions"]]
    assert sorted(states) == [("agent", "done")] * 5 + [("ollama", "done")] * 5
    agent_texts = {s["tokens_out"] for s in summary["sessions"] if s["backend"] == "agent"}
    assert agent_texts == {20}
    # Every CLI's life lies inside its session's slot: never more than 2 at once.
    times = [tuple(map(float, f.read_text().split())) for f in spans.iterdir()]
    assert len(times) == 5
    edges = sorted([(start, 1) for start, _ in times] + [(end, -1) for _, end in times])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2  # slow answers overlap up to the cap, not beyond
    assert ollama_server.streaming_peak["llama-test"] == 1
    limits = {b["name"]: b["limit"] for b in summary["backends"]}
    assert (limits["agent"], limits["ollama"]) == (2, 1)


@pytest.mark.parametrize(
    ("agent", "env", "message"),
    [
        (
            {"cli_path": "/nonexistent/claude"},
            {"ANTHROPIC_API_KEY": TEST_KEY},
            "[agent] cli_path = '/nonexistent/claude': no such file; give the Claude Code "
            "CLI's path",
        ),
        (
            {"cwd": "/nonexistent/folder"},
            {"ANTHROPIC_API_KEY": TEST_KEY},
            "[agent] cwd = '/nonexistent/folder': no such folder",
        ),
        (
            {},
            {},
            "the agent backend needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN set in the "
            "environment",
        ),
    ],
)
def test_bad_setup_exits_2_with_one_line(
    fake_cli: Path, agent: dict[str, str], env: dict[str, str], message: str
) -> None:
    code, out, err = run(
        ["--backend", "agent", "--prompt", "hi"],
        {"agent": {"cli_path": str(fake_cli), **agent}},
        env,
    )
    assert (code, out) == (2, "")
    assert err == f"sluice run: {message}\n"


def test_without_the_extra_a_run_exits_2_naming_the_fix(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "claude_agent_sdk" else real(name, *a),
    )
    code, out, err = run(
        ["--backend", "agent,demo", "--prompt", "hi"],
        {"agent": {"cli_path": str(fake_cli)}},
        {"ANTHROPIC_API_KEY": TEST_KEY},
    )
    assert (code, out) == (2, "")
    assert err == (
        "sluice run: the agent backend needs the Claude Agent SDK: pip install 'sluice[agent]'\n"
    )


def test_the_base_commands_never_import_the_sdk(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[demo]\nsessions = 1\ntokens = 3\nrate = 1000\nttft_ms = 0\n")
    script = (
        "import sys\n"
        "from sluice.cli.main import main\n"
        "import sluice.tui.app, sluice.engine.backends.registry, sluice.engine.backends.check\n"
        f"code = main(['--config', {str(config)!r}, 'run', '--headless'])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.startswith('claude_agent_sdk')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_sigterm_mid_answer_leaves_no_cli_behind(fake_cli: Path, tmp_path: Path) -> None:
    # Two sessions hang mid-answer with CLIs that ignore SIGTERM (only SIGKILL ends them).
    config = tmp_path / "config.toml"
    config.write_text(
        f'[consumer]\nkind = "null"\n[limits]\nagent = 2\n[agent]\ncli_path = "{fake_cli}"\n'
    )
    proc = sluice(
        [
            "--config",
            str(config),
            "run",
            "--headless",
            "--backend",
            "agent",
            "--prompt",
            "[fake:hang] x",
            "--sessions",
            "3",
            "--json",
        ],
        {"ANTHROPIC_API_KEY": TEST_KEY},
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    clis: list[psutil.Process] = []
    while len(clis) < 2:
        assert time.monotonic() < deadline, "the CLIs did not start"
        clis = [c for c in parent.children() if str(FAKE_CLI) in " ".join(_cmdline(c))]
        time.sleep(0.05)
    time.sleep(0.3)  # both are past the handshake and hanging
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    summary = json.loads(out)
    assert summary["stopped_by"] == "SIGTERM"
    assert {s["state"] for s in summary["sessions"]} == {"cancelled"}
    for cli in clis:
        assert not cli.is_running() or cli.status() == psutil.STATUS_ZOMBIE
    assert "Traceback" not in err


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []
