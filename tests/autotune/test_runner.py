"""The auto-tune runner in a real engine: real clients against the loopback servers, the
signals they report, moves applied through set_knobs with a reason, manual take-over."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from sluice.engine import settings as S
from sluice.engine.autotune import Move
from sluice.engine.backends.claude import ClaudeBackend, retry_after
from sluice.engine.backends.ollama import OllamaBackend
from sluice.engine.config import Config, load_config
from sluice.engine.config_save import save_config
from sluice.engine.engine import Engine
from sluice.engine.report import to_json_dict
from sluice.engine.snapshot import EngineSnapshot
from tests.backends.helpers import TEST_KEY
from tests.backends.servers import AnthropicServer, OllamaServer
from tests.fakes import FakeClock, RecordingConsumer, ScriptedBackend


def claude(server: AnthropicServer, retries: int = 3) -> ClaudeBackend:
    return ClaudeBackend(
        api_key=TEST_KEY,
        model="claude-test-1",
        max_tokens=64,
        base_url=server.url,
        timeout_s=10,
        retries=retries,
    )


def auto_config(**values: object) -> Config:
    return Config().with_values({"autotune.window_s": 0.1, **values})


def test_retry_after_reads_ms_then_seconds() -> None:
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert retry_after({}) is None


async def test_a_429_cuts_the_claude_limit_with_its_reason_and_retry_after() -> None:
    with AnthropicServer(api_key=TEST_KEY, retry_after_ms=400) as server:
        server.script["p0"] = ["429", "ok"]
        backend = claude(server)
        config = auto_config(**{"autotune.claude": True, "limits.claude": 10})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"claude": backend}
        ) as engine:
            assert engine.autotune.running
            session = engine.add_session("p0", "claude")
            await engine.wait_idle()
            await asyncio.sleep(0.15)  # a tick or two: the runner drains the 429
            assert session.state == "done" and session.info.attempts == 2
            assert engine.knob("limits.claude") == 9
            assert engine.knob("autotune.claude") is True  # an auto move keeps it auto
            reason = engine.autotune.last_reason("limits.claude")
            assert reason is not None and re.fullmatch(r"-10%: 429 at \d\d:\d\d:\d\d", reason)
            snap = engine.snapshot()
            (auto,) = snap.autotune
            assert (auto.knob, auto.switch, auto.on, auto.reason) == (
                "limits.claude",
                "autotune.claude",
                True,
                reason,
            )
            assert auto.signal == "429s" and auto.points
            doc = json.loads(json.dumps(to_json_dict(snap, taken_at=snap.taken_at)))
            assert EngineSnapshot.from_dict(doc).autotune == snap.autotune
            assert doc["knobs"]["autotune"] == {"claude": True, "ollama": False, "maxsize": False}
        await backend.aclose()


async def test_retry_after_is_shown_while_it_runs() -> None:
    with AnthropicServer(api_key=TEST_KEY, retry_after_ms=3000) as server:
        server.script["p"] = ["429"]
        backend = claude(server, retries=0)
        config = auto_config(**{"autotune.claude": True})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"claude": backend}
        ) as engine:
            engine.add_session("p", "claude")
            await engine.wait_idle()
            await asyncio.sleep(0.15)
            (auto,) = engine.snapshot().autotune
            assert auto.retry_after is not None and 0 < auto.retry_after <= 3.0
        await backend.aclose()


async def test_a_hand_set_value_takes_the_knob_over_and_a_switch_gives_it_back() -> None:
    config = auto_config(**{"autotune.claude": True, "autotune.maxsize": True})
    async with Engine(config, consumer=RecordingConsumer()) as engine:
        engine.set_knobs({"limits.claude": 3}, reason="test move")  # an auto move
        assert engine.knob("autotune.claude") is True
        engine.set_knob("limits.claude", 7)  # a person's
        assert engine.knob("limits.claude") == 7
        assert engine.knob("autotune.claude") is False
        engine.set_knob("queue.batch_max", 4)  # batch_max is driven by the maxsize switch
        assert engine.knob("autotune.maxsize") is False
        assert not engine.autotune.any_on()
        await asyncio.sleep(0.1)
        assert not engine.autotune.running  # nothing left to tune: the task ended
        engine.set_knobs({"limits.claude": 5, "autotune.claude": True})  # both at once: auto
        assert engine.knob("autotune.claude") is True and engine.autotune.running


async def test_switching_on_at_runtime_starts_the_runner_and_shutdown_stops_it() -> None:
    async with Engine(Config(), consumer=RecordingConsumer()) as engine:
        assert not engine.autotune.running
        engine.set_knob("autotune.maxsize", True)
        assert engine.autotune.running
        task = engine.autotune._task
    assert task is not None and task.done()


async def test_ollama_ttft_from_send_reaches_the_gradient() -> None:
    with OllamaServer(pace=0.005) as server:
        server.hold()
        backend = OllamaBackend(host=server.url, model="llama-test", timeout_s=10)
        config = auto_config(**{"autotune.ollama": True, "limits.ollama": 2})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"ollama": backend}
        ) as engine:
            sessions = [engine.add_session(f"q{i}", "ollama") for i in range(6)]
            await asyncio.sleep(0.3)
            server.release()
            await engine.wait_idle()
            await asyncio.sleep(0.3)
            assert all(s.state == "done" for s in sessions)
            first = sessions[0]
            assert first.sent_at is not None and first.granted_at is not None
            assert first.sent_at >= first.granted_at
            assert engine.autotune._gradient is not None
            assert engine.autotune._gradient.last_median is not None  # windows closed on TTFTs
        await backend.aclose()


async def test_requests_awaiting_their_first_token_reach_the_gradient_by_send_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-flight lower bound: each tick tells the gradient when every streaming
    request still without a first token was sent."""
    with OllamaServer(pace=0.005) as server:
        server.hold()  # no first token until released
        backend = OllamaBackend(host=server.url, model="llama-test", timeout_s=10)
        config = auto_config(**{"autotune.ollama": True, "limits.ollama": 2})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"ollama": backend}
        ) as engine:
            gradient = engine.autotune._gradient
            assert gradient is not None
            seen: list[list[float]] = []
            pending = gradient.pending

            def spy(at: float, sent: Sequence[float]) -> None:
                seen.append(sorted(sent))
                pending(at, sent)

            monkeypatch.setattr(gradient, "pending", spy)
            sessions = [engine.add_session(f"q{i}", "ollama") for i in range(4)]
            await asyncio.sleep(0.3)
            sent = sorted(s.sent_at for s in sessions if s.sent_at is not None)
            assert len(sent) == 2 and seen[-1] == sent  # the two let in, still waiting
            server.release()
            await engine.wait_idle()
            await asyncio.sleep(0.1)
            assert seen[-1] == []
        await backend.aclose()


class RaiseOnce:
    """A gradient stand-in that raises 2 -> 3 at its first look and records every look."""

    def __init__(self) -> None:
        self.limit = 2
        self.looks: list[tuple[float, int]] = []

    def sample(self, at: float, ttft: float) -> None:
        pass

    def pending(self, at: float, sent: Sequence[float]) -> None:
        pass

    def observe(self, at: float, in_use: int) -> Move | None:
        self.looks.append((at, in_use))
        if len(self.looks) > 1:
            return None
        self.limit = 3
        return Move(3, "+1", "a raise", at)


async def test_a_raise_is_looked_at_again_at_once_with_the_session_it_let_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limiter lets a waiting session in as the limit grows, so the runner looks
    again in the same tick: a raise on trial holds before a second request goes out."""
    with OllamaServer(pace=0.005) as server:
        server.hold()
        backend = OllamaBackend(host=server.url, model="llama-test", timeout_s=10)
        config = auto_config(**{"autotune.ollama": True, "limits.ollama": 2})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"ollama": backend}
        ) as engine:
            stand_in = RaiseOnce()
            sessions = [engine.add_session(f"q{i}", "ollama") for i in range(4)]
            await asyncio.sleep(0.05)  # two streaming, two waiting for a permit
            monkeypatch.setattr(engine.autotune, "_gradient", stand_in)
            await asyncio.sleep(0.3)
            assert engine.knob("limits.ollama") == 3
            first, second = stand_in.looks[:2]
            assert first[1] == 2 and second == (first[0], 3)  # the same tick, one more in
            server.release()
            await engine.wait_idle()
            assert all(s.state == "done" for s in sessions)
        await backend.aclose()


async def test_maxsize_follows_the_consumer_call_time() -> None:
    # Exact: every consumer call moves the engine's fake clock by 10 ms.
    clock = FakeClock()
    consumer = RecordingConsumer(clock=clock, cost=0.010, sleep=0.001)
    config = auto_config(
        **{"autotune.maxsize": True, "autotune.target_buffer_ms": 100, "queue.maxsize": 64}
    )
    async with Engine(config, consumer=consumer, clock=clock) as engine:
        backend = ScriptedBackend([f"t{i} " for i in range(5000)], clock=clock)
        engine.add_session("p", backend)
        for _ in range(500):
            await asyncio.sleep(0.01)
            if engine.knob("queue.maxsize") != 64:
                break
        assert engine.knob("queue.maxsize") == 10  # ceil(100 ms / 10 ms)
        assert engine.knob("queue.batch_max") == 10
        assert engine.autotune.last_reason("queue.maxsize") == "x0.16: call 10 ms, target 100 ms"
        engine.cancel_all()


async def test_an_overloaded_error_inside_a_stream_is_a_cut() -> None:
    with AnthropicServer(api_key=TEST_KEY) as server:
        server.script["p"] = ["error_event"]
        backend = claude(server)
        config = auto_config(**{"autotune.claude": True, "limits.claude": 20})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"claude": backend}
        ) as engine:
            session = engine.add_session("p", "claude")
            await engine.wait_idle()
            await asyncio.sleep(0.15)
            assert session.state == "failed" and "overloaded_error" in (session.error or "")
            assert engine.knob("limits.claude") == 18
            reason = engine.autotune.last_reason("limits.claude")
            assert reason is not None and reason.startswith("-10%: overloaded at ")
        await backend.aclose()


async def test_a_content_timeout_is_a_cut() -> None:
    with AnthropicServer(api_key=TEST_KEY, stall_s=3.0) as server:
        server.script["p"] = ["stall"]
        backend = ClaudeBackend(
            api_key=TEST_KEY,
            model="claude-test-1",
            max_tokens=64,
            base_url=server.url,
            timeout_s=0.3,
            retries=0,
        )
        config = auto_config(**{"autotune.claude": True, "limits.claude": 10})
        async with Engine(
            config, consumer=RecordingConsumer(), backends={"claude": backend}
        ) as engine:
            session = engine.add_session("p", "claude")
            await engine.wait_idle()
            await asyncio.sleep(0.15)
            assert session.state == "failed"
            assert engine.knob("limits.claude") == 9
            reason = engine.autotune.last_reason("limits.claude")
            assert reason is not None and reason.startswith("-10%: timeout at ")
        await backend.aclose()


async def test_a_limit_outside_the_auto_bounds_is_brought_inside_as_auto_starts() -> None:
    config = auto_config(**{"limits.ollama": 40, "autotune.ollama_max": 12})
    async with Engine(config, consumer=RecordingConsumer()) as engine:
        engine.set_knob("autotune.ollama", True)
        assert engine.knob("limits.ollama") == 12
        assert engine.autotune.last_reason("limits.ollama") == "=12: within the auto bounds"
        assert engine.knob("autotune.ollama") is True


async def test_s_saves_the_switches_with_the_values_auto_chose(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n[autotune]\nclaude = false # keep me\n")
    config = load_config(path)
    async with Engine(config, consumer=RecordingConsumer()) as engine:
        engine.set_knob("autotune.claude", True)
        engine.set_knobs({"limits.claude": 9}, reason="test move")
        save_config(engine.tuned_config(), path)
    saved = load_config(path)
    assert saved[S.AUTOTUNE_CLAUDE] is True and saved[S.BACKEND_LIMITS["claude"]] == 9
    assert "# keep me" in path.read_text() and "# mine" in path.read_text()
