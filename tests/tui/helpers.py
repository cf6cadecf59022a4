"""Small helpers shared by the app tests (the fakes every folder shares: tests/fakes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice.tui.app import SluiceApp


def record_notes(app: SluiceApp) -> list[tuple[str, dict[str, Any]]]:
    """Record every toast the app shows (the toasts still show)."""
    notes: list[tuple[str, dict[str, Any]]] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append((message, kwargs))
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return notes


def screen_text(app: SluiceApp) -> str:
    """The characters on the active screen, one line per row (what a user sees)."""
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


def streaming(app: SluiceApp) -> list[Any]:
    """Sessions of the engine that are streaming right now."""
    return [s for s in app.engine.snapshot().sessions if s.state == "streaming"]


def read_text(path: Path) -> str:
    """A small file's text (sync on purpose: tests read tiny files)."""
    return path.read_text(encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    """Write a small file."""
    path.write_text(text, encoding="utf-8")
