"""Prompts for headless runs and the plan of sessions built from them.

A prompts file holds one prompt per line, or JSONL (one object with a string "prompt" per
line) when the file ends in `.jsonl` or its first non-blank line starts with `{`. Blank lines
are skipped; the path `-` reads standard input. Errors name the file the way `sluice run`'s
`--prompts` option does. A plan runs the prompts on each named backend at once, each behind
its own limit (the options themselves are read in cli/prompts.py).

Reading is bounded whatever the file is: at most MAX_PROMPT_BYTES (16 MiB) are read, and a
longer input (a huge file, `/dev/zero`) is refused. A FIFO, a pipe, a terminal or a device is
read the same way, and given up on when no data arrives for READ_IDLE_S seconds (a FIFO that
no program ever opens for writing would otherwise hang the run); directories and sockets are
refused.
"""

from __future__ import annotations

import json
import os
import select
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PromptError", "load_prompts", "plan_sessions"]

MAX_PROMPT_BYTES = 16 * 1024 * 1024
READ_IDLE_S = 30.0  # a pipe or FIFO silent this long is given up on
_READ_CHUNK = 1024 * 1024


class PromptError(ValueError):
    """Bad prompt input or a plan that cannot run; one line naming the file or option."""


def load_prompts(path: str | Path) -> list[str]:
    """The prompts in `path` (`-`: standard input); raise PromptError naming the file, line
    and problem."""
    path = Path(path)
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PromptError(f"--prompts {path}: not UTF-8 text") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise PromptError(f"--prompts {path}: no prompts (the file is empty)")
    jsonl = path.suffix == ".jsonl" or lines[0][1].startswith("{")
    if not jsonl:
        return [line for _, line in lines]
    prompts = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(f"--prompts {path}:{number}: not valid JSON: {exc.msg}") from None
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError(
                f"--prompts {path}:{number}: each line must be an object with a non-empty "
                'string "prompt"'
            )
        prompts.append(prompt)
    return prompts


def _read_bounded(path: Path) -> bytes:
    """The bytes of `path`, at most MAX_PROMPT_BYTES, without hanging on a silent pipe."""
    if str(path) == "-":
        return _read_fd(sys.stdin.fileno(), path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PromptError(f"--prompts {path}: no such file") from None
    except OSError as exc:
        raise PromptError(f"--prompts {path}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PromptError(f"--prompts {path}: is a directory, expected a text file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            raise PromptError(f"--prompts {path}: not a regular file, FIFO or device")
        os.set_blocking(fd, True)  # poll() below decides when a read may wait
        return _read_fd(fd, path)
    finally:
        os.close(fd)


def _read_fd(fd: int, path: Path) -> bytes:
    """Read `fd` to its end, refusing more than MAX_PROMPT_BYTES or READ_IDLE_S of silence."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    parts: list[bytes] = []
    size = 0
    while True:
        deadline = time.monotonic() + READ_IDLE_S
        # Wait for data or the writer's end (a FIFO nobody opened reports neither).
        while not poller.poll(max(0, round((deadline - time.monotonic()) * 1000))):
            if time.monotonic() >= deadline:
                raise PromptError(
                    f"--prompts {path}: no data for {READ_IDLE_S:g} s (a pipe or FIFO with "
                    "no writer?)"
                )
        try:
            part = os.read(fd, min(_READ_CHUNK, MAX_PROMPT_BYTES + 1 - size))
        except OSError as exc:
            raise PromptError(f"--prompts {path}: cannot read: {exc.strerror}") from None
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
        if size > MAX_PROMPT_BYTES:
            mib, rest = divmod(MAX_PROMPT_BYTES, 1024 * 1024)
            limit = f"{MAX_PROMPT_BYTES} bytes" if rest else f"{mib} MiB"
            raise PromptError(f"--prompts {path}: larger than {limit}; give fewer prompts")


def plan_sessions(
    backends: Sequence[str], prompts: Sequence[str] | None, sessions: int | None, demo_default: int
) -> list[tuple[str, str]]:
    """(prompt, backend) pairs: `sessions` per backend (default: one per prompt, or the
    demo's configured count), prompts reused in turn, backends interleaved."""
    if prompts is None:
        real = [b for b in backends if b != "demo"]
        if real:
            raise PromptError(
                f"--backend {','.join(real)}: give the prompts with --prompt TEXT or --prompts FILE"
            )
    if sessions is not None:
        count = sessions
    elif prompts is not None:
        count = len(prompts)
    else:
        count = demo_default
    plan = []
    for i in range(count):
        for backend in backends:
            if prompts is None:
                plan.append((f"demo prompt {i + 1}", backend))
            else:
                plan.append((prompts[i % len(prompts)], backend))
    return plan
