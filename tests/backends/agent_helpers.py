"""Helpers for the agent backend's tests: the fake Claude Code CLI (benchmarks/
fake_claude_cli.py, which speaks the Agent SDK's stream-json protocol) behind a launcher,
an agent backend pointed at it, and a look at the CLI processes still alive."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from sluice.bench import fake_claude_cli
from tests.backends.helpers import TEST_KEY

if TYPE_CHECKING:
    from sluice.engine.backends.agent import AgentBackend

FAKE_CLI = Path(fake_claude_cli.__file__).resolve()


def write_launcher(folder: Path) -> Path:
    """An executable that runs the fake CLI with this interpreter (`exec`, so the CLI keeps
    the launcher's pid) without site start-up: a few tens of ms per session."""
    launcher = folder / "claude"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_CLI}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def fake_backend(cli: Path, **options: Any) -> AgentBackend:
    """An agent backend running `cli`, with the test key."""
    from sluice.engine.backends.agent import AgentBackend

    return AgentBackend(
        credentials={"ANTHROPIC_API_KEY": TEST_KEY},
        cli_path=str(cli),
        timeout_s=options.pop("timeout_s", 10.0),
        **options,
    )


def live_clis(root: psutil.Process | None = None) -> list[psutil.Process]:
    """Fake CLI processes below `root` (this process by default) that are still running
    (a zombie counts: nobody reaped it)."""
    root = root or psutil.Process()
    found = []
    for child in root.children(recursive=True):
        try:
            if str(FAKE_CLI) in " ".join(child.cmdline()) or child.status() == "zombie":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found
