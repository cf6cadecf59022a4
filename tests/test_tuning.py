"""Calibration arithmetic (exact, no clock), the ceiling logic, and the calibrate command."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.chunk import Chunk
from sluice.engine.config import Config, load_config
from sluice.engine.tuning import (
    CallCost,
    ConsumerTiming,
    calibrate,
    container_ceiling,
    fit_call_cost,
    measure_consumer,
    parse_size,
    recommend,
    timing_from_durations,
)


def timing(mean_ms: float, *, batch: int = 1, nbytes: int = 1000) -> ConsumerTiming:
    s = mean_ms / 1000
    return ConsumerTiming(batch, 50, 50 * batch, s, s, s, s, nbytes)


# -- timing summaries -----------------------------------------------------------------------


def test_timing_from_durations_mean_and_nearest_rank() -> None:
    durations = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    t = timing_from_durations(durations, batch_size=4, bytes_per_chunk=900)
    assert t.calls == 100 and t.chunks == 400
    assert t.mean == pytest.approx(0.0505)
    assert t.p50 == pytest.approx(0.050)
    assert t.p99 == pytest.approx(0.099)
    assert t.max == pytest.approx(0.100)
    assert t.chunks_per_second == pytest.approx(4 / 0.0505)


def test_timing_from_no_durations_is_an_error() -> None:
    with pytest.raises(ValueError, match="no consumer calls"):
        timing_from_durations([], batch_size=1, bytes_per_chunk=1)


# -- maxsize rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean_ms", "target", "expected"),
    [(50.0, 500.0, 10), (50.0, 510.0, 11), (30.0, 500.0, 17), (1.0, 16.0, 16), (7.0, 700.0, 100)],
)
def test_maxsize_is_ceil_of_target_over_mean(mean_ms: float, target: float, expected: int) -> None:
    rec = recommend(timing(mean_ms), sessions=4, target_buffer_ms=target)
    assert rec.target_maxsize == expected
    assert rec.maxsize == expected
    assert not rec.clamped
    assert rec.batch_max == expected
    assert rec.buffer_bytes == 4 * expected * 1000


def test_float_noise_does_not_add_one() -> None:
    # 0.1 + 0.2 style noise: 500 / 50.00000000000001 must still give 10, not 11 or 9.
    t = timing_from_durations([0.05 + 1e-17] * 50, batch_size=1, bytes_per_chunk=10)
    assert recommend(t, sessions=1).maxsize == 10


def test_clamped_to_the_maxsize_range_and_said_so() -> None:
    fast = recommend(timing(0.1), sessions=1, target_buffer_ms=500)
    assert fast.target_maxsize == 5000
    assert fast.maxsize == 1024 and fast.clamped
    assert any("clamped to 1024" in note for note in fast.notes)
    slow = recommend(timing(2000.0), sessions=1, target_buffer_ms=500)
    assert slow.target_maxsize == 1 and slow.maxsize == 1 and not slow.clamped


def test_zero_time_consumer_gets_the_top_of_the_range() -> None:
    rec = recommend(timing(0.0), sessions=1)
    assert rec.target_maxsize is None and rec.maxsize == 1024 and rec.clamped
    assert rec.batch_max == 256  # batch_max has its own, smaller range


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="sessions"):
        recommend(timing(50), sessions=0)
    with pytest.raises(ValueError, match="target_buffer_ms"):
        recommend(timing(50), sessions=1, target_buffer_ms=0)
    with pytest.raises(ValueError, match="memory_ceiling"):
        recommend(timing(50), sessions=1, memory_ceiling=0)


# -- memory ceiling -------------------------------------------------------------------------


def test_ceiling_lowers_maxsize_to_what_fits() -> None:
    # 12 sessions x 1000 B per chunk; 60,000 B allow 5 chunks each.
    rec = recommend(timing(50), sessions=12, memory_ceiling=60_000)
    assert rec.target_maxsize == 10
    assert rec.ceiling_maxsize == 5
    assert rec.maxsize == 5 and rec.limited_by_memory and rec.fits
    assert rec.buffer_bytes == 60_000 <= rec.memory_ceiling  # type: ignore[operator]
    assert rec.batch_max == 5


def test_ceiling_rounds_down() -> None:
    rec = recommend(timing(50), sessions=12, memory_ceiling=59_999)
    assert rec.ceiling_maxsize == 4 and rec.maxsize == 4
    assert rec.buffer_bytes <= 59_999


def test_generous_ceiling_changes_nothing() -> None:
    rec = recommend(timing(50), sessions=12, memory_ceiling=2**30)
    assert rec.maxsize == 10 and not rec.limited_by_memory
    assert rec.ceiling_maxsize == 2**30 // 12_000


def test_reserved_bytes_come_off_the_ceiling() -> None:
    rec = recommend(timing(50), sessions=10, memory_ceiling=100_000, reserved_bytes=70_000)
    assert rec.ceiling_maxsize == 3 and rec.maxsize == 3


def test_ceiling_too_small_for_one_chunk_each() -> None:
    rec = recommend(timing(50), sessions=100, memory_ceiling=50_000)
    assert rec.ceiling_maxsize == 0
    assert rec.maxsize == 1 and not rec.fits
    assert any("less than one chunk per session" in note for note in rec.notes)


# -- batch fitting --------------------------------------------------------------------------


def test_fit_call_cost_from_two_batch_sizes() -> None:
    cost = fit_call_cost(timing(12.0), timing(42.0, batch=16))
    assert cost.per_chunk == pytest.approx(0.002)
    assert cost.fixed == pytest.approx(0.010)


def test_fit_clamps_noise_below_zero() -> None:
    cost = fit_call_cost(timing(50.2), timing(50.0, batch=16))
    assert cost.per_chunk == 0.0 and cost.fixed == pytest.approx(0.0502)


def test_keep_up_batch() -> None:
    # A fixed 50 ms call at 40 chunks/s x 1.25 headroom: 50 chunks/s x 0.05 s = 2.5 -> 3.
    assert CallCost(0.05, 0.0).keep_up_batch(40.0) == 3
    # fixed 10 ms + 2 ms per chunk at 100/s: 100 x 0.01 / (1 - 100 x 0.002) = 1.25 -> 2.
    assert CallCost(0.010, 0.002).keep_up_batch(80.0) == 2
    # 10 ms per chunk can never reach 125 chunks/s, whatever the batch.
    assert CallCost(0.0, 0.010).keep_up_batch(100.0) is None


def test_recommend_reports_keep_up_and_its_limits() -> None:
    rec = recommend(timing(50), sessions=4, batched=timing(50, batch=16), rate=40.0)
    assert rec.keep_up_batch == 3 and rec.batch_max == 10 and not rec.notes
    slow = recommend(timing(50), sessions=4, batched=timing(50 * 16, batch=16), rate=40.0)
    assert slow.keep_up_batch is None
    assert any("cannot keep up" in note for note in slow.notes)
    small = recommend(
        timing(50), sessions=4, memory_ceiling=8_000, batched=timing(50, batch=16), rate=40.0
    )
    assert small.maxsize == 2 and small.keep_up_batch == 3
    assert any("needs batches of 3" in note for note in small.notes)


# -- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("2g", 2 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("64k", 64 * 1024),
        ("1048576", 1048576),
        (" 10MB ", 10 * 2**20),
        ("1T", 2**40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1G", "12X", "1.2.3M", "0", "0.1"])
def test_parse_size_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


# -- measuring ------------------------------------------------------------------------------


class Recording:
    """A consumer that records the batches it was handed and takes no time."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def process(self, batch: Sequence[Chunk]) -> None:
        self.batches.append(len(batch))


class FakeClock:
    """Advances 5 ms on every read pair: each timed call 'takes' 5 ms."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += 0.005
        return self.now


async def test_measure_consumer_sends_at_least_the_chunks_asked() -> None:
    consumer = Recording()
    t = await measure_consumer(consumer, chunks=50, batch_max=1, clock=FakeClock())
    assert consumer.batches == [1] * 51  # one warm-up call, then 50 timed
    assert t.calls == 50 and t.chunks == 50
    assert t.mean == pytest.approx(0.005) and t.p99 == pytest.approx(0.005)
    assert 300 < t.bytes_per_chunk < 5000


async def test_measure_consumer_batched_makes_min_calls() -> None:
    consumer = Recording()
    t = await measure_consumer(consumer, chunks=50, batch_max=16, min_calls=8, clock=FakeClock())
    assert consumer.batches == [16] * 9
    assert t.batch_size == 16 and t.calls == 8 and t.chunks == 128


async def test_measure_consumer_propagates_errors() -> None:
    class Broken:
        async def process(self, batch: Sequence[Chunk]) -> None:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await measure_consumer(Broken())


# -- the command ----------------------------------------------------------------------------


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["calibrate", *argv])


def run_calibrate(
    args: argparse.Namespace, config: Config, *, stdout: io.StringIO, stderr: io.StringIO
) -> int:
    """`sluice calibrate` in-process with this config and these streams."""
    return run_command(args, CommandIO(stdout, stderr), config)


def write_config(tmp_path: Path, kind: str = "null") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "# my settings\n[queue]\nmaxsize = 16 # keep me\nbatch_max = 1\n\n"
        f'[consumer]\nkind = "{kind}"\ndelay_ms = 1\n\n[x-extra]\nmine = true\n'
    )
    return path


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--memory-ceiling", "lots"), "--memory-ceiling 'lots' is not a size"),
        (("--target-buffer-ms", "0"), "--target-buffer-ms 0"),
        (("--chunks", "10"), "--chunks 10: must be an integer from 50"),
        (("--sessions", "0"), "--sessions 0"),
        (("--batch", "1"), "--batch 1"),
        (("--rate", "0"), "--rate 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, argv: tuple[str, ...], needle: str
) -> None:
    err, out = io.StringIO(), io.StringIO()
    code = run_calibrate(args(*argv), load_config(write_config(tmp_path)), stdout=out, stderr=err)
    assert code == 2
    assert needle in err.getvalue()
    assert err.getvalue().count("\n") == 1 and out.getvalue() == ""


def test_calibrate_json_and_save(tmp_path: Path) -> None:
    path = write_config(tmp_path, kind="sleep")
    config = load_config(path)
    out = io.StringIO()
    code = run_calibrate(
        args("--json", "--save", "--sessions", "4", "--memory-ceiling", "1M"),
        config,
        stdout=out,
        stderr=io.StringIO(),
    )
    assert code == 0
    data = json.loads(out.getvalue())
    rec = data["recommendation"]
    assert data["single"]["calls"] >= 50 and data["single"]["batch_size"] == 1
    assert rec["memory_ceiling"] == 2**20 and data["ceiling_source"] == "--memory-ceiling"
    assert 1 <= rec["maxsize"] <= 1024
    assert rec["sessions"] * rec["maxsize"] * rec["bytes_per_chunk"] <= 2**20
    saved = load_config(path)
    assert saved["queue.maxsize"] == rec["maxsize"] and saved["queue.batch_max"] == rec["batch_max"]
    text = path.read_text()
    assert "# my settings" in text and "# keep me" in text and "[x-extra]" in text
    assert (tmp_path / "config.toml.bak").exists()


def test_calibrate_save_to_a_new_file_does_not_claim_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config().with_values({"consumer.kind": "null"})  # no file yet
    out = io.StringIO()
    code = run_calibrate(
        args("--save", "--sessions", "2"), config, stdout=out, stderr=io.StringIO()
    )
    assert code == 0
    text = out.getvalue()
    note = "a new file: there was no previous one to keep"
    assert f"saved maxsize and batch_max to config.toml ({note})" in text
    assert ".bak" not in text and not (tmp_path / "config.toml.bak").exists()
    out = io.StringIO()
    code = run_calibrate(
        args("--save", "--json", "--sessions", "2"), load_config(), stdout=out,
        stderr=io.StringIO(),
    )  # fmt: skip
    data = json.loads(out.getvalue())
    assert (data["saved_to"], data["backup"]) == ("config.toml", "config.toml.bak")


def test_calibrate_save_leaves_a_file_changed_meanwhile_alone(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    config = load_config(path)
    path.write_text("[queue]\nmaxsize = 99 # written by someone else meanwhile\n")
    out, err = io.StringIO(), io.StringIO()
    code = run_calibrate(args("--save", "--sessions", "2"), config, stdout=out, stderr=err)
    assert code == 1 and out.getvalue() == ""
    assert err.getvalue() == (
        f"sluice calibrate: could not save: {path}: changed on disk since it was loaded "
        "(another program or an editor wrote it); not saved, nothing overwritten; run the "
        "command again to calibrate and save from the file as it is now\n"
    )
    assert path.read_text() == "[queue]\nmaxsize = 99 # written by someone else meanwhile\n"


def test_calibrate_text_report_without_save(tmp_path: Path) -> None:
    path = write_config(tmp_path, kind="sleep")
    before = path.read_text()
    out = io.StringIO()
    code = run_calibrate(
        args("--sessions", "2"), load_config(path), stdout=out, stderr=io.StringIO()
    )
    assert code == 0
    text = out.getvalue()
    assert "maxsize   =" in text and "batch_max =" in text and "ceil(500 ms /" in text
    assert path.read_text() == before


async def test_calibrate_runs_both_timings_and_recommends() -> None:
    consumer = Recording()
    result = await calibrate(
        consumer, sessions=3, memory_ceiling=30_000, rate=40.0, chunks=50, batch=16
    )
    assert consumer.batches[:51] == [1] * 51  # warm-up + 50 single-chunk calls
    assert consumer.batches[51:] == [16] * 9  # warm-up + 8 batched calls
    assert result.single.batch_size == 1 and result.batched.batch_size == 16
    rec = result.recommendation
    assert rec.sessions == 3 and rec.memory_ceiling == 30_000
    assert rec.buffer_bytes <= 30_000
    assert rec == recommend(
        result.single,
        sessions=3,
        memory_ceiling=30_000,
        batched=result.batched,
        rate=40.0,
    )


def test_container_ceiling_reserves_rss_only_with_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import sluice.engine.cgroup

    monkeypatch.setattr(sluice.engine.cgroup, "memory_limit", lambda: None)
    assert container_ceiling() == (None, 0)
    monkeypatch.setattr(sluice.engine.cgroup, "memory_limit", lambda: 2**30)
    limit, reserved = container_ceiling()
    assert limit == 2**30 and reserved > 0
