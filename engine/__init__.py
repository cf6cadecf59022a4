"""Sluice engine: back-pressured LLM streaming sessions with live-tunable buffers and limits.

The engine is a library and never imports the UI. Start here:

    async with Engine(load_config()) as engine:
        engine.add_demo_sessions(12)
        await engine.wait_idle()
        print(engine.snapshot().totals)
"""

from sluice.engine.backends.base import Backend, BackendError, StreamInfo, StreamTruncated
from sluice.engine.backends.demo import DemoModel
from sluice.engine.buffer import BufferClosed, BufferStats, TokenBuffer
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config, ConfigError, load_config
from sluice.engine.config_save import SaveResult, save_config
from sluice.engine.consumers import (
    Consumer,
    NullConsumer,
    SleepConsumer,
    SqliteConsumer,
    StdoutConsumer,
    make_consumer,
)
from sluice.engine.engine import Engine, KnobError
from sluice.engine.histogram import Histogram, Percentiles
from sluice.engine.limiter import AdjustableLimiter, LimiterStats
from sluice.engine.session import Session
from sluice.engine.snapshot import (
    BackendSnapshot,
    EngineSnapshot,
    ProcessSnapshot,
    SessionDetail,
    SessionSnapshot,
    Totals,
)

__all__ = [
    "AdjustableLimiter",
    "Backend",
    "BackendError",
    "BackendSnapshot",
    "BufferClosed",
    "BufferStats",
    "Chunk",
    "Config",
    "ConfigError",
    "Consumer",
    "DemoModel",
    "Engine",
    "EngineSnapshot",
    "Histogram",
    "KnobError",
    "LimiterStats",
    "NullConsumer",
    "Percentiles",
    "ProcessSnapshot",
    "SaveResult",
    "Session",
    "SessionDetail",
    "SessionSnapshot",
    "SleepConsumer",
    "SqliteConsumer",
    "StdoutConsumer",
    "StreamInfo",
    "StreamTruncated",
    "TokenBuffer",
    "Totals",
    "load_config",
    "make_consumer",
    "save_config",
]
