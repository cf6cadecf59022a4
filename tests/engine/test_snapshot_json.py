"""The snapshot's JSON rebuilds the snapshot: `EngineSnapshot.from_dict` is the inverse of the
documented JSON (`sluice run --json` and the control API's /v1/snapshot), so a remote app
sees exactly the dataclasses a local one does."""

from __future__ import annotations

import asyncio
import json

import pytest

from sluice.engine.config import Config
from sluice.engine.engine import Engine
from sluice.engine.report import knobs_json, to_json_dict
from sluice.engine.snapshot import EngineSnapshot, SessionSnapshot, knobs_from_json
from tests.fakes import ScriptedBackend


def _config() -> Config:
    return Config().with_values(
        {
            "limits.demo": 2,
            "consumer.kind": "sleep",
            "consumer.delay_ms": 1.0,
            "demo.sessions": 4,
            "demo.tokens": 40,
            "demo.rate": 2000.0,
            "demo.ttft_ms": 1.0,
            "demo.seed": 3,
        }
    )


async def _mixed_snapshot() -> EngineSnapshot:
    """Sessions in several states: done, failed, streaming and queued."""
    engine = Engine(_config())
    async with engine:
        engine.add_session("boom", ScriptedBackend(["a", "b", "c"], fail_after=2, name="boom"))
        first = engine.add_demo_sessions(2)
        for _ in range(3000):
            if all(s.finished for s in first):
                break
            await asyncio.sleep(0.01)
        engine.set_knobs({"queue.maxsize": 7, "limits.demo": 1})
        engine.add_demo_sessions(3)  # one streams, the others wait for the single slot
        await asyncio.sleep(0.05)
        return engine.snapshot()


async def test_from_dict_rebuilds_the_snapshot_from_its_json() -> None:
    snap = await _mixed_snapshot()
    states = {s.state for s in snap.sessions}
    assert {"done", "failed", "queued"} <= states
    doc = json.loads(json.dumps(to_json_dict(snap, taken_at=snap.taken_at)))
    again = EngineSnapshot.from_dict(doc)
    assert again == snap
    assert again.sessions[0].queue_wait == snap.sessions[0].queue_wait


async def test_from_dict_reads_knobs_by_dotted_name_as_the_control_api_sends_them() -> None:
    snap = await _mixed_snapshot()
    doc = json.loads(json.dumps(to_json_dict(snap, taken_at=snap.taken_at)))
    doc["knobs"] = {name: {"value": value, "min": 0} for name, value in snap.knobs.items()}
    assert EngineSnapshot.from_dict(doc) == snap
    assert EngineSnapshot.from_dict(doc).knobs["queue.maxsize"] == 7


def test_the_runs_knobs_object_maps_back_to_dotted_names() -> None:
    values = {
        "queue.maxsize": 8,
        "queue.batch_max": 2,
        "limits.demo": 3,
        "limits.mine": 5,
        "consumer.delay_ms": 1.5,
        "demo.rate": 10.0,
        "demo.sessions": 4,
    }
    shown = knobs_json(values)
    assert shown["maxsize"] == 8 and shown["limits"] == {"demo": 3, "mine": 5}
    assert knobs_from_json(shown) == values


async def test_a_missing_member_is_a_key_error_not_a_half_built_snapshot() -> None:
    snap = await _mixed_snapshot()
    row = snap.sessions[0].to_dict()
    del row["queue_wait_p99"]
    with pytest.raises(KeyError):
        SessionSnapshot.from_dict(row)
    row = snap.sessions[0].to_dict()
    del row["stop_reason"]  # a field with a default may be absent (an older server)
    assert SessionSnapshot.from_dict(row).stop_reason is None
