"""Small helpers shared by the app tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from sluice.tui.app import SluiceApp


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Let the app run until `condition()` holds (fail after `limit` seconds of waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await pilot.pause(0.02)


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
