"""Back-pressure reaches the Claude Code CLI: a fake CLI writing 20,000 deltas as fast as it
can against a paused consumer ends up blocked on its stdout pipe after a small, bounded part
of the answer, and nothing grows while it waits.

This holds only while the Agent SDK reads the CLI's stdout into a bounded queue (100 messages
in claude-agent-sdk 0.2.189, the pinned range's floor); an SDK release that made that queue
unbounded would read the whole answer into memory, and this test would fail.
"""

from __future__ import annotations

from sluice.bench.agent_flood import measure_flood

DELTAS = 20_000
# In flight when the CLI blocks: the session's 16 chunks, one in the consumer, one in the
# producer, the SDK's 100 queued messages, the lines of one 64 KiB read being framed,
# asyncio's pipe reader (paused past 128 KiB) and the 64 KiB pipe: about 1,200 deltas of
# ~200 bytes here. 2,000 (the benchmark's goal) leaves room for other kernels and SDK patches.
BOUND = 2_000


async def test_a_paused_consumer_blocks_the_cli_and_memory_stays_flat() -> None:
    result = await measure_flood(DELTAS, maxsize=16)
    assert result.cli_blocked, "the CLI never blocked on its stdout pipe"
    assert 0 < result.written <= BOUND, result
    assert result.written_later == result.written  # nothing moved while it was held
    assert result.depth == 16  # the session's buffer full, not beyond
    assert result.buffered_bytes < 16 * 1024
    # Released, the whole answer arrives in order, and the CLI is gone.
    assert result.whole and result.delivered == DELTAS
    assert result.cli_left == 0


async def test_an_unbounded_session_buffer_lets_the_whole_answer_in() -> None:
    # The contrast (and a check that the measurement can see growth): with maxsize 0 nothing
    # stops the producer, so the CLI writes everything and the session holds it all.
    result = await measure_flood(5_000, maxsize=0)
    assert not result.cli_blocked
    assert result.written == 5_000
    assert result.depth > BOUND  # far past any bounded case (the SDK may still be reading)
    assert result.whole and result.cli_left == 0
