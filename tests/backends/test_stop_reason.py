"""How each answer ended (stop_reason / done_reason) reaches the JSON, the headless table and
the detail screen, and a truncated or refused answer never looks complete."""

from __future__ import annotations

import json
from pathlib import Path

from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.config import Config
from sluice.engine.engine import Engine
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer
from tests.backends.test_cli_runs import make_config, run
from tests.backends.test_screen_secrets import screen_text

ENDS = {"long": "max_tokens", "rude": "refusal", "fine": "end_turn"}


def prompts_file(tmp_path: Path) -> Path:
    """One prompt per stop reason, in the order of ENDS."""
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"{p}\n" for p in ENDS))
    return path


def test_stop_reason_is_in_the_json_for_every_session(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, key: str, tmp_path: Path
):
    anthropic_server.stop_reasons.update(ENDS)
    ollama_server.stop_reasons["long"] = "length"
    config = make_config(anthropic_server, ollama_server)
    argv = ["--backend", "claude,ollama,demo", "--prompts", str(prompts_file(tmp_path))]
    code, out, err = run([*argv, "--sessions", "3", "--json"], config)
    assert code == 0, err
    ended: dict[str, list[tuple[str, str]]] = {}
    for s in json.loads(out)["sessions"]:  # in start order: prompts in turn per backend
        ended.setdefault(s["backend"], []).append((s["state"], s["stop_reason"]))
    assert ended == {
        "claude": [("done", "max_tokens"), ("done", "refusal"), ("done", "end_turn")],
        "ollama": [("done", "length"), ("done", "stop"), ("done", "stop")],
        "demo": [("done", "end_turn")] * 3,
    }


def test_the_headless_table_marks_a_truncated_or_refused_answer(
    anthropic_server: AnthropicServer, ollama_server: OllamaServer, key: str, tmp_path: Path
):
    anthropic_server.stop_reasons.update(ENDS)
    ollama_server.stop_reasons["long"] = "length"
    config = make_config(anthropic_server, ollama_server)
    argv = ["--backend", "claude,ollama", "--prompts", str(prompts_file(tmp_path))]
    code, out, err = run(argv, config)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    states: dict[str, list[str]] = {}
    for row in rows:  # session, backend, state (and the stop reason when it warns), tries
        if row and row[0].startswith(("claude-", "ollama-")):
            states.setdefault(row[1], []).append(" ".join(row[2:4]))
    assert states == {
        "claude": ["done (max_tokens)", "done (refusal)", "done 1"],
        "ollama": ["done (length)", "done 1", "done 1"],
    }


async def test_the_detail_screen_marks_a_truncated_or_refused_answer(
    anthropic_server: AnthropicServer,
):
    from sluice.tui.app import SluiceApp
    from sluice.tui.detail import DetailScreen, render_summary

    anthropic_server.stop_reasons.update(ENDS)
    backend = ClaudeBackend(
        api_key=TEST_KEY, model="claude-test-1", max_tokens=8, base_url=anthropic_server.url
    )
    engine = Engine(Config(), backends={"claude": backend})

    async def workload(engine: Engine) -> None:
        for prompt in ENDS:
            engine.add_session(prompt, "claude", session_id=prompt)
        await engine.wait_idle()

    app = SluiceApp(engine=engine, continuous=False, workload=workload)
    shown: dict[str, str] = {}
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            for _ in range(500):
                if len(engine.sessions) == 3 and all(s.finished for s in engine.sessions.values()):
                    break
                await pilot.pause(0.02)
            for session_id in ENDS:
                app.push_screen(DetailScreen(session_id, app.source, app.cancel_session))
                await pilot.pause()
                shown[session_id] = screen_text(app.export_screenshot())
                app.pop_screen()
                await pilot.pause()
    finally:
        await backend.aclose()
    assert "stop max_tokens: answer truncated" in shown["long"]
    assert "stop refusal: answer refused" in shown["rude"]
    assert "stop end_turn" in shown["fine"] and "answer" not in shown["fine"].split("prompt:")[0]
    styles = {}
    for session_id, session in engine.sessions.items():
        text = render_summary(session.detail())
        styles[session_id] = {
            str(span.style) for span in text.spans if "stop" in text.plain[span.start : span.end]
        }
    assert styles == {"long": {"bold yellow"}, "rude": {"bold red"}, "fine": set()}
