"""Auto-tune through the control API: the switches are knobs (PATCH, /metrics, the
snapshot), a PATCH of a driven knob takes it over, the reasons and history travel."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.engine.control import serve_control
from sluice.engine.demo_workload import ContinuousDemo
from sluice.engine.engine import Engine
from sluice.engine.snapshot import EngineSnapshot
from tests.control.helpers import fast_config


async def test_switches_are_knobs_on_the_wire_and_a_patch_takes_a_knob_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.control")
    config = fast_config().with_values({"autotune.window_s": 0.1})
    async with Engine(config) as engine:
        ContinuousDemo(engine).start()
        async with (
            serve_control(engine, token=None) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            entry = (await client.get("/v1/knobs")).json()["knobs"]["autotune.maxsize"]
            assert entry["value"] is False and entry["allowed"] == "must be true or false"
            answer = await client.patch("/v1/knobs", json={"autotune.maxsize": True})
            assert answer.status_code == 200
            assert answer.json()["knobs"]["autotune.maxsize"]["value"] is True
            assert engine.autotune.running
            refused = await client.patch("/v1/knobs", json={"autotune.maxsize": 1})
            assert refused.status_code == 422
            for _ in range(300):  # the first window's move
                if engine.autotune.last_reason("queue.maxsize"):
                    break
                await asyncio.sleep(0.02)
            logged = [r.getMessage() for r in caplog.records]
            assert any(
                m.startswith("knob queue.maxsize set to ") and "by auto-tune (x" in m
                for m in logged
            ), logged
            doc = (await client.get("/v1/snapshot")).json()
            (track,) = doc["autotune"]
            assert track["knob"] == "queue.maxsize" and track["on"] is True
            assert track["reason"] and "call " in track["reason"]
            assert EngineSnapshot.from_dict(doc).autotune[0].reason == track["reason"]
            metrics = (await client.get("/metrics")).text
            values = {
                s.labels.get("knob"): s.value
                for family in text_string_to_metric_families(metrics)
                if family.name == "sluice_knob"
                for s in family.samples
            }
            assert values["autotune.maxsize"] == 1.0 and values["autotune.claude"] == 0.0
            answer = await client.patch("/v1/knobs", json={"queue.maxsize": 40})
            knobs = answer.json()["knobs"]
            assert knobs["queue.maxsize"]["value"] == 40
            assert knobs["autotune.maxsize"]["value"] is False  # taken over by hand
