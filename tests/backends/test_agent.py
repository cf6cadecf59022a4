"""The agent backend against the real Claude Agent SDK and a fake CLI speaking its stream-json
protocol (benchmarks/fake_claude_cli.py): text delivered exactly, tool and thinking deltas
counted, the result's usage on the session, every fault failing only its own session, and no
CLI process outliving its session."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.report import session_dict
from sluice.tui.detail import agent_line, render_summary
from tests.backends.agent_helpers import fake_backend, live_clis
from tests.backends.helpers import TEST_KEY, run_prompts
from tests.fakes import wait_until


async def test_text_arrives_exactly_with_the_results_usage(fake_cli: Path) -> None:
    prompt = "Explain back-pressure, with ünïcödé and\nnewlines"
    details, consumer = await run_prompts(fake_backend(fake_cli), [prompt], maxsize=2)
    detail = details[prompt]
    s = detail.snapshot
    assert s.state == "done", s.error
    assert "".join(consumer.texts) == f"You said: {prompt}"
    assert detail.tail == f"You said: {prompt}"
    assert (s.input_tokens, s.output_tokens, s.cost_usd, s.turns) == (11, 7, 0.0123, 1)
    assert (s.stop_reason, detail.model) == ("end_turn", "claude-fake-1")
    assert (s.tool_deltas, s.thinking_deltas) == (0, 0)
    row = session_dict(s)
    assert (row["cost_usd"], row["turns"], row["tool_deltas"]) == (0.0123, 1, 0)
    assert not live_clis()


async def test_tool_use_and_thinking_deltas_are_counted_not_delivered(fake_cli: Path) -> None:
    details, consumer = await run_prompts(fake_backend(fake_cli), ["[fake:tools] notes?"])
    s = details["[fake:tools] notes?"].snapshot
    assert s.state == "done", s.error
    assert "".join(consumer.texts) == "Let me look. It holds three notes."
    assert (s.tool_deltas, s.thinking_deltas, s.turns) == (3, 3, 2)
    assert (s.input_tokens, s.output_tokens) == (22, 14)
    assert not live_clis()


async def test_the_clis_api_retries_count_as_attempts(fake_cli: Path) -> None:
    details, consumer = await run_prompts(fake_backend(fake_cli), ["[fake:retry] hi"])
    s = details["[fake:retry] hi"].snapshot
    assert (s.state, s.attempts) == ("done", 3)
    assert "".join(consumer.texts) == "You said: hi"


async def test_options_reach_the_cli_and_the_key_only_through_its_environment(
    fake_cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(record))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    backend = fake_backend(
        fake_cli,
        model="claude-test-9",
        max_turns=3,
        allowed_tools=("Read", "Grep"),
        permission_mode="plan",
        cwd=str(tmp_path),
        system="Be brief.",
    )
    details, _ = await run_prompts(backend, ["hi"])
    assert details["hi"].snapshot.state == "done"
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert pairs["--model"] == "claude-test-9"
    assert pairs["--max-turns"] == "3"
    assert pairs["--allowedTools"] == "Read,Grep"
    assert pairs["--permission-mode"] == "plan"
    assert pairs["--system-prompt"] == "Be brief."
    assert "--include-partial-messages" in argv
    assert seen["cwd"] == str(tmp_path)
    assert seen["key_set"] is True
    assert TEST_KEY not in " ".join(argv)


@pytest.mark.parametrize(
    ("prompt", "reason", "delivered"),
    [
        (
            "[fake:error] x",
            "backend: BackendError: error result after 4 chunks: error_max_turns: "
            "Reached maximum number of turns (1)",
            "Partial answer",
        ),
        (
            "[fake:exit] x",
            "backend: BackendError: the CLI exited with code 3 after 3 chunks "
            "(stderr: fake claude: crashed on purpose; key [redacted])",
            "Half an ans",
        ),
        (
            "[fake:garbage] x",
            "backend: BackendError: malformed output from the CLI after 5 chunks: "
            'Failed to decode JSON: {"type": "stream_event", this is not JSON',
            "Before the garbage",
        ),
    ],
)
async def test_a_faulty_cli_fails_its_session_with_a_reason_and_is_gone(
    fake_cli: Path, prompt: str, reason: str, delivered: str
) -> None:
    details, consumer = await run_prompts(fake_backend(fake_cli), [prompt])
    s = details[prompt].snapshot
    assert s.state == "failed"
    assert s.error is not None and s.error.startswith(reason)
    assert TEST_KEY not in (details[prompt].error_detail or "")
    assert "".join(consumer.texts) == delivered  # what came before the fault, nothing lost
    assert not live_clis()


async def test_a_hung_cli_fails_after_timeout_s_and_is_killed(fake_cli: Path) -> None:
    # The hang scenario ignores SIGTERM: only the SIGKILL that follows ends it.
    details, _ = await run_prompts(fake_backend(fake_cli, timeout_s=0.5), ["[fake:hang] x"])
    s = details["[fake:hang] x"].snapshot
    assert s.state == "failed"
    assert s.error == "backend: BackendError: no message from the CLI for 0.5s after 5 chunks"
    assert not live_clis()


async def test_a_cli_that_never_answers_initialize_fails_after_timeout_s(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "silent")
    details, _ = await run_prompts(fake_backend(fake_cli, timeout_s=0.3), ["x"])
    s = details["x"].snapshot
    assert s.error == "backend: BackendError: no message from the CLI for 0.3s after 0 chunks"
    assert not live_clis()


async def test_faults_stay_in_their_sessions_and_a_cancel_stops_the_cli(fake_cli: Path) -> None:
    prompts = ["one", "[fake:exit] a", "[fake:garbage] b", "[fake:slow] c", "two"]
    config = Config().with_values({"limits.agent": 5, "queue.maxsize": 4})
    backend = fake_backend(fake_cli)
    async with Engine(config, backends={"agent": backend}) as engine:
        sessions = {p: engine.add_session(p, "agent") for p in prompts}
        slow = sessions["[fake:slow] c"]
        await wait_until(lambda: slow.tokens_in >= 3)
        assert len(live_clis()) >= 1
        engine.cancel(slow.id)
        await engine.wait_idle()
        states = {p: s.state for p, s in sessions.items()}
        assert not live_clis()
    assert states == {
        "one": "done",
        "[fake:exit] a": "failed",
        "[fake:garbage] b": "failed",
        "[fake:slow] c": "cancelled",
        "two": "done",
    }
    assert sessions["two"].tail == "You said: two"


async def test_the_detail_view_shows_the_agents_result(fake_cli: Path) -> None:
    details, _ = await run_prompts(fake_backend(fake_cli), ["[fake:tools] notes?"])
    summary = render_summary(details["[fake:tools] notes?"]).plain
    assert (
        "agent: turns 2  cost $0.0123  usage in 22 / out 14 tokens  tool deltas 3  "
        "thinking deltas 3" in summary
    )
    other = dataclasses.replace(details["[fake:tools] notes?"].snapshot, turns=None, cost_usd=None)
    assert agent_line(dataclasses.replace(other, tool_deltas=None)) == ""


async def test_closing_the_engine_mid_answer_stops_every_cli(fake_cli: Path) -> None:
    # What the app's `q` and the signal handlers do: Engine.aclose cancels every session.
    # One CLI hangs ignoring SIGTERM, one is mid-answer, one is still queued for a slot.
    config = Config().with_values({"limits.agent": 2})
    async with Engine(config, backends={"agent": fake_backend(fake_cli)}) as engine:
        sessions = [engine.add_session(p, "agent") for p in ("[fake:hang] a", "[fake:slow] b", "c")]
        await wait_until(lambda: sessions[0].tokens_in >= 3 and sessions[1].tokens_in >= 1)
        assert len(live_clis()) == 2
    assert [s.state for s in sessions] == ["cancelled", "cancelled", "cancelled"]
    assert not live_clis()
