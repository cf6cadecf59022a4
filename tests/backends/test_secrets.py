"""The API key never shows: not on stdout or stderr (SDK debug logs included), not in the JSON
summary or the errors, not in config.toml, which refuses secret-like keys anyway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
