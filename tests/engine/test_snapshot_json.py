"""The snapshot's JSON rebuilds the snapshot: `EngineSnapshot.from_dict` is the inverse of the
documented JSON (`sluice run --json` and the control API's /v1/snapshot), so a remote app
sees exactly the dataclasses a local one does."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from sluice.engine.config import Config, ConsumerConfig, DemoConfig, LimitsConfig
from sluice.engine.engine import Engine
from sluice.engine.report import to_json_dict
from sluice.engine.snapshot import EngineSnapshot, Knobs, SessionSnapshot
from tests.engine.engine_fakes import ScriptedBackend


def _config() -> Config:
    return replace(
        Config(),
        limits=LimitsConfig(demo=2),
        consumer=ConsumerConfig(kind="sleep", delay_ms=1.0),
        demo=DemoConfig(sessions=4, tokens=40, rate=2000.0, ttft_ms=1.0, seed=3),
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
    k = snap.knobs
    doc["knobs"] = {
        "queue.maxsize": {"value": k.maxsize, "min": 0, "max": 1024},
        "queue.batch_max": {"value": k.batch_max},
        "consumer.delay_ms": {"value": k.delay_ms},
        "demo.sessions": {"value": k.sessions},
        "demo.rate": {"value": k.rate},
        **{f"limits.{name}": {"value": v} for name, v in k.limits.items()},
    }
    assert EngineSnapshot.from_dict(doc) == snap
    assert EngineSnapshot.from_dict(doc).knobs.maxsize == 7


def test_knobs_from_values_maps_dotted_names_to_fields() -> None:
    knobs = Knobs.from_values(
        {
            "queue.maxsize": 8,
            "queue.batch_max": 2,
            "limits.demo": 3,
            "limits.mine": 5,
            "consumer.delay_ms": 1.5,
            "demo.rate": 10.0,
            "demo.sessions": 4,
        }
    )
    assert knobs.maxsize == 8 and knobs.batch_max == 2
    assert dict(knobs.limits) == {"demo": 3, "mine": 5}
    assert (knobs.delay_ms, knobs.rate, knobs.sessions) == (1.5, 10.0, 4)
    assert Knobs.from_dict(knobs.to_dict()) == knobs


async def test_a_missing_member_is_a_key_error_not_a_half_built_snapshot() -> None:
    snap = await _mixed_snapshot()
    row = snap.sessions[0].to_dict()
    del row["queue_wait_p99"]
    with pytest.raises(KeyError):
        SessionSnapshot.from_dict(row)
    row = snap.sessions[0].to_dict()
    del row["stop_reason"]  # a field with a default may be absent (an older server)
    assert SessionSnapshot.from_dict(row).stop_reason is None
