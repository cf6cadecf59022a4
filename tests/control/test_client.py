"""ControlClient against a real ControlServer in this process: the event stream, knobs,
save, cancel, the token, a node that is down and comes back, and servers that misbehave."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from sluice.bench.redis_server import free_port
from sluice.engine.config import load_config
from sluice.engine.control import ControlServer, serve_control
from sluice.engine.control.client import (
    CONNECTED,
    DISCONNECTED,
    ClientError,
    ControlClient,
    check_url,
)
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from tests.control.helpers import FAST_TOML, TOKEN
from tests.fakes import other_tasks, wait_until

FAST_BACKOFF = (0.05, 0.2)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Engine, ControlServer]]:
    path = tmp_path / "config.toml"
    path.write_text(FAST_TOML)
    async with Engine(load_config(path)) as engine:
        ContinuousDemo(engine).start()
        async with serve_control(engine, token=None) as server:
            yield engine, server


def _client(url: str, **options: object) -> ControlClient:
    options.setdefault("token", None)
    options.setdefault("backoff", FAST_BACKOFF)
    return ControlClient(url, **options)  # type: ignore[arg-type]


async def test_follows_the_event_stream_with_the_session_list(
    served: tuple[Engine, ControlServer],
) -> None:
    _engine, server = served
    async with _client(server.url, rate=10, sessions_rate=2) as client:
        await wait_until(lambda: len(getattr(client.snapshot(), "sessions", ())) == 6, 30)
        assert client.status.state == CONNECTED
        assert client.status.name == server.node
        snap = client.snapshot()
        assert snap is not None and snap.knobs["queue.maxsize"] == 16
        assert snap.knobs["autotune.maxsize"] is False  # a switch is a bool, not a number
        assert client.knob_entries["queue.maxsize"]["max"] == 1024
        light = client.snapshot(sessions=False)
        assert light is not None and light.sessions == ()


async def test_knobs_save_and_cancel_act_on_the_node(
    served: tuple[Engine, ControlServer], tmp_path: Path
) -> None:
    engine, server = served
    async with _client(server.url) as client:
        values = await client.set_knobs({"queue.maxsize": 32, "limits.demo": 5})
        assert values["queue.maxsize"] == 32 and engine.knob("limits.demo") == 5
        with pytest.raises(ClientError) as refused:
            await client.set_knobs({"queue.maxsize": 32, "limits.demo": 0})
        assert refused.value.status == 422 and "limits.demo = 0" in str(refused.value)
        assert engine.knob("limits.demo") == 5  # all or nothing
        answer = await client.save()
        assert Path(answer.path) == tmp_path / "config.toml"
        assert load_config(tmp_path / "config.toml")["queue.maxsize"] == 32
        assert (tmp_path / "config.toml.bak").exists()
        running = next(s for s in engine.sessions.values() if not s.finished)
        await client.cancel(running.id)
        await wait_until(lambda: running.finished, 30)
        assert running.state == "cancelled"
        with pytest.raises(ClientError) as unknown:
            await client.cancel("no/such id")
        assert unknown.value.status == 404


async def test_a_wrong_token_is_a_clear_state_and_never_shown(tmp_path: Path) -> None:
    async with Engine(load_config(None)) as engine:
        async with serve_control(engine, token=TOKEN) as server:
            wrong = "wrong-token-that-must-not-show"
            async with _client(server.url, token=wrong) as client:
                await wait_until(lambda: client.status.error is not None, 30)
                status = client.status
                assert status.state == DISCONNECTED
                assert "HTTP 401" in (status.error or "") and "SLUICE_TOKEN" in (status.error or "")
                assert wrong not in repr(status) and TOKEN not in repr(status)
                with pytest.raises(ClientError) as refused:
                    await client.set_knobs({"queue.maxsize": 3})
                assert refused.value.status == 401 and wrong not in str(refused.value)
            async with _client(server.url, token=TOKEN) as client:
                await wait_until(lambda: client.status.state == CONNECTED, 30)


async def test_a_node_that_is_down_is_retried_and_comes_back() -> None:
    port = free_port()
    async with _client(f"http://127.0.0.1:{port}") as client:
        await wait_until(lambda: client.status.state == DISCONNECTED, 30)
        assert "cannot connect" in (client.status.error or "")
        down_since = client.status.since
        await asyncio.sleep(0.3)  # several retries: still down since the first failure
        assert client.status.since == down_since
        async with Engine(load_config(None)) as engine:
            async with serve_control(engine, bind=f"127.0.0.1:{port}", token=None):
                await wait_until(lambda: client.status.state == CONNECTED, 30)
                assert client.status.error is None
            # The server stops: the stream's goodbye, then retries until it is back.
            await wait_until(lambda: client.status.state == DISCONNECTED, 30)
            async with serve_control(engine, bind=f"127.0.0.1:{port}", token=None):
                await wait_until(lambda: client.status.state == CONNECTED, 30)


async def _hostile(body: bytes, port: int) -> web.AppRunner:
    """A server that answers the event stream with `body` then keeps the stream open."""

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await asyncio.sleep(3600)
        return response

    app = web.Application()
    app.router.add_get("/v1/events", events)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_a_frame_with_wrong_types_or_silence_drops_the_link_not_the_app() -> None:
    port = free_port()
    bad = {"sessions": [], "totals": {"sessions": "many"}, "knobs": {}}
    runner = await _hostile(b"event: snapshot\ndata: " + json.dumps(bad).encode() + b"\n\n", port)
    try:
        async with _client(f"http://127.0.0.1:{port}", stale_after=0.5) as client:
            await wait_until(lambda: client.status.error is not None, 30)
            assert "does not parse" in (client.status.error or "")
            assert client.snapshot() is None
    finally:
        await runner.cleanup()
    port = free_port()
    runner = await _hostile(b": nothing but a comment\n\n", port)
    try:
        async with _client(f"http://127.0.0.1:{port}", stale_after=0.5) as client:
            await wait_until(lambda: client.status.error is not None, 30)
            assert client.status.state == DISCONNECTED
            assert "no answer in time" in (client.status.error or "")
    finally:
        await runner.cleanup()


async def test_a_node_that_never_answers_times_out_and_closing_leaves_no_task() -> None:
    before = other_tasks()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = _client(url, timeout=0.3, stale_after=0.3)
        client.start()
        await wait_until(lambda: client.status.state == DISCONNECTED, 30)
        assert client.status.error == "no answer in time"
        with pytest.raises(ClientError, match="no answer in time"):
            await asyncio.wait_for(client.set_knobs({"queue.maxsize": 3}), 30)
        await asyncio.wait_for(client.aclose(), 5)
    finally:
        listener.close()
    await asyncio.sleep(0)
    assert not (other_tasks() - before)


@pytest.mark.parametrize(
    "text",
    ["", "ftp://host:1", "http://", "http://[bad", "http://h:1/v1/x", "http://u:secret@h:99999"],
)
def test_a_bad_url_is_one_line_without_its_credentials(text: str) -> None:
    with pytest.raises(ValueError) as bad:
        check_url(text)
    message = str(bad.value)
    assert "\n" not in message and "secret" not in message


def test_a_url_is_normalised_and_its_credentials_hidden_when_shown() -> None:
    assert check_url("127.0.0.1:8321") == "http://127.0.0.1:8321"
    assert check_url("HTTP://h:1/") == "http://h:1"
    client = ControlClient("http://ops:secret@h:1", token=None)
    assert "secret" not in client.shown_url and client.shown_url == "http://***@h:1"
    assert "secret" not in client.url and "secret" not in repr(client.status)
    with pytest.raises(ValueError, match="cannot both"):
        ControlClient("http://ops:secret@h:1", token="x")


async def _split(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
async def test_event_stream_lines_survive_any_chunking(size: int) -> None:
    from sluice.engine.control.client import _lines

    data = b'retry: 1000\n\nevent: snapshot\r\ndata: {"a": 1}\n\n: comment\ndata: x'
    lines = [line async for line in _lines(_split(data, size))]
    assert lines == [b"retry: 1000", b"", b"event: snapshot", b'data: {"a": 1}', b"", b": comment"]


async def test_an_endless_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.engine.control import client as module

    monkeypatch.setattr(module, "MAX_FRAME", 100)
    with pytest.raises(ClientError, match="larger than 100 bytes"):
        async for _ in module._lines(_split(b"data: " + b"x" * 1000, 16)):
            pass
