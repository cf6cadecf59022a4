"""Shared set-up for the control API tests: a fast demo config and an SSE frame reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sluice.engine.config import Config

TOKEN = "test-token-0123456789abcdef"

# Demo sessions that keep streaming for the whole test: long answers at a brisk rate.
FAST_TOML = """\
# a comment that saving must keep
[queue]
maxsize = 16
batch_max = 2
[limits]
demo = 4
[consumer]
kind = "sleep"
delay_ms = 2
[demo]
sessions = 6
tokens = 100000
rate = 500
ttft_ms = 5
seed = 1

[x-notes]
owner = "ops"
"""


def fast_config(sessions: int = 6) -> Config:
    """The FAST_TOML values, built in code (no file)."""
    return Config().with_values(
        {
            "queue.maxsize": 16,
            "queue.batch_max": 2,
            "limits.demo": 4,
            "consumer.kind": "sleep",
            "consumer.delay_ms": 2.0,
            "demo.sessions": sessions,
            "demo.tokens": 100_000,
            "demo.rate": 500.0,
            "demo.ttft_ms": 5.0,
            "demo.seed": 1,
        }
    )


async def sse_frames(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, data as JSON) for each event of a server-sent-events response."""
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
