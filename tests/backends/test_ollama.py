"""The official ollama AsyncClient against a loopback server speaking /api/chat NDJSON."""

from __future__ import annotations

import pytest

from sluice.engine.backends.ollama import DEFAULT_HOST, OllamaBackend, resolve_host
from tests.backends.helpers import run_prompts
from tests.backends.servers import OllamaServer
from tests.fakes import RecordingConsumer, other_tasks, wait_until


def ollama(server: OllamaServer, **overrides: object) -> OllamaBackend:
    """An Ollama backend pointed at the loopback server, with short timeouts and backoff."""
    options: dict[str, object] = {
        "host": server.url,
        "model": "llama-test",
        "timeout_s": 0.5,
        "retries": 2,
        "backoff_s": 0.005,
    }
    options.update(overrides)
    return OllamaBackend(**options)  # type: ignore[arg-type]


def assert_whole(consumer: RecordingConsumer, session_id: str, expected: str, n: int) -> None:
    """Every chunk processed exactly once, in order."""
    assert consumer.indexes(session_id) == list(range(n))
    assert consumer.text(session_id) == expected


async def test_clean_stream_records_eval_counts(ollama_server: OllamaServer):
    ollama_server.chunks = 10
    details, consumer = await run_prompts(ollama(ollama_server), ["why is the sky blue"])
    d = details["why is the sky blue"]
    s = d.snapshot
    assert (s.state, s.error, s.attempts) == ("done", None, 1)
    assert_whole(consumer, s.id, ollama_server.text("why is the sky blue"), 10)
    assert (s.input_tokens, s.output_tokens) == (5, 10)  # prompt_eval_count, eval_count
    assert (d.model, d.stop_reason) == ("llama-test", "stop")
    body = ollama_server.requests[0].json()
    assert body["stream"] is True and body["model"] == "llama-test"
    assert body["messages"] == [{"role": "user", "content": "why is the sky blue"}]


async def test_busy_server_is_retried_with_backoff_before_the_stream(ollama_server: OllamaServer):
    ollama_server.script["p"] = ["503", "503", "ok"]
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    details, consumer = await run_prompts(ollama(ollama_server, sleep=record_sleep), ["p"])
    s = details["p"].snapshot
    assert (s.state, s.attempts) == ("done", 3)
    assert ollama_server.attempts["p"] == 3
    assert len(slept) == 2 and slept[1] > slept[0] > 0  # doubling backoff
    assert_whole(consumer, s.id, ollama_server.text("p"), ollama_server.chunks)


async def test_busy_beyond_retries_fails_with_the_servers_reason(ollama_server: OllamaServer):
    ollama_server.script["p"] = ["503"]
    details, consumer = await run_prompts(ollama(ollama_server, retries=1), ["p"])
    s = details["p"].snapshot
    assert s.state == "failed" and s.attempts == 2
    assert s.error == (
        "backend: BackendError: HTTP 503: server busy, please try again. maximum pending "
        "requests exceeded after 2 attempts"
    )
    assert consumer.seen == []


async def test_unknown_model_fails_without_retry(ollama_server: OllamaServer):
    details, _ = await run_prompts(ollama(ollama_server, model="nope"), ["p"])
    s = details["p"].snapshot
    assert s.state == "failed" and s.attempts == 1
    assert 'HTTP 404: model "nope" not found, try pulling it first' in (s.error or "")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("error_line", "error line after 4 chunks: an error was encountered while running"),
        ("drop", "connection dropped after 4 chunks"),
        ("stall", "no content for 0.5s after 4 chunks"),
        ("cut", "StreamTruncated: stream ended after 4 chunks without a done line"),
    ],
)
async def test_failure_after_the_first_chunk_fails_the_session_without_retry(
    ollama_server: OllamaServer, fault: str, reason: str
):
    ollama_server.script["bad"] = [fault]
    details, consumer = await run_prompts(ollama(ollama_server), ["bad", "good"])
    bad, good = details["bad"].snapshot, details["good"].snapshot
    assert bad.state == "failed"
    assert reason in (bad.error or "")
    assert bad.error.startswith("backend: ") and "\n" not in bad.error
    assert ollama_server.attempts["bad"] == 1 and bad.attempts == 1
    assert_whole(consumer, bad.id, "".join(ollama_server.words("bad")[:4]), 4)
    assert good.state == "done"
    assert_whole(consumer, good.id, ollama_server.text("good"), ollama_server.chunks)


async def test_many_sessions_with_mixed_faults_leave_nothing_open(ollama_server: OllamaServer):
    ollama_server.script.update(
        {"a": ["error_line"], "b": ["drop"], "c": ["cut"], "d": ["503", "ok"], "e": ["stall"]}
    )
    ollama_server.pace = 0.001
    prompts = ["a", "b", "c", "d", "e", "f", "g"]
    details, consumer = await run_prompts(ollama(ollama_server), prompts, limit=3, maxsize=2)
    failed = {p for p in prompts if details[p].snapshot.state == "failed"}
    assert failed == {"a", "b", "c", "e"}
    for p in ("d", "f", "g"):
        s = details[p].snapshot
        assert s.state == "done"
        assert_whole(consumer, s.id, ollama_server.text(p), ollama_server.chunks)
    assert ollama_server.streaming_peak["llama-test"] <= 3
    assert other_tasks() == set()
    await wait_until(lambda: ollama_server.open_connections == 0)


async def test_unreachable_host_fails_with_a_clear_reason():
    backend = OllamaBackend(host="http://127.0.0.1:9", model="m", timeout_s=0.5, retries=2)
    details, _ = await run_prompts(backend, ["p"])
    s = details["p"].snapshot
    assert s.state == "failed" and s.attempts == 1
    assert "cannot reach Ollama at http://127.0.0.1:9" in (s.error or "")


def test_host_comes_from_config_then_environment_then_default():
    env = {"OLLAMA_HOST": "10.0.0.5:11434"}
    assert resolve_host("http://gpu-box:11434", env) == "http://gpu-box:11434"
    assert resolve_host("", env) == "http://10.0.0.5:11434"
    assert resolve_host("", {}) == DEFAULT_HOST == "http://127.0.0.1:11434"


def test_the_client_always_has_a_timeout():
    backend = OllamaBackend(host=DEFAULT_HOST, model="m", timeout_s=7.0)
    timeout = backend.client._client.timeout
    assert timeout.read == 7.0 and timeout.connect == 7.0


async def test_an_error_first_line_in_a_200_says_what_the_server_said(ollama_server: OllamaServer):
    ollama_server.script["p"] = ["error_first"]
    details, consumer = await run_prompts(ollama(ollama_server), ["p"])
    s = details["p"].snapshot
    assert (s.state, s.attempts) == ("failed", 1)
    assert s.error == (
        "backend: BackendError: error line after 0 chunks: model runner has unexpectedly "
        "stopped, out of memory (not retried: the stream had started)"
    )
    assert consumer.seen == []


@pytest.mark.parametrize(("chunks", "before"), [(8, 4), (1, 0)])
async def test_a_line_that_never_ends_fails_on_the_content_idle_timeout(
    ollama_server: OllamaServer, chunks: int, before: int
):
    # After half the chunks a space every 50 ms for 3 s: bytes keep coming, no line ends.
    ollama_server.script["idle"] = ["idle"]
    ollama_server.chunk_counts["idle"] = chunks
    details, _ = await run_prompts(ollama(ollama_server, timeout_s=0.3), ["idle", "ok"])
    idle, ok = details["idle"].snapshot, details["ok"].snapshot
    assert idle.state == "failed"
    assert idle.error == f"backend: BackendError: no content for 0.3s after {before} chunks"
    assert (idle.tokens_in, idle.tokens_out) == (before, before)
    assert ok.state == "done"
    assert other_tasks() == set()


async def test_a_line_that_is_not_json_reports_after_how_many_chunks(ollama_server: OllamaServer):
    ollama_server.script["bad"] = ["bad_json"]
    details, consumer = await run_prompts(ollama(ollama_server), ["bad"])
    s = details["bad"].snapshot
    assert s.state == "failed"
    assert (s.error or "").startswith(
        "backend: BackendError: malformed line after 4 chunks: JSONDecodeError: "
    )
    assert_whole(consumer, s.id, "".join(ollama_server.words("bad")[:4]), 4)


@pytest.mark.parametrize(("reason", "warning"), [("stop", None), ("length", "truncated")])
async def test_done_reason_is_on_the_snapshot(
    ollama_server: OllamaServer, reason: str, warning: str | None
):
    ollama_server.stop_reasons["p"] = reason
    details, _ = await run_prompts(ollama(ollama_server), ["p"])
    s = details["p"].snapshot
    assert (s.state, s.stop_reason, s.stop_warning) == ("done", reason, warning)
