"""The app's `t` (calibrate) action: time the consumer, recommend maxsize and batch_max.

A thin bridge to `engine.tuning` (the same rules as `sluice calibrate`): it times a fresh
consumer of the configured kind at the delay knob's current value, once a chunk per call and
once batched, under the container's memory ceiling when one is set.
"""

from __future__ import annotations

import psutil

from sluice.engine.cgroup import memory_limit
from sluice.engine.consumers import make_consumer
from sluice.engine.engine import Engine
from sluice.engine.tuning import ConsumerTiming, Recommendation, measure_consumer, recommend

__all__ = ["CALIBRATION_BATCH", "CALIBRATION_CHUNKS", "recommend_for"]

CALIBRATION_CHUNKS = 50  # chunks timed per run, as `sluice calibrate`: 2.5 s at 50 ms a call
CALIBRATION_BATCH = 16  # chunks per call in the batched run


async def recommend_for(engine: Engine) -> tuple[Recommendation, ConsumerTiming]:
    """Time the engine's kind of consumer and recommend knob values for its current setup;
    returns the recommendation and the one-chunk timing it rests on."""
    knobs = engine.knobs
    config = engine.config
    consumer = make_consumer(
        config["consumer.kind"], delay_ms=knobs.delay_ms, path=config["consumer.path"]
    )
    try:
        single = await measure_consumer(consumer, chunks=CALIBRATION_CHUNKS, batch_max=1)
        batched = await measure_consumer(
            consumer, chunks=CALIBRATION_CHUNKS, batch_max=CALIBRATION_BATCH
        )
    finally:
        closer = getattr(consumer, "aclose", None)
        if closer is not None:
            await closer()
    ceiling = memory_limit()
    reserved = psutil.Process().memory_info().rss if ceiling is not None else 0
    rec = recommend(
        single,
        sessions=max(1, sum(knobs.limits.values())),
        memory_ceiling=ceiling,
        reserved_bytes=reserved,
        batched=batched,
        rate=knobs.rate,
    )
    return rec, single
