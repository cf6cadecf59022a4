"""The demo model: deterministic per seed and prompt, paced on its own clock, held back by a
slow reader (the wire buffer), and retuned live by its rate knob."""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from sluice.engine.backends.base import Backend, StreamInfo
from sluice.engine.backends.demo import DemoModel
from sluice.engine.chunk import Chunk
from tests.fakes import FakeClock


def fake_time() -> tuple[FakeClock, object]:
    clock = FakeClock(0.0)

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        await asyncio.sleep(0)

    return clock, sleep


def gaps_of(chunks: list[Chunk]) -> list[float]:
    """Time between the generation of consecutive chunks."""
    times = [c.generated_at for c in chunks]
    assert all(t is not None for t in times)
    return [b - a for a, b in itertools.pairwise(times)]  # type: ignore[operator]


async def read_all(model: DemoModel, prompt: str) -> tuple[list[Chunk], StreamInfo]:
    info = StreamInfo()
    chunks = [chunk async for chunk in model.stream(prompt, info)]
    return chunks, info


async def test_same_seed_and_prompt_give_the_same_answer() -> None:
    def model(seed: int) -> DemoModel:
        clock, sleep = fake_time()
        return DemoModel(rate=50, ttft_ms=100, tokens=40, seed=seed, clock=clock, sleep=sleep)

    a, _ = await read_all(model(7), "hello there")
    b, _ = await read_all(model(7), "hello there")
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.generated_at for c in a] == [c.generated_at for c in b]  # same pacing too
    assert len(a) == model(7).length_for("hello there")
    other_seed, _ = await read_all(model(8), "hello there")
    other_prompt, _ = await read_all(model(7), "another prompt")
    assert [c.text for c in other_seed] != [c.text for c in a]
    assert [c.text for c in other_prompt] != [c.text for c in a]


def test_lengths_are_drawn_around_the_mean() -> None:
    model = DemoModel(tokens=100, seed=3)
    lengths = [model.length_for(f"prompt {i}") for i in range(200)]
    assert len(set(lengths)) > 10
    assert 90 <= statistics.mean(lengths) <= 110
    assert min(lengths) >= 1


async def test_chunks_carry_text_metadata_and_the_time_they_were_generated() -> None:
    clock, sleep = fake_time()
    model = DemoModel(rate=20, ttft_ms=300, tokens=10, seed=1, jitter=0.0, clock=clock, sleep=sleep)
    assert isinstance(model, Backend)
    chunks, info = await read_all(model, "p q r")
    assert chunks[0].generated_at == pytest.approx(0.3)  # time to first token
    gaps = gaps_of(chunks)
    assert gaps == pytest.approx([1 / 20] * (len(chunks) - 1))  # 20 tokens per second
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text.strip() for c in chunks)
    assert all(c.text.startswith(" ") for c in chunks[1:])
    meta = chunks[0].meta
    assert meta is not None and meta["type"] == "content_block_delta"
    assert meta["message_id"].startswith("msg_demo_")
    assert chunks[0].nbytes > len(chunks[0].text) + 100  # text plus event metadata
    assert info.attempts == 1 and info.model == "sluice-demo"
    assert info.input_tokens == 3 and info.output_tokens == len(chunks)
    assert info.stop_reason == "end_turn"


async def test_jitter_varies_the_pace_deterministically() -> None:
    clock, sleep = fake_time()
    model = DemoModel(rate=100, ttft_ms=0, tokens=30, seed=2, jitter=0.3, clock=clock, sleep=sleep)
    chunks, _ = await read_all(model, "x")
    gaps = gaps_of(chunks)
    assert len(set(round(g, 9) for g in gaps)) > 5
    assert all(0.7 / 100 - 1e-9 <= g <= 1.3 / 100 + 1e-9 for g in gaps)


async def test_a_slow_reader_makes_generation_wait_once_the_wire_is_full() -> None:
    clock, sleep = fake_time()
    model = DemoModel(
        rate=10, ttft_ms=0, tokens=12, seed=0, jitter=0.0, wire_chunks=2, clock=clock, sleep=sleep
    )
    read_at: list[float] = []
    chunks: list[Chunk] = []
    async for chunk in model.stream("slow reader", StreamInfo()):
        read_at.append(clock.now)
        chunks.append(chunk)
        clock.now += 1.0  # the reader needs 1 s per chunk, the model only 0.1 s
    assert len(chunks) >= 6
    for i, chunk in enumerate(chunks):
        assert chunk.generated_at is not None and chunk.generated_at <= read_at[i]
        if i >= 2:
            # Chunk i could only be generated once chunk i-2 had been read off the wire.
            assert chunk.generated_at >= read_at[i - 2]
    # So the model runs at the reader's pace (1 per second), not its own (10 per second),
    # and a chunk never waits on the wire much longer than two reads.
    late = chunks[4:]
    gaps = gaps_of(late)
    assert gaps == pytest.approx([1.0] * len(gaps))
    assert all(read_at[i] - chunks[i].generated_at <= 2.0 + 1e-9 for i in range(len(chunks)))


async def test_a_fast_reader_never_holds_the_model_back() -> None:
    clock, sleep = fake_time()
    model = DemoModel(
        rate=10, ttft_ms=0, tokens=12, seed=0, jitter=0.0, wire_chunks=2, clock=clock, sleep=sleep
    )
    chunks, _ = await read_all(model, "slow reader")
    gaps = gaps_of(chunks)
    assert gaps == pytest.approx([0.1] * len(gaps))


async def test_the_rate_knob_applies_from_the_next_token() -> None:
    clock, sleep = fake_time()
    model = DemoModel(rate=10, ttft_ms=0, tokens=40, seed=0, jitter=0.0, clock=clock, sleep=sleep)
    chunks: list[Chunk] = []
    async for chunk in model.stream("knob", StreamInfo()):
        chunks.append(chunk)
        if len(chunks) == 4:
            model.rate = 100.0
        if len(chunks) == 8:
            break
    gaps = gaps_of(chunks)
    assert gaps[:3] == pytest.approx([0.1] * 3)
    assert gaps[3:] == pytest.approx([0.01] * 4)


async def test_generation_really_sleeps_on_the_event_loop_clock() -> None:
    model = DemoModel(rate=1000, ttft_ms=20, tokens=5, seed=0, jitter=0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks, _ = await read_all(model, "real time")
    assert chunks[0].generated_at is not None and chunks[0].generated_at >= started + 0.02 - 1e-3
    assert loop.time() - started >= 0.02  # a lower bound only: never assert an upper one


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1},
        {"tokens": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"wire_chunks": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DemoModel(**kwargs)  # type: ignore[arg-type]
