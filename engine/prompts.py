"""Prompts for headless runs and the plan of sessions built from them.

`--prompt TEXT` gives one prompt; `--prompts FILE` gives many: one per line, or JSONL (one
object with a string "prompt" per line) when the file ends in `.jsonl` or its first
non-blank line starts with `{`. Blank lines are skipped. `--backend a,b` runs the prompts on
each named backend at once, each behind its own limit.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from sluice.engine.backends.base import BackendError
from sluice.engine.backends.registry import parse_backend_list, require_credentials
from sluice.engine.config import KNOB_SPECS, Config

__all__ = ["PromptError", "add_prompt_arguments", "load_prompts", "plan_from_args", "plan_sessions"]

MAX_PROMPT_FILE = 64 * 1024 * 1024


class PromptError(ValueError):
    """Bad prompt input or backend choice; the one-line message is shown, exit code 2."""


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """`--backend`, `--prompt` and `--prompts`."""
    parser.add_argument(
        "--backend",
        metavar="NAMES",
        help="claude, ollama or demo, or a comma list for a mixed run (default: demo)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prompt", metavar="TEXT", help="one prompt for every session")
    group.add_argument(
        "--prompts", metavar="FILE", help='prompts, one per line or JSONL ({"prompt": ...})'
    )


def load_prompts(path: str | Path) -> list[str]:
    """The prompts in `path`; raise PromptError naming the file, line and problem."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PROMPT_FILE:
            raise PromptError(f"--prompts {path}: larger than 64 MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"--prompts {path}: no such file") from None
    except IsADirectoryError:
        raise PromptError(f"--prompts {path}: is a directory, expected a text file") from None
    except UnicodeDecodeError:
        raise PromptError(f"--prompts {path}: not UTF-8 text") from None
    except OSError as exc:
        raise PromptError(f"--prompts {path}: cannot read: {exc.strerror}") from None
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


def plan_from_args(args: argparse.Namespace, config: Config) -> list[tuple[str, str]]:
    """The planner of `sluice run --headless`: backends, prompts and session counts."""
    try:
        backends = parse_backend_list(getattr(args, "backend", None) or "demo")
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    prompt = getattr(args, "prompt", None)
    prompts_file = getattr(args, "prompts", None)
    prompts: list[str] | None = None
    if prompt is not None:
        if not prompt.strip():
            raise PromptError("--prompt: must be non-empty text")
        prompts = [prompt]
    elif prompts_file is not None:
        prompts = load_prompts(prompts_file)
    if getattr(args, "duration", None) is not None and backends != ["demo"]:
        raise PromptError("--duration: continuous runs use the demo backend only")
    sessions = getattr(args, "sessions", None)
    if sessions is not None and not KNOB_SPECS["sessions"].check(sessions):
        raise PromptError(f"--sessions {sessions}: {KNOB_SPECS['sessions'].describe()}")
    try:
        require_credentials(backends)
    except BackendError as exc:
        raise PromptError(str(exc)) from None
    return plan_sessions(backends, prompts, sessions, config.demo.sessions)
