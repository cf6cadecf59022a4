"""The real anthropic client against a loopback server speaking Messages SSE, faults included."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from sluice.engine.backends.base import BackendError
from sluice.engine.backends.claude import ClaudeBackend
from sluice.engine.backends.registry import MissingCredentials, build_backend
from sluice.engine.config import Config, parse_config
from sluice.engine.engine import Engine
from tests.backends.helpers import TEST_KEY, run_prompts
from tests.backends.servers import AnthropicServer
from tests.fakes import RecordingConsumer, other_tasks, wait_until


def claude(server: AnthropicServer, **overrides: object) -> ClaudeBackend:
    """A Claude backend pointed at the loopback server, with short timeouts."""
    options: dict[str, object] = {
        "api_key": TEST_KEY,
        "model": "claude-test-1",
        "max_tokens": 64,
        "base_url": server.url,
        "timeout_s": 0.5,
        "retries": 2,
    }
    options.update(overrides)
    return ClaudeBackend(**options)  # type: ignore[arg-type]


def assert_whole(consumer: RecordingConsumer, session_id: str, expected: str, n: int) -> None:
    """Every chunk processed exactly once, in order."""
    assert consumer.indexes(session_id) == list(range(n))
    assert consumer.text(session_id) == expected


async def test_clean_stream_records_usage_and_every_chunk(anthropic_server: AnthropicServer):
    anthropic_server.chunks = 12
    details, consumer = await run_prompts(claude(anthropic_server, system="be brief"), ["hello"])
    d = details["hello"]
    s = d.snapshot
    assert (s.state, s.error, s.attempts) == ("done", None, 1)
    assert_whole(consumer, s.id, anthropic_server.text("hello"), 12)
    assert (s.input_tokens, s.output_tokens) == (1, 12)
    assert (d.model, d.stop_reason) == ("claude-test-1", "end_turn")
    sent = anthropic_server.requests[0]
    assert TEST_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    body = sent.json()
    assert (body["model"], body["max_tokens"], body["system"], body["stream"]) == (
        "claude-test-1",
        64,
        "be brief",
        True,
    )


@pytest.mark.parametrize("status", ["429", "529"])
async def test_retryable_status_is_retried_before_the_stream_and_counted(
    anthropic_server: AnthropicServer, status: str
):
    anthropic_server.script["p"] = [status, status, "ok"]
    details, consumer = await run_prompts(claude(anthropic_server), ["p"])
    s = details["p"].snapshot
    assert (s.state, s.attempts) == ("done", 3)
    assert anthropic_server.attempts["p"] == 3
    assert_whole(consumer, s.id, anthropic_server.text("p"), anthropic_server.chunks)


async def test_retries_exhausted_fails_with_status_and_attempts(anthropic_server: AnthropicServer):
    anthropic_server.script["p"] = ["429"]
    details, consumer = await run_prompts(claude(anthropic_server, retries=1), ["p"])
    s = details["p"].snapshot
    assert s.state == "failed"
    assert s.attempts == 2 and anthropic_server.attempts["p"] == 2
    reason = "HTTP 429 rate_limit_error: test rate_limit_error after 2 attempts"
    assert s.error == f"backend: BackendError: {reason}"
    assert consumer.seen == []


async def test_bad_key_is_not_retried_and_never_echoed(anthropic_server: AnthropicServer):
    backend = claude(anthropic_server, api_key="fake-wrong-key-123")
    details, _ = await run_prompts(backend, ["p"])
    s = details["p"].snapshot
    assert s.state == "failed" and s.attempts == 1
    assert "authentication_error" in (s.error or "")
    assert "fake-wrong-key-123" not in (s.error or "") + (details["p"].error_detail or "")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("error_event", "error event after 4 chunks: overloaded_error: Overloaded"),
        ("drop", "connection dropped after 4 chunks"),
        ("stall", "no content for 0.5s after 4 chunks"),
        ("cut", "StreamTruncated: stream ended after 4 chunks without message_stop"),
    ],
)
async def test_failure_after_the_first_chunk_fails_the_session_without_retry(
    anthropic_server: AnthropicServer, fault: str, reason: str
):
    anthropic_server.script["bad"] = [fault]
    details, consumer = await run_prompts(claude(anthropic_server), ["bad", "good"])
    bad, good = details["bad"].snapshot, details["good"].snapshot
    assert bad.state == "failed"
    assert reason in (bad.error or "")
    assert bad.error.startswith("backend: ")
    assert "\n" not in bad.error and "Traceback" not in bad.error
    assert anthropic_server.attempts["bad"] == 1  # no silent restart
    assert bad.attempts == 1
    words = anthropic_server.words("bad")[:4]
    assert_whole(consumer, bad.id, "".join(words), 4)  # what arrived was processed, once
    assert (bad.tokens_in, bad.tokens_out, bad.tokens_lost) == (4, 4, 0)
    assert good.state == "done"
    assert_whole(consumer, good.id, anthropic_server.text("good"), anthropic_server.chunks)


async def test_many_sessions_with_mixed_faults_leave_nothing_open(
    anthropic_server: AnthropicServer,
):
    faults = {"a": ["error_event"], "b": ["drop"], "c": ["cut"], "d": ["429", "ok"], "e": ["stall"]}
    anthropic_server.script.update(faults)
    anthropic_server.pace = 0.001
    prompts = ["a", "b", "c", "d", "e", "f", "g", "h"]
    details, consumer = await run_prompts(claude(anthropic_server), prompts, limit=3, maxsize=2)
    states = {p: details[p].snapshot.state for p in prompts}
    assert states == {
        "a": "failed",
        "b": "failed",
        "c": "failed",
        "d": "done",
        "e": "failed",
        "f": "done",
        "g": "done",
        "h": "done",
    }
    for p in ("d", "f", "g", "h"):
        s = details[p].snapshot
        assert_whole(consumer, s.id, anthropic_server.text(p), anthropic_server.chunks)
    assert anthropic_server.streaming_peak["claude-test-1"] <= 3
    assert other_tasks() == set()
    await wait_until(lambda: anthropic_server.open_connections == 0)


async def test_unreachable_server_fails_with_a_clear_reason():
    backend = ClaudeBackend(
        api_key=TEST_KEY,
        model="m",
        max_tokens=8,
        base_url="http://127.0.0.1:9",
        timeout_s=0.5,
        retries=0,
    )
    details, _ = await run_prompts(backend, ["p"])
    s = details["p"].snapshot
    assert s.state == "failed"
    assert "cannot reach http://127.0.0.1:9 after 1 attempt" in (s.error or "")


def test_missing_key_is_refused():
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY"):
        ClaudeBackend(api_key="", model="m", max_tokens=8)


async def test_sdk_debug_logs_never_hold_the_key(
    anthropic_server: AnthropicServer, caplog: pytest.LogCaptureFixture
):
    anthropic_server.script["x"] = ["429", "error_event"]
    with caplog.at_level(logging.DEBUG):
        details, _ = await run_prompts(claude(anthropic_server), ["x", "y"])
    assert details["x"].snapshot.state == "failed"
    assert caplog.records  # the SDK did log at debug level
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TEST_KEY not in logged


async def test_attempts_are_visible_while_the_sdk_waits_to_retry(anthropic_server: AnthropicServer):
    anthropic_server.script["p"] = ["429", "429", "ok"]
    anthropic_server.retry_after_ms = 150
    backend = claude(anthropic_server)
    consumer = RecordingConsumer()
    seen: set[int] = set()
    try:
        async with Engine(Config(), consumer=consumer, backends={"claude": backend}) as engine:
            session = engine.add_session("p", "claude")
            while not session.finished:
                if session.tokens_in == 0:
                    seen.add(session.snapshot().attempts)
                await asyncio.sleep(0.005)
    finally:
        await backend.aclose()
    assert {1, 2} <= seen  # the count rose while nothing had been received yet
    assert session.snapshot().attempts == 3 and session.state == "done"


def test_factory_prefers_config_over_environment():
    env = {"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:7001"}
    config = parse_config(
        {"claude": {"model": "claude-x", "max_tokens": 9, "retries": 5, "timeout_s": 3}}
    )
    backend = build_backend("claude", config, env)
    assert isinstance(backend, ClaudeBackend)
    assert backend.base_url == "http://127.0.0.1:7001"
    assert (backend.model, backend.max_tokens, backend.retries) == ("claude-x", 9, 5)
    assert backend.client.max_retries == 5
    config = parse_config({"claude": {"base_url": "http://127.0.0.1:7002"}})
    assert build_backend("claude", config, env).base_url == "http://127.0.0.1:7002"
    with pytest.raises(MissingCredentials, match="needs ANTHROPIC_API_KEY"):
        build_backend("claude", config, {})
    assert TEST_KEY not in repr(backend)


# -- streams the real API can send ----------------------------------------------------------


async def test_an_unknown_event_type_mid_stream_is_skipped(anthropic_server: AnthropicServer):
    anthropic_server.script["p"] = ["weird_event"]
    details, consumer = await run_prompts(claude(anthropic_server), ["p"])
    d = details["p"]
    assert (d.snapshot.state, d.snapshot.error) == ("done", None)
    assert_whole(consumer, d.snapshot.id, anthropic_server.text("p"), anthropic_server.chunks)
    assert d.stop_reason == "end_turn"


@pytest.mark.parametrize("shape", ["no_usage", "late_usage"])
async def test_usage_may_come_only_in_message_delta(anthropic_server: AnthropicServer, shape: str):
    anthropic_server.script["two words"] = [shape]
    details, consumer = await run_prompts(claude(anthropic_server), ["two words"])
    s = details["two words"].snapshot
    assert (s.state, s.error) == ("done", None)
    assert (s.input_tokens, s.output_tokens) == (2, anthropic_server.chunks)
    assert_whole(consumer, s.id, anthropic_server.text("two words"), anthropic_server.chunks)


async def test_events_missing_their_parts_do_not_fail_a_whole_answer(
    anthropic_server: AnthropicServer,
):
    anthropic_server.script["p"] = ["bare"]
    details, consumer = await run_prompts(claude(anthropic_server), ["p"])
    d = details["p"]
    assert (d.snapshot.state, d.snapshot.error, d.stop_reason) == ("done", None, None)
    assert_whole(consumer, d.snapshot.id, anthropic_server.text("p"), anthropic_server.chunks)


async def test_tool_input_json_that_does_not_parse_is_not_text_and_not_an_error(
    anthropic_server: AnthropicServer,
):
    anthropic_server.script["p"] = ["tool_use"]
    details, consumer = await run_prompts(claude(anthropic_server), ["p"])
    d = details["p"]
    assert (d.snapshot.state, d.snapshot.error) == ("done", None)
    assert (d.snapshot.tokens_in, d.stop_reason) == (anthropic_server.chunks, "tool_use")
    assert_whole(consumer, d.snapshot.id, anthropic_server.text("p"), anthropic_server.chunks)


async def test_a_stream_of_pings_only_fails_on_the_content_idle_timeout(
    anthropic_server: AnthropicServer,
):
    # Pings every 50 ms for 3 s after 4 chunks: the read timeout (0.3 s) never fires.
    anthropic_server.script["idle"] = ["idle"]
    details, _ = await run_prompts(claude(anthropic_server, timeout_s=0.3), ["idle", "ok"])
    idle, ok = details["idle"].snapshot, details["ok"].snapshot
    assert idle.state == "failed"
    assert idle.error == "backend: BackendError: no content for 0.3s after 4 chunks"
    assert (idle.tokens_in, idle.tokens_out, idle.attempts) == (4, 4, 1)
    assert ok.state == "done"
    assert other_tasks() == set()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad_json", "malformed event after 4 chunks: JSONDecodeError: "),
        ("bad_utf8", "malformed event after 4 chunks: UnicodeDecodeError: 'utf-8' codec"),
    ],
)
async def test_an_event_that_does_not_parse_fails_like_other_mid_stream_errors(
    anthropic_server: AnthropicServer, fault: str, reason: str
):
    anthropic_server.script["bad"] = [fault]
    details, consumer = await run_prompts(claude(anthropic_server), ["bad", "good"])
    bad, good = details["bad"].snapshot, details["good"].snapshot
    assert bad.state == "failed"
    assert (bad.error or "").startswith(f"backend: BackendError: {reason}")
    assert "\n" not in (bad.error or "")
    assert_whole(consumer, bad.id, "".join(anthropic_server.words("bad")[:4]), 4)
    assert good.state == "done"


@pytest.mark.parametrize(
    ("reason", "warning"),
    [
        ("end_turn", None),
        ("stop_sequence", None),
        ("max_tokens", "truncated"),
        ("refusal", "refused"),
    ],
)
async def test_how_the_answer_ended_is_on_the_snapshot(
    anthropic_server: AnthropicServer, reason: str, warning: str | None
):
    anthropic_server.stop_reasons["p"] = reason
    details, _ = await run_prompts(claude(anthropic_server), ["p"])
    s = details["p"].snapshot
    assert (s.state, s.stop_reason, s.stop_warning) == ("done", reason, warning)
    assert s.to_dict()["stop_reason"] == reason


def _strings_holding(marker: str) -> list[str]:
    """Every string reachable from a gc-tracked object that contains `marker` (but the
    marker itself). Containers holding only atoms are not tracked by the collector (a
    model's `__dict__`, say), so their contents are searched through their holder."""
    found = []
    for obj in gc.get_objects():
        refs = gc.get_referents(obj)
        while refs:
            ref = refs.pop()
            if type(ref) is str:
                if marker in ref and ref is not marker:
                    found.append(ref)
            elif isinstance(ref, dict | list | tuple) and not gc.is_tracked(ref):
                refs.extend(gc.get_referents(ref))
    return found


async def test_the_backend_holds_no_copy_of_the_answer(anthropic_server: AnthropicServer):
    # The old helper kept `text += delta` on a snapshot of the whole answer: any string
    # holding several consecutive deltas would be such a copy. Only the buffer may hold text.
    prompt = "a prompt no other test uses"
    anthropic_server.script[prompt] = ["idle"]
    anthropic_server.idle_s = 30.0
    backend = claude(anthropic_server, timeout_s=30.0)
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # the consumer holds its first chunk: nothing reaches the tail
    try:
        async with Engine(Config(), consumer=consumer, backends={"claude": backend}) as engine:
            session = engine.add_session(prompt, "claude")
            await wait_until(lambda: session.tokens_in == 4)
            marker = "".join(anthropic_server.words(prompt)[1:4])
            assert _strings_holding(marker) == []
            engine.cancel(session.id)
    finally:
        await backend.aclose()
