"""The control API in-process, against a running engine: every endpoint, every refusal, the
token, and a clean stop. The real HTTP stack on loopback (aiohttp serving, httpx asking)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.engine.config import load_config
from sluice.engine.control import BindError, ControlServer, serve_control, start_control
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot
from tests.control.helpers import FAST_TOML, TOKEN, fast_config, sse_frames
from tests.fakes import ScriptedBackend, other_tasks

Served = tuple[Engine, ControlServer, httpx.AsyncClient]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    path = tmp_path / "config.toml"
    path.write_text(FAST_TOML)
    async with Engine(load_config(path)) as engine:
        ContinuousDemo(engine).start()
        async with (
            serve_control(engine, token=None) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            yield engine, server, client


def _error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


async def _streaming(engine: Engine, count: int = 4) -> None:
    """Wait until `count` sessions stream (generous: a busy machine is slow, not wrong)."""
    for _ in range(3000):
        if sum(1 for s in engine.sessions.values() if s.state == "streaming") >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the demo sessions never started streaming")


def _session_task(task: asyncio.Task[object]) -> bool:
    """A task of the engine's sessions (`sluice-<id>`, `<id>:producer`, `<id>:consumer`)."""
    name = task.get_name()
    return name.startswith("sluice-") or name.endswith((":producer", ":consumer"))


# -- reading -------------------------------------------------------------------------------


async def test_snapshot_has_the_run_json_members_knobs_and_node(served: Served) -> None:
    engine, server, client = served
    await _streaming(engine)
    response = await client.get("/v1/snapshot")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    assert {"sessions", "totals", "process", "backends", "knobs", "node", "taken_at"} <= set(doc)
    assert doc["node"] == server.node
    assert len(doc["sessions"]) == 6
    entry = doc["knobs"]["queue.maxsize"]
    assert entry["value"] == 16 and entry["min"] == 0 and entry["max"] == 1024
    assert entry["integer"] is True and entry["step"] == 1 and entry["label"] == "maxsize"
    assert entry["help"] and "0 = unbounded" in entry["allowed"]
    assert doc["knobs"]["consumer.delay_ms"]["integer"] is False
    assert set(doc["knobs"]) == set(engine.knobs)
    snap = EngineSnapshot.from_dict(doc)  # the remote app's view: the same dataclasses
    assert snap.knobs == engine.knobs
    assert {s.id for s in snap.sessions} == set(engine.sessions)


async def test_metrics_parse_with_prometheus_and_follow_its_naming(served: Served) -> None:
    engine, _, client = served
    await _streaming(engine)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("sluice_chunks_in", "sluice_chunks_out", "sluice_chunks_lost"):
        assert families[name].type == "counter"
        assert families[name].samples[0].name == f"{name}_total"
    for name in ("queue_wait", "token_age", "ttft", "consumer_call", "loop_lag"):
        assert families[f"sluice_{name}_seconds"].type == "histogram"
    in_use = {s.labels["backend"]: s.value for s in families["sluice_backend_in_use"].samples}
    limits = {s.labels["backend"]: s.value for s in families["sluice_backend_limit"].samples}
    waiting = {s.labels["backend"]: s.value for s in families["sluice_backend_waiting"].samples}
    assert limits["demo"] == 4 and in_use["demo"] <= 4 and waiting["demo"] >= 0
    states = {s.labels["state"]: s.value for s in families["sluice_sessions"].samples}
    assert set(states) == {"queued", "streaming", "draining", "done", "failed", "cancelled"}
    assert families["sluice_buffered_bytes"].samples[0].value >= 0
    assert families["sluice_process_resident_memory_bytes"].samples[0].value > 0
    knobs = {s.labels["knob"]: s.value for s in families["sluice_knob"].samples}
    assert knobs["queue.maxsize"] == 16
    count = [
        s.value for s in families["sluice_queue_wait_seconds"].samples if s.name.endswith("_count")
    ]
    assert count[0] <= families["sluice_chunks_out"].samples[0].value


# -- knobs ---------------------------------------------------------------------------------


async def test_patch_applies_to_running_sessions_and_answers_the_new_knobs(
    served: Served,
) -> None:
    engine, _, client = served
    await _streaming(engine)
    response = await client.patch(
        "/v1/knobs", json={"queue.maxsize": 32, "limits.demo": 5, "consumer.delay_ms": 1}
    )
    assert response.status_code == 200
    knobs = response.json()["knobs"]
    assert knobs["queue.maxsize"]["value"] == 32 and knobs["limits.demo"]["value"] == 5
    assert knobs["consumer.delay_ms"]["value"] == 1.0
    doc = (await client.get("/v1/snapshot")).json()
    running = [s for s in doc["sessions"] if s["state"] in ("queued", "streaming", "draining")]
    assert running and all(s["maxsize"] == 32 for s in running)
    assert {b["name"]: b["limit"] for b in doc["backends"]}["demo"] == 5


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"queue.maxsize": 32, "limits.demo": -1}, "limits.demo"),  # out of range
        ({"queue.maxsize": 32, "queue.maxsize ": 1}, "queue.maxsize "),  # unknown name
        ({"queue.maxsize": 32, "nope": 1}, "no such knob"),
        ({"queue.maxsize": "32"}, "queue.maxsize"),  # a string
        ({"queue.maxsize": 32.5}, "integer"),  # a float for an integer knob
        ({"queue.maxsize": True}, "queue.maxsize"),  # booleans are not numbers
        ({"queue.maxsize": None}, "queue.maxsize"),
        ({"queue.maxsize": [32]}, "queue.maxsize"),
        (b'{"demo.rate": 1e309}', "demo.rate"),  # parses to infinity
        ({"queue.maxsize": 10**30}, "queue.maxsize"),
        ({"queue.maxsize\n": 1}, "queue.maxsize\\n"),  # shown escaped, on one line
        ([{"queue.maxsize": 32}], "JSON object"),
        ("queue.maxsize=32", "JSON object"),
        (32, "JSON object"),
        (b"null", "JSON object"),
    ],
)
async def test_a_bad_patch_changes_nothing_and_answers_422_naming_the_problem(
    served: Served, body: Any, names: str
) -> None:
    engine, _, client = served
    before = dict(engine.knobs)
    if isinstance(body, bytes):
        response = await client.patch("/v1/knobs", content=body)
    else:
        response = await client.patch("/v1/knobs", json=body)
    assert response.status_code == 422
    assert names in _error_of(response)
    assert dict(engine.knobs) == before  # not even the valid key of the request


@pytest.mark.parametrize(
    ("body", "spelled"),
    [
        (b'{"queue.maxsize": true}', "queue.maxsize = true: "),
        (b'{"queue.maxsize": false}', "queue.maxsize = false: "),
        (b'{"queue.maxsize": null}', "queue.maxsize = null: "),
        (b'{"queue.maxsize": "32"}', 'queue.maxsize = "32": '),
        (b'{"queue.maxsize": [32]}', "queue.maxsize = [32]: "),
        (b'{"limits.demo": {"n": 1}}', 'limits.demo = {"n": 1}: '),
        (b'{"queue.maxsize": 32.5}', "queue.maxsize = 32.5: "),
    ],
)
async def test_a_refused_value_is_named_as_the_json_it_was_sent_as(
    served: Served, body: bytes, spelled: str
) -> None:
    _, _, client = served
    response = await client.patch("/v1/knobs", content=body)
    assert response.status_code == 422
    message = _error_of(response)
    assert message.startswith(spelled), message  # JSON spelling, not Python's True/None/'32'


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"{'queue.maxsize': 1}", b'{"queue.maxsize": NaN}', b"\xff\xfe", b"[1,"]
)
async def test_a_body_that_is_not_json_gets_422(served: Served, raw: bytes) -> None:
    engine, _, client = served
    before = dict(engine.knobs)
    response = await client.patch(
        "/v1/knobs", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in _error_of(response)
    assert dict(engine.knobs) == before


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "nests arrays or objects too deeply"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nests arrays or objects too deeply"),
        (b'{"queue.maxsize": 32, "queue.maxsize": 40}', "queue.maxsize is given twice"),
        (b'{"queue.maxsize": 1e400}', "queue.maxsize = 1e400: beyond the range of a number"),
        (b'{"queue.maxsize": 1}\xff', "not UTF-8 JSON text (bad byte at 20)"),
        (b'{"queue.maxsize": ' + b"9" * 5000 + b"}", "an integer of 5000 digits: no knob"),
    ],
    ids=["deep-arrays", "deep-objects", "duplicate-key", "beyond-float", "not-utf8", "digits"],
)
async def test_hostile_json_gets_a_one_line_422_not_a_500(
    served: Served, raw: bytes, said: str
) -> None:
    engine, _, client = served
    before = dict(engine.knobs)
    response = await client.patch("/v1/knobs", content=raw)
    assert response.status_code == 422
    message = _error_of(response)
    assert said in message and "\n" not in message
    assert dict(engine.knobs) == before


async def test_a_byte_order_mark_before_the_json_is_ignored(served: Served) -> None:
    engine, _, client = served
    response = await client.patch("/v1/knobs", content=b'\xef\xbb\xbf{"queue.maxsize": 31}')
    assert response.status_code == 200, response.text
    assert engine.knob("queue.maxsize") == 31


async def test_a_body_over_64_kib_gets_413(served: Served) -> None:
    _, _, client = served
    big = json.dumps({"queue.maxsize": 1, "pad": "x" * 70_000})
    response = await client.patch("/v1/knobs", content=big)
    assert response.status_code == 413
    assert "65536" in _error_of(response)


async def test_knob_changes_are_logged_with_who_made_them(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _, client = served
    caplog.set_level(logging.INFO, logger="sluice.control")
    await client.patch("/v1/knobs", json={"queue.maxsize": 20})
    engine.set_knob("queue.batch_max", 3)  # in-process, not through the API
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("knobs changed by 127.0.0.1:") and "queue.maxsize 16 -> 20" in line
        for line in lines
    ), lines
    assert any("queue.batch_max set to 3 in-process" in line for line in lines), lines


# -- routes --------------------------------------------------------------------------------


async def test_unknown_routes_get_404_and_wrong_methods_405(served: Served) -> None:
    _, _, client = served
    response = await client.get("/v2/snapshot")
    assert response.status_code == 404
    assert "/v1/snapshot" in _error_of(response)  # it lists what there is
    response = await client.delete("/v1/knobs")
    assert response.status_code == 405
    assert "PATCH" in response.headers["allow"] and "PATCH" in _error_of(response)
    response = await client.get("/v1/save")
    assert response.status_code == 405
    response = await client.get("/v1/sessions/demo-0001/cancel")
    assert response.status_code == 405


async def test_a_browser_page_elsewhere_cannot_reach_or_change_a_loopback_server(
    served: Served,
) -> None:
    engine, server, client = served
    # DNS rebinding: a name that resolves to 127.0.0.1 still says its own name in Host.
    response = await client.get("/v1/snapshot", headers={"Host": "evil.example"})
    assert response.status_code == 403
    before = dict(engine.knobs)
    response = await client.patch(
        "/v1/knobs", json={"queue.maxsize": 1}, headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert dict(engine.knobs) == before
    host = server.url.removeprefix("http://")
    response = await client.patch(
        "/v1/knobs", json={"queue.maxsize": 1}, headers={"Origin": f"http://{host}"}
    )
    assert response.status_code == 200


# -- token ---------------------------------------------------------------------------------


async def test_with_a_token_every_endpoint_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLUICE_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "config.toml"
    path.write_text(FAST_TOML)
    requests = [
        ("GET", "/v1/snapshot", None),
        ("GET", "/v1/knobs", None),
        ("PATCH", "/v1/knobs", {"queue.maxsize": 3}),
        ("POST", "/v1/save", None),
        ("POST", "/v1/sessions/demo-0001/cancel", None),
        ("GET", "/v1/events", None),
        ("GET", "/metrics", None),
        ("GET", "/no/such/route", None),
    ]
    seen: list[str] = []
    async with Engine(load_config(path)) as engine:
        ContinuousDemo(engine).start()
        async with serve_control(engine) as server:  # the token from the environment
            assert server.auth
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                before = dict(engine.knobs)
                for method, route, body in requests:
                    for headers in (
                        {},
                        {"Authorization": "Bearer wrong-token"},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"},
                    ):
                        response = await client.request(method, route, json=body, headers=headers)
                        assert response.status_code == 401, (method, route, headers)
                        assert response.json() == {"error": "missing or wrong bearer token"}
                        assert response.headers["www-authenticate"].startswith("Bearer")
                assert dict(engine.knobs) == before
                assert not path.with_name("config.toml.bak").exists()
                assert engine.sessions["demo-0001"].state != "cancelled"
                good = {"Authorization": f"Bearer {TOKEN}"}
                for route in ("/v1/snapshot", "/metrics", "/v1/knobs"):
                    response = await client.get(route, headers=good)
                    assert response.status_code == 200
                    seen.append(response.text)
                response = await client.patch("/v1/knobs", json={"queue.maxsize": 3}, headers=good)
                assert response.status_code == 200
                seen.append(response.text)
    seen += [r.getMessage() for r in caplog.records]
    assert all(TOKEN not in text for text in seen)


async def test_a_network_address_without_a_token_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLUICE_TOKEN", raising=False)
    async with Engine(fast_config()) as engine:
        with pytest.raises(BindError, match="SLUICE_TOKEN"):
            ControlServer(engine, bind="0.0.0.0:0")
        with pytest.raises(BindError):
            ControlServer(engine, bind="0.0.0.0:0", token="")


# -- save ----------------------------------------------------------------------------------


async def test_save_writes_the_config_with_a_backup_and_keeps_other_keys(
    served: Served, tmp_path: Path
) -> None:
    _engine, _server, client = served
    path = tmp_path / "config.toml"
    await client.patch("/v1/knobs", json={"queue.maxsize": 48, "limits.demo": 7})
    response = await client.post("/v1/save")
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == str(path) and body["backup"] == str(path) + ".bak"
    assert path.with_name("config.toml.bak").read_text() == FAST_TOML
    text = path.read_text()
    assert "maxsize = 48" in text and "demo = 7" in text
    assert "# a comment that saving must keep" in text and 'owner = "ops"' in text
    saved = load_config(path)
    assert saved["queue.maxsize"] == 48 and saved["limits.demo"] == 7
    # a second save of our own file is no conflict
    await client.patch("/v1/knobs", json={"queue.maxsize": 50})
    assert (await client.post("/v1/save", json={})).status_code == 200
    assert load_config(path)["queue.maxsize"] == 50


async def test_save_refuses_with_409_when_the_file_changed_on_disk_unless_told_to_overwrite(
    served: Served, tmp_path: Path
) -> None:
    _engine, _, client = served
    path = tmp_path / "config.toml"
    edited = FAST_TOML.replace('owner = "ops"', 'owner = "someone else"')
    path.write_text(edited)
    await client.patch("/v1/knobs", json={"queue.maxsize": 64})
    response = await client.post("/v1/save")
    assert response.status_code == 409
    message = _error_of(response)
    assert "changed on disk" in message and '"overwrite": true' in message
    assert path.read_text() == edited
    response = await client.post("/v1/save", json={"overwrite": True})
    assert response.status_code == 200
    text = path.read_text()
    assert "maxsize = 64" in text and 'owner = "someone else"' in text


@pytest.mark.parametrize("body", [{"overwrite": "yes"}, {"force": True}, [True], "x"])
async def test_save_with_a_bad_body_gets_422_and_writes_nothing(
    served: Served, tmp_path: Path, body: Any
) -> None:
    _, _, client = served
    response = await client.post("/v1/save", json=body)
    assert response.status_code == 422
    _error_of(response)
    assert not (tmp_path / "config.toml.bak").exists()


async def test_save_without_a_config_file_answers_409() -> None:
    async with Engine(fast_config()) as engine, serve_control(engine, token=None) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            response = await client.post("/v1/save")
    assert response.status_code == 409
    assert "no config file" in _error_of(response)


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_ends_a_running_session_and_says_why_it_cannot_otherwise(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _, client = served
    caplog.set_level(logging.INFO, logger="sluice.control")
    await _streaming(engine)
    target = next(s.id for s in engine.sessions.values() if s.state == "streaming")
    response = await client.post(f"/v1/sessions/{target}/cancel")
    assert response.status_code == 200 and response.json() == {"id": target, "cancelled": True}
    for _ in range(1000):
        if engine.sessions[target].finished:
            break
        await asyncio.sleep(0.01)
    assert engine.sessions[target].state == "cancelled"
    response = await client.post(f"/v1/sessions/{target}/cancel")
    assert response.status_code == 409
    assert "already ended (cancelled)" in _error_of(response)
    response = await client.post("/v1/sessions/no-such-session/cancel")
    assert response.status_code == 404
    assert "no-such-session" in _error_of(response)
    others = [s.state for s in engine.sessions.values() if s.id != target]
    assert "cancelled" not in others
    assert any(
        f"session {target} cancelled by 127.0.0.1:" in r.getMessage() for r in caplog.records
    )


async def test_a_failed_session_is_logged_once_on_one_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _, _ = served
    caplog.set_level(logging.INFO, logger="sluice.control")
    engine.add_session(
        "x", ScriptedBackend(["a", "b"], fail_after=1, name="flaky"), session_id="flaky-1"
    )
    for _ in range(1000):
        if engine.sessions["flaky-1"].finished:
            break
        await asyncio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if "flaky-1" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("session flaky-1 failed: backend: ")
    assert "\n" not in lines[0]


# -- events --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["0", "0.1", "21", "1e9", "nan", "inf", "fast", ""])
async def test_events_refuse_a_rate_outside_the_range(served: Served, rate: str) -> None:
    _, _, client = served
    response = await client.get("/v1/events", params={"rate": rate})
    assert response.status_code == 422
    assert "0.2 to 20" in _error_of(response)


@pytest.mark.parametrize("sessions_rate", ["-1", "11", "nan", "x"])
async def test_events_refuse_a_sessions_rate_outside_0_to_the_rate(
    served: Served, sessions_rate: str
) -> None:
    _, _, client = served
    response = await client.get("/v1/events", params={"rate": 10, "sessions_rate": sessions_rate})
    assert response.status_code == 422
    assert "from 0 (never) to the rate, 10" in _error_of(response)


async def test_events_carry_the_session_list_only_as_often_as_asked(served: Served) -> None:
    _, _server, client = served
    frames: list[dict[str, Any]] = []
    params = {"rate": "10", "sessions_rate": "2"}
    async with client.stream("GET", "/v1/events", params=params) as response:
        async for _, data in sse_frames(response):
            frames.append(data)
            if len(frames) == 12:
                break
    assert "sessions" in frames[0]
    with_sessions = [f["taken_at"] for f in frames if "sessions" in f]
    assert 1 <= len(with_sessions) < len(frames)
    # a list at most every 1/2 s, less half a frame period and the frame cache (50 ms)
    gaps = [b - a for a, b in itertools.pairwise(with_sessions)]
    assert all(gap >= 0.5 - 0.05 - 0.05 - 0.01 for gap in gaps), gaps
    light = next(f for f in frames if "sessions" not in f)
    assert {"totals", "process", "backends", "knobs", "node", "taken_at"} <= set(light)
    # the remote app keeps the last list and rebuilds the snapshot with it
    last = {**light, "sessions": frames[0]["sessions"]}
    assert EngineSnapshot.from_dict(last).totals.sessions >= 6

    frames.clear()
    async with client.stream("GET", "/v1/events", params={"rate": 20, "sessions_rate": 0}) as r:
        async for _, data in sse_frames(r):
            frames.append(data)
            if len(frames) == 5:
                break
    assert "sessions" in frames[0] and not any("sessions" in f for f in frames[1:])


async def test_events_stream_snapshots_never_faster_than_asked(served: Served) -> None:
    _engine, server, client = served
    rate = 10.0
    frames: list[dict[str, Any]] = []
    async with client.stream("GET", "/v1/events", params={"rate": str(rate)}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event, data in sse_frames(response):
            assert event == "snapshot"
            frames.append(data)
            if len(frames) == 1:
                (viewer,) = server.viewers()
                assert viewer.rate == rate and viewer.peer.startswith("127.0.0.1:")
            if len(frames) == 8:
                break
    snaps = [EngineSnapshot.from_dict(f) for f in frames]
    times = [s.taken_at for s in snaps]
    assert times == sorted(times)
    # Frame k is built no earlier than k periods after the first was due.
    assert times[-1] - times[0] >= (len(times) - 2) / rate
    for _ in range(500):  # the server notices the viewer left
        if not server.viewers():
            break
        await asyncio.sleep(0.01)
    assert server.viewers() == []


async def test_a_stalled_viewer_costs_one_frame_of_memory_and_does_not_hold_the_engine(
    served: Served,
) -> None:
    engine, server, client = served
    await _streaming(engine)
    # Frames of ~250 KB: 200 sessions, most of them queued for the 4 demo slots.
    engine.set_knobs({"demo.sessions": 200, "demo.rate": 50})
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    _reader, writer = await asyncio.open_connection(host, int(port))
    sock = writer.get_extra_info("socket")
    import socket

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(f"GET /v1/events?rate=20 HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    try:
        frame_size = len((await client.get("/v1/snapshot")).content)
        out_before = engine.snapshot().totals.tokens_out
        peak = 0
        stats = None
        for _ in range(6000):  # the reader never reads: wait until many ticks were dropped
            viewers = server.viewers()
            if viewers:
                stats = viewers[0]
                peak = max(peak, stats.pending_bytes)
                if stats.frames_dropped >= 40:
                    break
            await asyncio.sleep(0.01)
        assert stats is not None and stats.frames_dropped >= 40
        # Frames are not queued for it: what waits is bounded by the transport's buffer
        # (aiohttp pauses writing at its high-water mark) plus the frame being written.
        assert peak <= 2 * frame_size + 256 * 1024, (peak, frame_size)
        assert stats.frames_sent < stats.frames_dropped
        # Meanwhile the engine and other clients carry on.
        assert engine.snapshot().totals.tokens_out > out_before
        response = await client.get("/v1/snapshot")
        assert response.status_code == 200
    finally:
        writer.close()
    # Stopping the server with a stalled viewer attached is bounded (it is aborted).


async def test_stop_closes_event_streams_and_leaves_no_task(tmp_path: Path) -> None:
    async with Engine(fast_config()) as engine:
        demo = ContinuousDemo(engine)
        demo.start()
        before = set(asyncio.all_tasks())
        server = await start_control(engine, token=None)
        events: list[str] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def watch() -> None:
                async with client.stream("GET", "/v1/events", params={"rate": "5"}) as response:
                    async for event, _ in sse_frames(response):
                        events.append(event)

            watcher = asyncio.create_task(watch())
            for _ in range(3000):
                if events:
                    break
                await asyncio.sleep(0.01)
            # a stalled viewer as well
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            _, stalled = await asyncio.open_connection(host, int(port))
            stalled.write(f"GET /v1/events?rate=20 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await server.stop()
            await asyncio.wait_for(watcher, 30)
            stalled.close()
        assert events[0] == "snapshot" and events[-1] == "closing"
        await asyncio.sleep(0)
        left = {t for t in other_tasks(before) if not _session_task(t)}
        assert left == set()
        assert server.viewers() == []
        # The engine itself is untouched by the server's stop.
        assert not engine.closed and demo.running


async def test_a_stopped_server_starts_again_and_head_on_events_is_refused() -> None:
    async with Engine(fast_config()) as engine:
        ContinuousDemo(engine).start()
        server = ControlServer(engine, token=None)
        for _ in range(2):
            await server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                assert (await client.head("/v1/events")).status_code == 405
                async with client.stream("GET", "/v1/events", params={"rate": 20}) as response:
                    frames = 0
                    async for event, _ in sse_frames(response):
                        assert event == "snapshot"
                        frames += 1
                        if frames == 2:
                            break
            await server.stop()
        assert server.viewers() == []
