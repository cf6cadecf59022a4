"""The control API's documents: the spliced encoding equals the plain one byte for byte,
knob entries say everything a slider needs, error lines stay one line."""

from __future__ import annotations

import asyncio
import json

from sluice.engine.control.wire import (
    RowCache,
    encode,
    knobs_document,
    one_line,
    render_snapshot,
    snapshot_document,
)
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot
from tests.control.helpers import fast_config
from tests.fakes import ScriptedBackend


async def test_the_row_by_row_encoding_is_the_plain_encoding() -> None:
    async with Engine(fast_config()) as engine:
        engine.add_session(
            "x", ScriptedBackend(["a"], fail_after=0, name="creds"), session_id="bad\n\u2028"
        )
        engine.add_demo_sessions(5)
        await asyncio.sleep(0.05)
        snap = engine.snapshot()
        knobs = knobs_document(engine)
    for sessions in (True, False):
        plain = encode(snapshot_document(snap, knobs, "node-a", sessions=sessions))
        assert render_snapshot(snap, knobs, "node-a", sessions) == plain
    doc = json.loads(render_snapshot(snap, knobs, "node-a"))
    assert [s["id"] for s in doc["sessions"]] == [s.id for s in snap.sessions]
    assert EngineSnapshot.from_dict(doc) == snap
    light = json.loads(render_snapshot(snap, knobs, "node-a", False))
    assert "sessions" not in light and light["node"] == "node-a"


async def test_knob_entries_carry_value_range_slider_and_words() -> None:
    async with Engine(fast_config()) as engine:
        engine.set_knob("demo.rate", 12.5)
        knobs = knobs_document(engine)
    assert list(knobs) == list(engine.knobs)
    rate = knobs["demo.rate"]
    assert rate["value"] == 12.5 and rate["min"] == 0.1 and rate["max"] == 10_000
    assert rate["integer"] is False and rate["slider"] == [0.1, 1000]
    assert rate["label"] == "demo tok/s" and "tokens per second" in rate["allowed"]
    assert knobs["limits.demo"]["slider"] == [1, 64] and knobs["limits.demo"]["max"] == 10_000


def test_one_line_escapes_control_characters_hides_credentials_and_truncates() -> None:
    assert one_line("a\nb\tc\x1b[31m") == "a\\nb\\tc\\x1b[31m"
    assert one_line("see http://user:key@host:1/x") == "see http://***@host:1/x"
    long = one_line("x" * 1000, 50)
    assert len(long) == 50 and long.endswith("...")


async def test_finished_sessions_rows_are_reused_and_the_frame_stays_exact() -> None:
    async with Engine(fast_config()) as engine:
        engine.set_knob("demo.rate", 5000.0)
        done = engine.add_session("short", ScriptedBackend(["a", "b"], name="short"))
        engine.add_demo_sessions(3)
        for _ in range(3000):
            if done.finished:
                break
            await asyncio.sleep(0.01)
        knobs = knobs_document(engine)
        rows = RowCache()
        first_snap = engine.snapshot()
        first = render_snapshot(first_snap, knobs, "n", True, rows)
        await asyncio.sleep(0.05)
        snap = engine.snapshot()
    assert first == encode(snapshot_document(first_snap, knobs, "n"))
    kept = rows._rows  # the finished session only
    assert set(kept) == {done.id}
    cached_row = kept[done.id][1]
    again = render_snapshot(snap, knobs, "n", True, rows)
    assert again == encode(snapshot_document(snap, knobs, "n"))
    assert rows._rows[done.id][1] is cached_row  # not encoded again
