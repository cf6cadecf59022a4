"""`sluice check` against loopback servers: one line per backend, never the key."""

from __future__ import annotations

import importlib.util
import io

import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.backends import check
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
    code = run_command(args, CommandIO(out, err, env), config)
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
    allowed = "claude, ollama, demo, agent"
    assert err == f"sluice check: --backend 'gpt': unknown backend; allowed: {allowed}\n"


def check_with_env(argv: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    """`sluice check` with an empty [claude] base_url and [ollama] host: URLs from `env`."""
    args = build_parser().parse_args(["check", *argv])
    out, err = io.StringIO(), io.StringIO()
    config = parse_config({"claude": {"model": "claude-test-1"}, "ollama": {"model": "llama-test"}})
    code = run_command(args, CommandIO(out, err, env), config)
    return code, out.getvalue().splitlines(), err.getvalue()


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("OLLAMA_HOST", "http://[bad", "'http://[bad'"),
        ("OLLAMA_HOST", "http://user:SECRET@[bad", "'http://***@[bad'"),
        ("OLLAMA_HOST", "user:SECRET@127.0.0.1:99999", "'***@127.0.0.1:99999'"),
        ("ANTHROPIC_BASE_URL", "http://[bad", "'http://[bad'"),
        ("ANTHROPIC_BASE_URL", "ftp://SECRET@example.com", "'ftp://***@example.com'"),
    ],
)
def test_an_unusable_url_in_the_environment_exits_2_with_one_line(
    variable: str, value: str, shown: str
):
    backend = "ollama" if variable == "OLLAMA_HOST" else "claude"
    env = {"ANTHROPIC_API_KEY": TEST_KEY, variable: value}
    code, lines, err = check_with_env(["--backend", backend], env)
    assert code == 2 and lines == []
    assert err.startswith(f"sluice check: {variable}={shown}: ") and err.count("\n") == 1
    assert "must be a URL like http://127.0.0.1:11434" in err
    assert "SECRET" not in err


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("HTTPS_PROXY", "ftp://u:SECRET@proxy:21", "scheme 'ftp' not allowed"),
        ("HTTP_PROXY", "http://u:SECRET@proxy:99999", "not a valid URL"),
        ("all_proxy", "http://u:SECRET@[bad", "not a valid URL"),
    ],
)
def test_an_unusable_proxy_variable_exits_2_without_its_credentials(
    variable: str, value: str, reason: str
):
    code, lines, err = check_with_env([], {"ANTHROPIC_API_KEY": TEST_KEY, variable: value})
    assert code == 2 and lines == [] and err.count("\n") == 1
    assert err.startswith(f"sluice check: {variable}='") and reason in err
    assert "***@" in err and "SECRET" not in err


@pytest.mark.skipif(bool(importlib.util.find_spec("socksio")), reason="socksio is installed")
def test_a_socks_proxy_without_its_package_exits_2_instead_of_a_traceback():
    env = {"ANTHROPIC_API_KEY": TEST_KEY, "ALL_PROXY": "socks5://u:SECRET@127.0.0.1:1080"}
    code, lines, err = check_with_env(["--backend", "claude"], env)
    assert code == 2 and lines == []
    assert err == (
        "sluice check: ALL_PROXY='socks5://***@127.0.0.1:1080': a SOCKS proxy needs the "
        "socksio package (pip install 'httpx[socks]')\n"
    )


def test_userinfo_in_the_environment_urls_is_never_printed(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer
):
    env = {
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ANTHROPIC_BASE_URL": anthropic_server.url.replace("//", "//user:SECRETA@"),
        "OLLAMA_HOST": ollama_server.url.replace("//", "//user:SECRETO@"),
    }
    _, lines, err = check_with_env(["--backend", "claude,ollama"], env)
    shown = "\n".join(lines) + err
    assert "SECRET" not in shown and TEST_KEY not in shown
    host = ollama_server.url.removeprefix("http://")
    assert (
        lines[1] == f"ollama: ok: reachable, no key needed, model llama-test at http://***@{host}"
    )
    assert lines[0].startswith("claude: ") and "at http://***@127.0.0.1:" in lines[0]


def test_an_error_no_check_foresaw_is_a_failed_line_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
):
    async def exploding(config: object, environ: object) -> check.CheckResult:
        raise OSError("proxy http://u:SECRET@proxy:3128 said no")

    monkeypatch.setitem(check.CHECKS, "ollama", exploding)
    code, lines, err = check_with_env(["--backend", "ollama,demo"], {})
    assert code == 1 and err == ""
    assert lines[0] == (
        "ollama: FAILED: check failed: OSError: proxy http://***@proxy:3128 said no"
    )
