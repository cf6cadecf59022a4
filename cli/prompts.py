"""`sluice run`'s `--backend`, `--prompt` and `--prompts`, and the session plan made from them.

`--prompt TEXT` gives one prompt; `--prompts FILE` gives many (read by
`engine/prompts.load_prompts`: bounded, one per line or JSONL, `-` for standard input).
`--backend a,b` runs them on each named backend at once, each behind its own limit.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from sluice.cli.command import UsageError, usage_errors
from sluice.engine import settings as S
from sluice.engine.backends.base import BackendError
from sluice.engine.backends.registry import (
    check_environment,
    parse_backend_list,
    require_credentials,
)
from sluice.engine.config import Config
from sluice.engine.prompts import PromptError, load_prompts, plan_sessions

__all__ = ["add_prompt_arguments", "plan_from_args"]


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """`--backend`, `--prompt` and `--prompts`."""
    parser.add_argument(
        "--backend",
        metavar="NAMES",
        help=f"{', '.join(S.BACKENDS[:-1])} or {S.BACKENDS[-1]}, or a comma list for a mixed "
        "run (default: demo)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prompt", metavar="TEXT", help="one prompt for every session")
    group.add_argument(
        "--prompts",
        metavar="FILE",
        help='prompts, one per line or JSONL ({"prompt": ...}); - reads standard input',
    )


def plan_from_args(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The (prompt, backend) pairs `sluice run` starts, from its options (`--sessions` and
    `--duration` already checked); UsageError names what cannot run and why, before anything
    starts: a bad backend name, prompts missing or unreadable, a key not set, a bad URL in
    `environ`."""
    with usage_errors(ValueError):
        backends = parse_backend_list(args.backend or "demo")
    with usage_errors(PromptError, BackendError):
        prompts: list[str] | None = None
        if args.prompt is not None:
            if not args.prompt.strip():
                raise UsageError("--prompt: must be non-empty text")
            prompts = [args.prompt]
        elif args.prompts is not None:
            prompts = load_prompts(args.prompts)
        if args.duration is not None and backends != ["demo"]:
            raise UsageError("--duration: continuous runs use the demo backend only")
        require_credentials(backends, environ)
        check_environment(backends, config, environ)
        return plan_sessions(backends, prompts, args.sessions, config[S.DEMO_SESSIONS])
