"""The API key never shows: not on stdout or stderr (SDK debug logs included), not in the JSON
summary or the errors, not in config.toml, which refuses secret-like keys anyway. Credentials
inside URLs (a base URL's or a proxy's `user:key@`) are hidden wherever text leaves Sluice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.engine.backends.base import StreamInfo, describe_cause, describe_error
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.redact import redact, redact_url
from sluice.engine.report import summary_json, summary_table
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer

ROOT = Path(__file__).resolve().parents[2]


def sluice(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real `sluice` command with a clean environment plus `env_extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OLLAMA_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=90,
    )


def test_key_never_appears_in_output_logs_summary_or_config(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, tmp_path: Path
):
    anthropic_server.script.update({"echo": ["echo_key"], "boom": ["error_event"]})
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[limits]
claude = 2
[consumer]
kind = "null"
[demo]
tokens = 5
rate = 1000
ttft_ms = 0
[claude]
model = "claude-test-1"
base_url = "{anthropic_server.url}"
timeout_s = 2
[ollama]
model = "llama-test"
host = "{ollama_server.url}"
""",
        encoding="utf-8",
    )
    before = config.read_bytes()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\necho\nboom\n")
    env = {"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_LOG": "debug"}
    result = sluice(
        [
            "--config",
            str(config),
            "run",
            "--headless",
            "--backend",
            "claude,ollama,demo",
            "--prompts",
            str(prompts),
            "--json",
        ],
        env,
    )
    assert result.returncode == 1  # echo and boom fail
    assert "HTTP Request: POST" in result.stderr  # the SDK's debug log was on
    assert '"error":"backend: BackendError: HTTP 400 invalid_request_error' in result.stdout
    assert "[redacted]" in result.stdout  # the echoed credential was scrubbed
    table = sluice(
        [
            "--config",
            str(config),
            "run",
            "--headless",
            "--backend",
            "claude",
            "--prompts",
            str(prompts),
        ],
        env,
    )
    checked = sluice(["--config", str(config), "check"], env)
    assert checked.returncode == 0 and "key set" in checked.stdout
    # The server did receive the key: it was used, just never shown.
    assert any(TEST_KEY in str(r.headers) for r in anthropic_server.requests)
    for shown in (result, table, checked):
        assert TEST_KEY not in shown.stdout + shown.stderr
        assert "Traceback" not in shown.stderr
    assert config.read_bytes() == before and TEST_KEY.encode() not in before


def test_config_refuses_an_api_key_without_echoing_it(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'[claude]\napi_key = "{TEST_KEY}"\n', encoding="utf-8")
    result = sluice(["--config", str(config), "check"], {})
    assert result.returncode == 2
    assert "[claude] api_key: secrets are not read from the config file" in result.stderr
    assert TEST_KEY not in result.stdout + result.stderr


# -- the redaction function, against hostile text ------------------------------------------

REDACTED = [
    ("http://user:KEY1@host", "http://***@host"),
    ("https://KEY1@api.example.com/v1", "https://***@api.example.com/v1"),
    ("socks5://u:KEY1@127.0.0.1:1080", "socks5://***@127.0.0.1:1080"),
    ("socks5h://u:KEY1@proxy", "socks5h://***@proxy"),
    ("redis://:KEY1@cache:6379/0", "redis://***@cache:6379/0"),
    ("rediss://default:KEY1@cache", "rediss://***@cache"),
    ("HTTP://U:KEY1@HOST", "HTTP://***@HOST"),
    ("http://@host", "http://***@host"),
    # several URLs, in prose, quoted, in brackets, at the ends of the text
    (
        "via http://a:KEY1@p1:3128 then https://b:KEY2@p2, done",
        "via http://***@p1:3128 then https://***@p2, done",
    ),
    ("proxy='http://a:KEY1@p1' failed", "proxy='http://***@p1' failed"),
    ("URL('http://a:KEY1@p1:8080/x')", "URL('http://***@p1:8080/x')"),
    ("<http://a:KEY1@p1>", "<http://***@p1>"),
    ('{"url": "http://a:KEY1@p1"}', '{"url": "http://***@p1"}'),
    ("error:http://a:KEY1@p1", "error:http://***@p1"),
    ("line1\nhttp://a:KEY1@p1\nline3", "line1\nhttp://***@p1\nline3"),
    # an `@`, `/`, `#` or `?` inside the password (unencoded): everything up to the last `@`
    ("http://user:p@ss@KEY1@host:80", "http://***@host:80"),
    ("http://user:pa/KEY1@host", "http://***@host"),
    ("http://user:pa#KEY1@host", "http://***@host"),
    ("http://user:pa?KEY1@host/path", "http://***@host/path"),
    ("http://a:KEY1@[::1]:8080", "http://***@[::1]:8080"),
    ("http://a:KEY1%40x@host", "http://***@host"),
    # two URLs glued together by a comma: both hidden (the first host with them)
    ("http://a:KEY1@p1,http://b:KEY2@p2", "http://***@p2"),
]

UNTOUCHED = [
    "",
    "plain text with no URL",
    "mail me at someone@example.com",
    "http://127.0.0.1:11434 refused the connection",
    "see https://example.com/a?b=c#d and ollama@latest",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_redact_hides_the_userinfo_of_every_url(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert "KEY" not in redact(text)
    assert redact(redact(text)) == redact(text)  # idempotent


@pytest.mark.parametrize("text", UNTOUCHED)
def test_redact_leaves_text_without_credentials_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user:KEY1@127.0.0.1:11434", "***@127.0.0.1:11434"),
        ("http://us er:KE Y1@host", "http://***@host"),
        ("http://u:KEY1@[bad", "http://***@[bad"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
    ],
)
def test_redact_url_hides_userinfo_of_one_value_even_without_a_scheme(
    value: str, expected: str
) -> None:
    assert redact_url(value) == expected


def test_a_long_text_with_many_urls_is_redacted_completely() -> None:
    text = " ".join(f"x{i}.http://u{i}:KEY{i}@h{i}/@" for i in range(2000))
    out = redact(text)
    assert "KEY" not in out and out.count("://***@") == 2000


def test_error_descriptions_hide_credentials_in_urls() -> None:
    inner = ConnectionError("cannot connect to proxy http://user:KEY1@proxy:3128")
    outer = RuntimeError("request to https://u:KEY2@api.example.com failed")
    outer.__cause__ = inner
    assert describe_error(outer) == ("RuntimeError: request to https://***@api.example.com failed")
    assert describe_cause(outer) == "ConnectionError: cannot connect to proxy http://***@proxy:3128"


class LeakyBackend:
    """A backend whose error quotes a proxy URL with credentials, as HTTP clients do."""

    name = "leaky"

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        raise ConnectionError(f"{prompt}: proxy http://user:KEY1@proxy.example:3128 refused")
        yield  # pragma: no cover (an async generator)


async def test_json_table_and_detail_never_show_credentials_in_urls() -> None:
    async with Engine(Config()) as engine:
        session = engine.add_session("hello", LeakyBackend(), session_id="s1")
        await engine.wait_idle()
        snapshot = engine.snapshot()
        detail = session.detail()
    data = json.loads(summary_json(snapshot))
    assert "proxy http://***@proxy.example:3128 refused" in data["sessions"][0]["error"]
    table = summary_table(snapshot)
    assert "http://***@proxy.example" in table
    assert detail.error_detail is not None and "http://***@proxy.example" in detail.error_detail
    for shown in (json.dumps(data), table, detail.error_detail):
        assert "KEY1" not in shown


def test_check_never_prints_credentials_of_a_base_url_or_ollama_host(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, tmp_path: Path
):
    config = tmp_path / "config.toml"
    config.write_text('[claude]\nmodel = "claude-test-1"\n[ollama]\nmodel = "llama-test"\n')
    env = {
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ANTHROPIC_BASE_URL": anthropic_server.url.replace("//", "//me:BASEKEY@"),
        "OLLAMA_HOST": ollama_server.url.replace("//", "//me:HOSTKEY@"),
    }
    checked = sluice(["--config", str(config), "check"], env)
    shown = checked.stdout + checked.stderr
    assert "BASEKEY" not in shown and "HOSTKEY" not in shown and TEST_KEY not in shown
    assert shown.count("http://***@127.0.0.1:") == 2, shown
    assert "Traceback" not in checked.stderr
    # In the config file, credentials inside a URL are refused (exit 2), not printed.
    url = anthropic_server.url.replace("//", "//me:BASEKEY@")
    config.write_text(f'[claude]\nbase_url = "{url}"\n')
    refused = sluice(["--config", str(config), "check"], {"ANTHROPIC_API_KEY": TEST_KEY})
    assert refused.returncode == 2 and refused.stdout == ""
    assert '[claude] base_url = "http://***@127.0.0.1:' in refused.stderr
    assert "credentials in a URL are not read from the config file" in refused.stderr
    assert "BASEKEY" not in refused.stderr
