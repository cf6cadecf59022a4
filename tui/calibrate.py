"""The app's `t` (calibrate) action: time the consumer, recommend maxsize and batch_max.

A thin bridge to `engine.tuning` (the same rules as `sluice calibrate`): it times a fresh
consumer of the configured kind at the delay knob's current value, once a chunk per call and
once batched, under the container's memory ceiling when one is set.
"""

from __future__ import annotations

from sluice.engine import settings as S
from sluice.engine.consumers import close_consumer, make_consumer
from sluice.engine.engine import Engine
from sluice.engine.tuning import ConsumerTiming, Recommendation, calibrate, container_ceiling

__all__ = ["CALIBRATION_BATCH", "CALIBRATION_CHUNKS", "recommend_for"]

CALIBRATION_CHUNKS = 50  # chunks timed per run, as `sluice calibrate`: 2.5 s at 50 ms a call
CALIBRATION_BATCH = 16  # chunks per call in the batched run


async def recommend_for(engine: Engine) -> tuple[Recommendation, ConsumerTiming]:
    """Time the engine's kind of consumer and recommend knob values for its current setup,
    by the same rules and calibration as `sluice calibrate` (engine/tuning.py); returns the
    recommendation and the one-chunk timing it rests on."""
    config = engine.config
    consumer = make_consumer(
        config[S.CONSUMER_KIND],
        delay_ms=engine.knob(S.CONSUMER_DELAY_MS.name),
        path=config[S.CONSUMER_PATH],
    )
    ceiling, reserved = container_ceiling()
    limits = [value for name, value in engine.knobs.items() if name.startswith("limits.")]
    try:
        result = await calibrate(
            consumer,
            sessions=max(1, sum(limits)),
            memory_ceiling=ceiling,
            reserved_bytes=reserved,
            rate=engine.knob(S.DEMO_RATE.name),
            chunks=CALIBRATION_CHUNKS,
            batch=CALIBRATION_BATCH,
        )
    finally:
        await close_consumer(consumer)
    return result.recommendation, result.single
