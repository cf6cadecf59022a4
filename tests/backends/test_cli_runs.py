"""`sluice run --headless --backend ...`: mixed runs on the real clients, prompts, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import Config, parse_config
from tests.backends.servers import AnthropicServer, OllamaServer


def make_config(
    claude: AnthropicServer | None, ollama: OllamaServer | None, **limits: int
) -> Config:
    """A config pointing at the loopback servers, with a quick demo and consumer."""
    data = {
        "limits": {"claude": 2, "ollama": 3, "demo": 2, **limits},
        "consumer": {"kind": "sleep", "delay_ms": 1},
        "demo": {"sessions": 3, "tokens": 6, "rate": 2000, "ttft_ms": 0},
        "claude": {"model": "claude-test-1", "timeout_s": 1, "retries": 2},
        "ollama": {"model": "llama-test", "timeout_s": 1, "retries": 2},
    }
    if claude is not None:
        data["claude"]["base_url"] = claude.url
    if ollama is not None:
        data["ollama"]["host"] = ollama.url
    return parse_config(data)


def run(argv: list[str], config) -> tuple[int, str, str]:
    """Run `sluice run ...` in-process; return (exit code, stdout, stderr)."""
    args = build_parser().parse_args(["run", "--headless", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_command(args, CommandIO(out, err), config)
    return code, out.getvalue(), err.getvalue()


def test_mixed_run_streams_every_backend_under_its_own_limit(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, key: str, tmp_path: Path
):
    for server in (anthropic_server, ollama_server):
        server.pace = 0.002
        server.chunks = 10
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first question\n\nsecond question\nthird question\n")
    config = make_config(anthropic_server, ollama_server)
    code, out, err = run(
        ["--backend", "claude,ollama,demo", "--prompts", str(prompts), "--sessions", "6", "--json"],
        config,
    )
    assert code == 0, err
    summary = json.loads(out)
    sessions = summary["sessions"]
    by_backend: dict[str, list[dict]] = {}
    for s in sessions:
        by_backend.setdefault(s["backend"], []).append(s)
    assert {b: len(v) for b, v in by_backend.items()} == {"claude": 6, "ollama": 6, "demo": 6}
    assert all(s["state"] == "done" and s["error"] is None for s in sessions)
    for s in by_backend["claude"] + by_backend["ollama"]:
        assert (s["tokens_in"], s["tokens_out"], s["tokens_lost"]) == (10, 10, 0)
        assert s["attempts"] == 1 and s["output_tokens"] == 10
    # Each backend under its own limit: the servers never saw more concurrent streams.
    assert 1 <= anthropic_server.streaming_peak["claude-test-1"] <= 2
    assert 1 <= ollama_server.streaming_peak["llama-test"] <= 3
    limits = {b["name"]: b["limit"] for b in summary["backends"]}
    assert (limits["claude"], limits["ollama"], limits["demo"]) == (2, 3, 2)
    asked = sorted(r.json()["messages"][0]["content"] for r in anthropic_server.requests)
    assert asked == sorted(["first question", "second question", "third question"] * 2)
    assert summary["totals"]["states"]["done"] == 18


def test_faulty_sessions_fail_alone_and_exit_1(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, key: str, tmp_path: Path
):
    anthropic_server.script["b"] = ["drop"]
    anthropic_server.script["c"] = ["429", "ok"]
    ollama_server.script["a"] = ["error_line"]
    ollama_server.script["c"] = ["503", "ok"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}\n')
    config = make_config(anthropic_server, ollama_server)
    code, out, err = run(
        ["--backend", "claude,ollama", "--prompts", str(prompts), "--json"], config
    )
    assert code == 1
    assert "Traceback" not in err
    sessions = json.loads(out)["sessions"]
    failed = {(s["backend"], s["error"].split(":")[0]) for s in sessions if s["state"] == "failed"}
    assert failed == {("claude", "backend"), ("ollama", "backend")}
    errors = {s["backend"]: s["error"] for s in sessions if s["error"]}
    assert "connection dropped after 4 chunks" in errors["claude"]
    assert "error line after 4 chunks" in errors["ollama"]
    retried = [s for s in sessions if s["attempts"] == 2]
    assert len(retried) == 2 and all(s["state"] == "done" for s in retried)


def test_table_output_names_the_failure_in_one_line(anthropic_server: AnthropicServer, key: str):
    anthropic_server.script["q"] = ["cut"]
    code, out, err = run(
        ["--backend", "claude", "--prompt", "q"], make_config(anthropic_server, None)
    )
    assert code == 1
    assert "without message_stop" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--backend", "nope"],
            "--backend 'nope': unknown backend; allowed: claude, ollama, demo, agent",
        ),
        (["--backend", "claude,claude", "--prompt", "x"], "a backend is named twice"),
        (["--backend", "ollama"], "give the prompts with --prompt TEXT or --prompts FILE"),
        (["--backend", "ollama", "--prompt", "  "], "--prompt: must be non-empty text"),
        (["--backend", "ollama", "--prompts", "/no/such/file"], "/no/such/file: no such file"),
        (["--backend", "ollama", "--prompt", "x", "--duration", "3"], "demo backend only"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str, key: str):
    code, out, err = run(argv, make_config(None, None))
    assert code == 2
    assert message in err and err.count("\n") == 1 and out == ""


def test_claude_without_a_key_is_refused_before_anything_starts(
    anthropic_server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = run(
        ["--backend", "claude", "--prompt", "hi"], make_config(anthropic_server, None)
    )
    assert code == 2
    assert err == "sluice run: the claude backend needs ANTHROPIC_API_KEY set in the environment\n"
    assert anthropic_server.requests == []


def test_base_url_and_host_come_from_the_environment_when_config_is_empty(
    anthropic_server: AnthropicServer,
    ollama_server: OllamaServer,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.url)
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url)
    code, _, err = run(
        ["--backend", "claude,ollama", "--prompt", "hi", "--json"], make_config(None, None)
    )
    assert code == 0, err
    assert len(anthropic_server.requests) == 1 and len(ollama_server.requests) == 1


def test_demo_stays_the_default(key: str):
    code, out, _ = run(["--sessions", "2", "--json"], make_config(None, None))
    assert code == 0
    assert [s["backend"] for s in json.loads(out)["sessions"]] == ["demo", "demo"]


def test_table_shows_attempts_per_session(anthropic_server: AnthropicServer, key: str):
    anthropic_server.script["r"] = ["429", "529", "ok"]
    code, out, _ = run(
        ["--backend", "claude", "--prompt", "r"], make_config(anthropic_server, None)
    )
    assert code == 0
    header, _, row = out.splitlines()[:3]
    assert header.split()[:4] == ["session", "backend", "state", "tries"]
    assert row.split()[:4] == ["claude-0001", "claude", "done", "3"]
