"""The app shows real Claude sessions, failures included, and never the API key."""

from __future__ import annotations

import html
import re

from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer


def screen_text(svg: str) -> str:
    """The characters an SVG screenshot shows, in order (spans joined, spaces restored)."""
    parts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape("".join(parts)).replace("\xa0", " ")


async def test_screen_never_shows_the_key(anthropic_server: AnthropicServer):
    from sluice.tui.app import SluiceApp
    from sluice.tui.detail import DetailScreen

    anthropic_server.script.update({"echo": ["echo_key"], "boom": ["error_event"]})
    backend = ClaudeBackend(
        api_key=TEST_KEY,
        model="claude-test-1",
        max_tokens=8,
        base_url=anthropic_server.url,
        timeout_s=2,
        retries=0,
    )
    engine = Engine(Config(), backends={"claude": backend})

    async def workload(engine: Engine) -> None:
        for prompt in ("hello", "echo", "boom"):
            engine.add_session(prompt, "claude", session_id=f"claude-{prompt}")
        await engine.wait_idle()

    app = SluiceApp(engine=engine, continuous=False, workload=workload)
    try:
        async with app.run_test(size=(220, 50)) as pilot:
            for _ in range(500):
                if all(s.finished for s in engine.sessions.values()) and engine.sessions:
                    break
                await pilot.pause(0.02)
            app.refresh_now()
            await pilot.pause()
            screens = [screen_text(app.export_screenshot())]
            for session_id in ("claude-echo", "claude-boom"):
                app.push_screen(DetailScreen(session_id, app.source, app.cancel_session))
                await pilot.pause()
                screens.append(screen_text(app.export_screenshot()))
                app.pop_screen()
                await pilot.pause()
    finally:
        await backend.aclose()
    states = {sid: s.state for sid, s in engine.sessions.items()}
    assert states == {"claude-hello": "done", "claude-echo": "failed", "claude-boom": "failed"}
    shown = "\n".join(screens)
    assert "backend: BackendError: HTTP 400" in screens[0]  # failures are on the table
    assert "[redacted] after 1 attempt" in screens[1]  # and the full error in the detail
    assert TEST_KEY not in shown
    assert TEST_KEY[:20] not in shown  # nor a visible prefix of it
