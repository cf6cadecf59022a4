"""`sluice check` against loopback servers: one line per backend, never the key."""

from __future__ import annotations

import io

from sluice.cli.main import build_parser
from sluice.engine import check
from sluice.engine.config import parse_config
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer


def run_check(
    argv: list[str], claude_url: str, ollama_url: str, env: dict[str, str], **cfg: str
) -> tuple[int, list[str], str]:
    """Run `sluice check` in-process against the given servers; (code, lines, stderr)."""
    config = parse_config(
        {
            "claude": {"base_url": claude_url, "model": cfg.get("claude_model", "claude-test-1")},
            "ollama": {"host": ollama_url, "model": cfg.get("ollama_model", "llama-test")},
        }
    )
    args = build_parser().parse_args(["check", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = check.run_command(args, config, stdout=out, stderr=err, environ=env)
    return code, out.getvalue().splitlines(), err.getvalue()


def test_all_ready_exits_0_with_one_line_each(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer
):
    code, lines, _ = run_check(
        [], anthropic_server.url, ollama_server.url, {"ANTHROPIC_API_KEY": TEST_KEY}
    )
    assert code == 0
    assert lines == [
        "claude: ok: reachable, authorised (key set), model claude-test-1 "
        f"at {anthropic_server.url}",
        f"ollama: ok: reachable, no key needed, model llama-test at {ollama_server.url}",
        "demo: ok: built in, simulated model sluice-demo",
    ]
    assert anthropic_server.requests[0].path == "/v1/models/claude-test-1"


def test_wrong_key_missing_model_and_dead_host_exit_1(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer
):
    wrong = "fake-wrong-key-0000-secret"
    code, lines, _ = run_check(
        ["--backend", "claude,ollama"],
        anthropic_server.url,
        ollama_server.url,
        {"ANTHROPIC_API_KEY": wrong},
        ollama_model="mistral",
    )
    assert code == 1
    assert lines[0].startswith("claude: FAILED: reachable, NOT authorised (HTTP 401")
    assert "key set" in lines[0] and wrong not in "\n".join(lines)
    assert lines[1].startswith("ollama: FAILED: reachable, but model mistral is NOT pulled")

    code, lines, _ = run_check(
        ["--backend", "ollama"], anthropic_server.url, "http://127.0.0.1:9", {}
    )
    assert code == 1
    assert lines == [
        "ollama: FAILED: unreachable at http://127.0.0.1:9: nothing answered "
        "(is `ollama serve` running?)"
    ]


def test_unknown_claude_model_and_missing_key(anthropic_server: AnthropicServer):
    code, lines, _ = run_check(
        ["--backend", "claude"],
        anthropic_server.url,
        "",
        {"ANTHROPIC_API_KEY": TEST_KEY},
        claude_model="claude-nope",
    )
    assert code == 1
    assert "model claude-nope NOT found" in lines[0]
    code, lines, _ = run_check(["--backend", "claude"], anthropic_server.url, "", {})
    assert code == 1
    assert lines == [
        "claude: FAILED: not checked: ANTHROPIC_API_KEY is not set "
        f"(model claude-test-1, {anthropic_server.url})"
    ]


def test_unreachable_claude(anthropic_server: AnthropicServer):
    code, lines, _ = run_check(
        ["--backend", "claude"], "http://127.0.0.1:9", "", {"ANTHROPIC_API_KEY": TEST_KEY}
    )
    assert code == 1
    assert lines[0].startswith("claude: FAILED: unreachable at http://127.0.0.1:9")
    assert TEST_KEY not in lines[0] and "key set" in lines[0]


def test_bad_backend_name_exits_2():
    code, lines, err = run_check(["--backend", "gpt"], "", "", {})
    assert code == 2 and lines == []
    assert err == "sluice check: --backend 'gpt': unknown backend; allowed: claude, ollama, demo\n"
