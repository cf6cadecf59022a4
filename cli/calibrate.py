"""`sluice calibrate`: time the configured consumer and recommend maxsize and batch_max.

Runs at least 50 chunks one per call through the consumer `config.toml` names (and a shorter
run at a larger batch to see how the call cost grows with the batch), prints the timing and
the recommendation with its arithmetic, and with `--save` writes the two knobs to the config
file the safe way (temp file, fsync, `.bak`, `os.replace`; a file changed on disk since it
was loaded is left alone). Exit codes: 0 done, 1 the consumer or the save failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import TextIO

from sluice.cli.command import Command, CommandIO, ExitCode, UsageError
from sluice.engine import settings as S
from sluice.engine.config import Config, ConfigChanged, ConfigError
from sluice.engine.config_save import SaveResult, save_config
from sluice.engine.consumers import make_consumer
from sluice.engine.report import format_bytes
from sluice.engine.settings import SettingError
from sluice.engine.tuning import (
    BATCH_MAX,
    Calibration,
    ConsumerTiming,
    Recommendation,
    calibrate,
    container_ceiling,
    parse_size,
)

__all__ = ["COMMAND", "format_report"]

MIN_CHUNKS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sluice calibrate`."""
    parser.add_argument(
        "--target-buffer-ms",
        type=float,
        default=500.0,
        metavar="MS",
        help="how much consumer work a full buffer should hold (default 500)",
    )
    parser.add_argument(
        "--memory-ceiling",
        metavar="SIZE",
        help="memory all buffers together may use, like 512M or 2G (default: the container's "
        "cgroup limit minus this process's RSS, when a limit is set)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="sessions streaming at once, each holding a buffer (default: sum of [limits])",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=MIN_CHUNKS,
        metavar="N",
        help=f"chunks to send one per call (at least {MIN_CHUNKS}, the default)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=16,
        metavar="N",
        help="the larger batch timed to fit the call cost (default 16)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="TOKENS_S",
        help="the model's chunks per second per session (default: [demo] rate)",
    )
    parser.add_argument("--save", action="store_true", help="write the recommendation to config")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def _check(args: argparse.Namespace) -> int | None:
    """Validate the options; return the memory ceiling in bytes (or None)."""
    target = args.target_buffer_ms
    if not (0 < target <= 600_000):
        raise UsageError(f"--target-buffer-ms {target:g}: must be a number of ms in (0, 600000]")
    if args.sessions is not None and not (1 <= args.sessions <= 1_000_000):
        raise UsageError(f"--sessions {args.sessions}: must be an integer from 1 to 1000000")
    if not (MIN_CHUNKS <= args.chunks <= 100_000):
        raise UsageError(f"--chunks {args.chunks}: must be an integer from {MIN_CHUNKS} to 100000")
    if not (2 <= args.batch <= BATCH_MAX):
        raise UsageError(f"--batch {args.batch}: must be an integer from 2 to {BATCH_MAX}")
    if args.rate is not None:
        try:
            S.DEMO_RATE.coerce(args.rate)
        except SettingError as exc:
            raise UsageError(f"--rate {args.rate:g}: {exc}") from None
    if args.memory_ceiling is None:
        return None
    try:
        return parse_size(args.memory_ceiling)
    except ValueError as exc:
        raise UsageError(f"--memory-ceiling {exc}") from None


async def _calibrate(
    config: Config,
    args: argparse.Namespace,
    *,
    sessions: int,
    rate: float,
    ceiling: int | None,
    reserved: int,
    text_out: TextIO,
) -> Calibration:
    # The stdout consumer writes the calibration text to `text_out`, not into the report.
    consumer = make_consumer(
        config[S.CONSUMER_KIND],
        delay_ms=config[S.CONSUMER_DELAY_MS],
        path=config[S.CONSUMER_PATH],
        text_out=text_out,
    )
    try:
        return await calibrate(
            consumer,
            sessions=sessions,
            target_buffer_ms=args.target_buffer_ms,
            memory_ceiling=ceiling,
            reserved_bytes=reserved,
            rate=rate,
            chunks=args.chunks,
            batch=args.batch,
        )
    finally:
        closer = getattr(consumer, "aclose", None)
        if closer is not None:
            await closer()


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Carry out `sluice calibrate`; returns the exit code."""
    stdout, stderr = io.stdout, io.stderr
    ceiling = _check(args)
    sessions = (
        args.sessions
        if args.sessions is not None
        else sum(config[limit] for limit in S.BACKEND_LIMITS.values())
    )
    rate = args.rate if args.rate is not None else config[S.DEMO_RATE]
    reserved = 0
    source = "--memory-ceiling" if ceiling is not None else None
    if ceiling is None:
        ceiling, reserved = container_ceiling()
        if ceiling is not None:
            source = "cgroup memory limit"
    try:
        result = asyncio.run(
            _calibrate(
                config,
                args,
                sessions=sessions,
                rate=rate,
                ceiling=ceiling,
                reserved=reserved,
                text_out=stderr,
            )
        )
    except Exception as exc:
        stderr.write(f"sluice calibrate: the {config[S.CONSUMER_KIND]} consumer failed: {exc}\n")
        return ExitCode.FAILED
    single, batched, rec = result.single, result.batched, result.recommendation
    saved = None
    if args.save:
        try:
            saved = save_config(
                config.with_values({"queue.maxsize": rec.maxsize, "queue.batch_max": rec.batch_max})
            )
        except ConfigChanged as exc:
            stderr.write(
                f"sluice calibrate: could not save: {exc}; run the command again to calibrate "
                "and save from the file as it is now\n"
            )
            return ExitCode.FAILED
        except (ConfigError, OSError) as exc:
            stderr.write(f"sluice calibrate: could not save: {exc}\n")
            return ExitCode.FAILED
    if args.json:
        out = {
            "consumer": config[S.CONSUMER_KIND],
            "single": asdict(single),
            "batched": asdict(batched),
            "recommendation": asdict(rec),
            "ceiling_source": source,
            "saved_to": str(saved.path) if saved else None,
            "backup": str(saved.backup) if saved and saved.backup else None,
        }
        stdout.write(json.dumps(out) + "\n")
    else:
        stdout.write(format_report(config, single, batched, rec, source, saved) + "\n")
    stdout.flush()
    return ExitCode.OK


def format_report(
    config: Config,
    single: ConsumerTiming,
    batched: ConsumerTiming,
    rec: Recommendation,
    ceiling_source: str | None,
    saved: SaveResult | None,
) -> str:
    """The human-readable calibration report."""
    kind = config[S.CONSUMER_KIND]
    what = f"{kind} (delay_ms {config[S.CONSUMER_DELAY_MS]:g})" if kind == "sleep" else kind
    lines = [
        f"consumer: {what}",
        f"  {single.calls} calls of 1 chunk: mean {single.mean_ms:.3g} ms, "
        f"p99 {single.p99_ms:.3g} ms, max {single.max * 1000:.3g} ms",
        f"  {batched.calls} calls of {batched.batch_size} chunks: mean {batched.mean_ms:.3g} ms, "
        f"p99 {batched.p99_ms:.3g} ms",
        f"  chunk size: {single.bytes_per_chunk} bytes (text plus event metadata)",
        "",
    ]
    rule = (
        f"ceil({rec.target_buffer_ms:g} ms / {single.mean_ms:.3g} ms) = {rec.target_maxsize}"
        if rec.target_maxsize is not None
        else "consumer time not measurable"
    )
    lines.append(f"maxsize   = {rec.maxsize:<5}  {rule}" + ("  (clamped)" if rec.clamped else ""))
    keep = (
        f"; batches of {rec.keep_up_batch} keep up with {rec.rate:g} chunks/s"
        if rec.keep_up_batch is not None and rec.rate is not None
        else ""
    )
    lines.append(
        f"batch_max = {rec.batch_max:<5}  a call takes all that waits, up to maxsize{keep}"
    )
    memory = (
        f"memory: {rec.sessions} sessions at once (--sessions, else the sum of [limits]) x "
        f"{rec.maxsize} x {rec.bytes_per_chunk} B = "
        f"{format_bytes(rec.buffer_bytes)} of buffers"
    )
    if rec.memory_ceiling is not None:
        budget = rec.memory_ceiling - rec.reserved_bytes
        memory += f", ceiling {format_bytes(rec.memory_ceiling)} ({ceiling_source}"
        if rec.reserved_bytes:
            memory += f", {format_bytes(rec.reserved_bytes)} kept for this process's RSS"
        memory += f"): fits up to maxsize {rec.ceiling_maxsize} ({format_bytes(max(0, budget))})"
    else:
        memory += " (no memory ceiling: none given and no cgroup limit set)"
    lines.append(memory)
    lines.extend(f"note: {note}" for note in rec.notes)
    if saved is not None:
        lines.append(f"saved maxsize and batch_max to {saved.path} ({saved.backup_note})")
    else:
        lines.append("run with --save to write maxsize and batch_max to the config file")
    return "\n".join(lines)


COMMAND = Command(
    name="calibrate",
    help="time the configured consumer and recommend maxsize and batch_max (--save writes them)",
    add_arguments=add_arguments,
    run=run,
)
