"""Text from outside is shown as written, never read as markup or sent as a control sequence.

Session ids, a backend's name, its error, the text it streamed, a workload's exception and a
typed filter all carry strings such as `[/x]` (a MarkupError if parsed), `[@click=app.quit]`
(a live link if parsed) and ANSI escapes. The app must stay up, show them literally (control
characters as their escapes) in the table, the header, the detail screen, the filter line
and the toasts, and a click on them must do nothing but select.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from textual.pilot import Pilot
from textual.widgets._toast import Toast

from sluice.engine import Chunk, Engine
from sluice.engine.backends.base import StreamInfo
from sluice.engine.config import Config
from sluice.tui.app import SluiceApp
from sluice.tui.detail import DetailScreen
from sluice.tui.fmt import clean
from sluice.tui.table import SessionTable
from tests.fakes import wait_until

from .helpers import screen_text

LINK = "[@click=app.quit]x[/]"
ANSI = "\x1b[31mred\x1b[0m"
LONG = "long-" + "L" * 3000
FAILING_IDS = ("user[/x]", LINK, "[bold red]loud", ANSI, "two\nlines", LONG)
HANGING_ID = f"{LINK}-hang"
ERROR = f"boom {LINK} [/x] [bold red]red {ANSI}"
BACKEND = "evil[/b]\x1b[2J"
TAIL = "[/x] said [@click=app.quit]hi[/] \x1b[31m"


class HostileBackend:
    """Streams hostile text and says it was made by a hostile model; then fails with a
    hostile error (prompt "fail") or waits until cancelled (prompt "hang")."""

    name = BACKEND

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        info.model = f"model {LINK}"
        info.stop_reason = "[/x]"
        for i in range(3):
            yield Chunk(TAIL, i)
        if prompt == "fail":
            raise RuntimeError(ERROR)
        await asyncio.Event().wait()


def toast_texts(app: SluiceApp) -> list[str]:
    """What each toast on screen shows."""
    return [str(toast.render()) for toast in app.screen.query(Toast)]


async def click_row(pilot: Pilot[Any], table: SessionTable, key: str) -> None:
    """Click the first cells of `key`'s row, where a parsed link would be; the click selects
    the row (a second click opens its detail screen, closed again here)."""
    for x in range(1, 6):
        y = table.get_row_index(key) + 1 - round(table.scroll_y)
        await pilot.click(table, offset=(x, y))
        assert pilot.app.is_running
        if isinstance(pilot.app.screen, DetailScreen):
            await pilot.press("escape")
    assert table.selected_id == key


async def test_hostile_ids_backend_errors_and_text_show_literally(fast_config: Config) -> None:
    app = SluiceApp(config=fast_config, continuous=False, table_interval=0.1)
    async with app.run_test(size=(200, 50), notifications=True) as pilot:
        backend = HostileBackend()
        for session_id in FAILING_IDS:
            app.engine.add_session("fail", backend, session_id=session_id)
        app.engine.add_session("hang", backend, session_id=HANGING_ID)
        sessions = app.engine.sessions
        await wait_until(
            lambda: all(sessions[s].state == "failed" for s in FAILING_IDS), pause=pilot.pause
        )
        await wait_until(lambda: sessions[HANGING_ID].state == "streaming", pause=pilot.pause)
        app.refresh_now()
        await pilot.pause()
        assert app.is_running
        shown = screen_text(app)
        assert "\x1b" not in shown
        table = app.query_one("#sessions", SessionTable)
        for session_id in FAILING_IDS:
            assert f" {clean(session_id)[:11]}" in shown  # the id column has 12 cells
            cells = [str(cell) for cell in table.get_row(session_id)]
            assert cells[0] == f" {clean(session_id)}"  # the rest goes with an ellipsis
            assert cells[-1] == f" backend: RuntimeError: {clean(ERROR)}"
            assert cells[-2] == " [/x]"  # stop reason
        assert "\\x1b[31mred…" in shown and " two↵lines " in shown and " long-LLLLLL…" in shown
        assert f"  {clean(BACKEND)} 1/4" in shown  # header: the backend's name
        assert " evil[/… failed " in shown and " [/x] " in shown and "backend: Runtime" in shown

        await click_row(pilot, table, LINK)

        # the detail screen: id, backend, model, error, prompt and text tail, all literal
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.pause()
        detail = screen_text(app)
        assert "\x1b" not in detail
        assert f"{LINK}  {clean(BACKEND)}  failed  model model {LINK}" in detail
        assert f"error: backend: RuntimeError: {clean(ERROR)}" in detail
        assert clean(TAIL, one_line=False) in detail
        for x in range(0, 8):
            await pilot.click("#detail-summary", offset=(x, 0))
        assert app.is_running
        await pilot.press("escape")

        # a toast naming the session: `c` on the hanging one
        await click_row(pilot, table, HANGING_ID)
        await pilot.press("c")
        await wait_until(lambda: sessions[HANGING_ID].state == "cancelled", pause=pilot.pause)
        await pilot.pause()
        assert f"cancelled {HANGING_ID}" in toast_texts(app)
        for toast in app.screen.query(Toast):
            await pilot.click(toast, offset=(11, 1))
        assert app.is_running

        # the filter line shows what was typed, as typed
        await pilot.press("slash", *"user[/x]")
        await pilot.pause()
        assert table.row_count == 1 and table.selected_id == "user[/x]"
        assert "1 of 7 sessions match 'user[/x]'" in screen_text(app)
        await pilot.press("enter", "escape")
        assert table.row_count == 7
        assert app.is_running
        await pilot.press("q")
    assert app.return_code == 0


async def test_a_workload_error_toast_is_plain_text(fast_config: Config) -> None:
    async def hostile(engine: Engine) -> None:
        raise RuntimeError(ERROR)

    app = SluiceApp(config=fast_config, continuous=False, workload=hostile)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_until(lambda: bool(app.screen.query(Toast)), pause=pilot.pause)
        await pilot.pause()
        (text,) = toast_texts(app)
        assert text == f"workload failed\nRuntimeError: {clean(ERROR)}"
        toast = app.screen.query_one(Toast)
        for x in range(0, 40, 3):
            if toast.is_attached:
                await pilot.click(toast, offset=(x, 2))
        assert app.is_running
        await pilot.press("q")
    assert app.return_code == 0
