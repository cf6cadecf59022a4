"""The engine builds a real backend from its config the first time a session asks for it."""

from __future__ import annotations

import pytest

from sluice.engine.backends.registry import MissingCredentials, UnknownBackend
from sluice.engine.config import Config
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer
from tests.fakes import RecordingConsumer, other_tasks


async def test_ollama_session_by_name_builds_and_closes_the_backend(
    ollama_server: OllamaServer,
) -> None:
    from sluice.engine.engine import Engine

    config = Config().with_values(
        {"ollama.host": ollama_server.url, "ollama.model": "llama-test", "ollama.timeout_s": 5.0}
    )
    consumer = RecordingConsumer()
    async with Engine(config, consumer=consumer) as engine:
        session = engine.add_session("hello there", "ollama")
        await engine.wait_idle()
        backend = engine.backends["ollama"]
        assert session.state == "done", session.error
        assert session.tokens_out == session.tokens_in > 0
    assert backend.name == "ollama"
    assert consumer.indexes(session.id) == list(range(session.tokens_in))
    assert other_tasks() == set()


async def test_claude_session_by_name_uses_the_environment_key(
    anthropic_server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.engine.engine import Engine

    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    config = Config().with_values(
        {
            "claude.base_url": anthropic_server.url,
            "claude.model": "claude-test-1",
            "claude.timeout_s": 5.0,
        }
    )
    async with Engine(config, consumer=RecordingConsumer()) as engine:
        session = engine.add_session("hello", "claude")
        await engine.wait_idle()
    assert session.state == "done", session.error
    assert session.tokens_out > 0


async def test_claude_without_a_key_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sluice.engine.engine import Engine

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with Engine(Config()) as engine:
        with pytest.raises(MissingCredentials, match="ANTHROPIC_API_KEY"):
            engine.add_session("hello", "claude")
        assert engine.sessions == {}


async def test_unknown_backend_names_the_known_ones() -> None:
    from sluice.engine.engine import Engine

    async with Engine(Config()) as engine:
        with pytest.raises(UnknownBackend, match="claude, demo, ollama"):
            engine.add_session("hello", "gpt")
