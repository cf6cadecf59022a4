"""An example workload for `sluice monitor examples.monitor_workload:main`.

It starts its own sessions through the engine: its own prompts, on the demo model (swap
"demo" for "claude" or "ollama" with those configured), with its own consumer, a simulated
webhook that takes longer for bigger batches. The app shows them live; turn the knobs and
watch the buffers and the limiter respond.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sluice.engine import Chunk, Engine

PROMPTS = [
    "Summarise the plot of Hamlet in three sentences.",
    "Explain back-pressure to a new engineer.",
    "List ten uses for a paperclip.",
    "Write a haiku about queues.",
    "What is a token bucket?",
    "Describe the water cycle.",
]


class Webhook:
    """A pretend webhook: 30 ms per call plus 2 ms per chunk; counts what it delivered."""

    def __init__(self) -> None:
        self.delivered = 0

    async def process(self, batch: Sequence[Chunk]) -> None:
        """Deliver one batch."""
        await asyncio.sleep(0.030 + 0.002 * len(batch))
        self.delivered += len(batch)


async def main(engine: Engine) -> None:
    """Run every prompt four times, a wave at a time, through one shared webhook."""
    webhook = Webhook()
    for wave in range(4):
        for n, prompt in enumerate(PROMPTS):
            engine.add_session(prompt, "demo", consumer=webhook, session_id=f"hook-{wave}-{n}")
        await engine.wait_idle()
        await asyncio.sleep(1.0)
