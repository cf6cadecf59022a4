"""Running the fake Claude Code CLI (fake_claude_cli.py) from the agent benchmark and the
tests: a launcher for it, and the CLI processes still alive below a process."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import psutil

from sluice.bench import fake_claude_cli

__all__ = ["FAKE_CLI", "cli_processes", "write_launcher"]

FAKE_CLI = Path(fake_claude_cli.__file__).resolve()


def write_launcher(folder: Path) -> Path:
    """An executable in `folder` running the fake CLI with this interpreter (`exec`: the CLI
    keeps the launcher's pid), without site start-up: a few tens of ms per session."""
    launcher = folder / "claude"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_CLI}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def cli_processes(root: psutil.Process | None = None) -> list[psutil.Process]:
    """Fake CLI processes below `root` (this process by default) that are still there (a
    zombie counts: nobody reaped it)."""
    found = []
    for child in (root or psutil.Process()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if str(FAKE_CLI) in " ".join(child.cmdline()) or child.status() == "zombie":
                found.append(child)
    return found
