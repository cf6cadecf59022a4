"""Helpers for the agent backend's tests: the fake Claude Code CLI (benchmarks/
fake_claude_cli.py, which speaks the Agent SDK's stream-json protocol) behind a launcher, an
agent backend pointed at it, and the CLI processes still alive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.bench.fake_cli import FAKE_CLI, write_launcher
from sluice.bench.fake_cli import cli_processes as live_clis
from tests.backends.helpers import TEST_KEY

if TYPE_CHECKING:
    from sluice.engine.backends.agent import AgentBackend

__all__ = ["FAKE_CLI", "fake_backend", "live_clis", "write_launcher"]


def fake_backend(cli: Path, **options: Any) -> AgentBackend:
    """An agent backend running `cli`, with the test key."""
    from sluice.engine.backends.agent import AgentBackend

    return AgentBackend(
        credentials={"ANTHROPIC_API_KEY": TEST_KEY},
        cli_path=str(cli),
        timeout_s=options.pop("timeout_s", 10.0),
        **options,
    )
