"""Fixtures: fresh loopback Anthropic and Ollama servers for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.agent_helpers import write_launcher
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """A fresh Anthropic-speaking server."""
    with AnthropicServer(api_key=TEST_KEY, stall_s=10.0) as server:
        yield server


@pytest.fixture
def ollama_server() -> Iterator[OllamaServer]:
    """A fresh Ollama-speaking server."""
    with OllamaServer(stall_s=10.0) as server:
        yield server


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test key in the environment; no base URL or host from the outside."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    return TEST_KEY


@pytest.fixture
def fake_cli(tmp_path: Path) -> Path:
    """An executable fake Claude Code CLI (see benchmarks/fake_claude_cli.py)."""
    return write_launcher(tmp_path)
