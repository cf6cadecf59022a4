"""Probe backends: is each reachable, authorised, and does it have the model a run would use?
One verdict and one line per backend (what `sluice check` prints). A line never holds the API
key, at most that one is set, nor credentials inside a URL (a base URL's or a proxy's
`user:key@`).

Claude is asked for its model (`GET /v1/models/{model}`: authenticated, costs no tokens);
Ollama for its local models (`GET /api/tags`); the agent backend's CLI for its version, then
started until it answers `initialize` (no prompt, no tokens); the demo model is always ready.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from sluice.engine import settings as S
from sluice.engine.backends.base import BackendError, describe_cause
from sluice.engine.backends.registry import (
    AGENT_KEY_VARIABLES,
    API_KEY_VARIABLE,
    BadEnvironment,
    agent_credentials,
    agent_problem,
    build_backend,
    check_environment,
    claude_base_url,
)
from sluice.engine.config import Config
from sluice.engine.redact import redact

__all__ = ["CHECKS", "CheckResult", "check_backends"]

CHECK_TIMEOUT_S = 10.0
# Starting the Claude Code CLI is heavier than an HTTP probe: the bundled CLI took 20 s to
# answer `initialize` in a sandbox without network.
AGENT_CHECK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on one backend: ready or not, and the line shown for it."""

    name: str
    ok: bool
    detail: str

    @property
    def line(self) -> str:
        """`claude: ok: reachable, ...` or `ollama: FAILED: unreachable ...`, with any
        credentials inside a URL hidden."""
        return redact(f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.detail}")


def _scrub(text: str, secret: str) -> str:
    text = " ".join(text.split())
    return text.replace(secret, "[redacted]") if secret else text


async def check_claude(config: Config, environ: Mapping[str, str]) -> CheckResult:
    """Ask Claude's API for the configured model with the configured key."""
    import anthropic

    from sluice.engine.backends.claude import ClaudeBackend

    key = environ.get(API_KEY_VARIABLE, "").strip()
    model = config[S.CLAUDE_MODEL]
    base_url = claude_base_url(config, environ)
    if not key:
        where = base_url or "the default API"
        return CheckResult(
            "claude",
            False,
            f"not checked: {API_KEY_VARIABLE} is not set (model {model}, {where})",
        )
    quick = config.with_values(
        {"claude.timeout_s": min(config[S.CLAUDE_TIMEOUT_S], CHECK_TIMEOUT_S), "claude.retries": 0}
    )
    backend = cast(ClaudeBackend, build_backend("claude", quick, environ))
    where = f"at {backend.base_url}"
    try:
        found = await backend.client.models.retrieve(model)
    except anthropic.AuthenticationError as exc:
        reason = _scrub(str(getattr(exc, "api_message", None) or exc.message), key)
        detail = f"reachable, NOT authorised (HTTP {exc.status_code}: {reason}; key set) {where}"
        return CheckResult("claude", False, detail)
    except anthropic.PermissionDeniedError as exc:
        detail = f"reachable, key set but NOT permitted (HTTP {exc.status_code}) {where}"
        return CheckResult("claude", False, detail)
    except anthropic.NotFoundError:
        detail = f"reachable, authorised (key set), but model {model} NOT found {where}"
        return CheckResult("claude", False, detail)
    except anthropic.APIStatusError as exc:
        detail = f"reachable, but HTTP {exc.status_code} {where} (key set)"
        return CheckResult("claude", False, detail)
    except anthropic.APITimeoutError:
        detail = f"unreachable: no answer within {backend.timeout_s:g}s {where} (key set)"
        return CheckResult("claude", False, detail)
    except anthropic.APIConnectionError as exc:
        reason = _scrub(describe_cause(exc), key)
        return CheckResult("claude", False, f"unreachable {where}: {reason} (key set)")
    finally:
        await backend.aclose()
    detail = f"reachable, authorised (key set), model {found.id} {where}"
    return CheckResult("claude", True, detail)


async def check_ollama(config: Config, environ: Mapping[str, str]) -> CheckResult:
    """List the Ollama server's models and look for the configured one."""
    import httpx
    import ollama

    from sluice.engine.backends.ollama import OllamaBackend

    model = config[S.OLLAMA_MODEL]
    quick = config.with_values(
        {"ollama.timeout_s": min(config[S.OLLAMA_TIMEOUT_S], CHECK_TIMEOUT_S), "ollama.retries": 0}
    )
    backend = cast(OllamaBackend, build_backend("ollama", quick, environ))
    where = f"at {backend.host}"
    try:
        listing = await backend.client.list()
    except ollama.ResponseError as exc:
        if exc.status_code in (401, 403):
            detail = f"reachable, NOT authorised (HTTP {exc.status_code}) {where}"
        else:
            detail = f"reachable, but HTTP {exc.status_code}: {_scrub(str(exc.error), '')} {where}"
        return CheckResult("ollama", False, detail)
    except httpx.TimeoutException:
        detail = f"unreachable: no answer within {backend.timeout_s:g}s {where}"
        return CheckResult("ollama", False, detail)
    except httpx.TransportError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return CheckResult("ollama", False, f"unreachable {where}: {reason}")
    except ConnectionError:  # the library's "could not connect" (it drops the cause)
        detail = f"unreachable {where}: nothing answered (is `ollama serve` running?)"
        return CheckResult("ollama", False, detail)
    finally:
        await backend.aclose()
    names = {m.model for m in listing.models if m.model}
    wanted = model if ":" in model else f"{model}:latest"
    if model in names or wanted in names:
        return CheckResult("ollama", True, f"reachable, no key needed, model {model} {where}")
    detail = (
        f"reachable, but model {model} is NOT pulled {where} "
        f"(run `ollama pull {model}`; {len(names)} models present)"
    )
    return CheckResult("ollama", False, detail)


async def check_demo(config: Config, environ: Mapping[str, str]) -> CheckResult:
    """The demo model is built in: always ready."""
    return CheckResult("demo", True, "built in, simulated model sluice-demo")


async def check_agent(config: Config, environ: Mapping[str, str]) -> CheckResult:
    """The agent backend: the extra and the CLI there, the CLI's version, and whether it
    starts (answers the SDK's `initialize`); the key is only said to be set or not."""
    problem = agent_problem(config, environ)
    if problem is not None:
        return CheckResult("agent", False, problem)
    check_environment(["agent"], config, environ)  # a proxy variable the CLI would choke on
    from sluice.engine.backends.agent import AgentBackend

    credentials = agent_credentials(environ)
    backend = AgentBackend(
        credentials=credentials,
        model=config[S.AGENT_MODEL],
        cwd=config[S.AGENT_CWD].strip(),
        cli_path=config[S.AGENT_CLI_PATH].strip(),
    )
    timeout_s = min(config[S.AGENT_TIMEOUT_S], AGENT_CHECK_TIMEOUT_S)
    try:
        started = await backend.probe(timeout_s)
    except BackendError as exc:
        return CheckResult("agent", False, backend.scrub(str(exc)))
    if not credentials:
        names = " or ".join(AGENT_KEY_VARIABLES)
        return CheckResult("agent", False, f"{started}, but {names} is not set")
    return CheckResult("agent", True, f"{started}, key set")


CHECKS = {
    "claude": check_claude,
    "ollama": check_ollama,
    "demo": check_demo,
    "agent": check_agent,
}


async def check_backends(
    names: list[str], config: Config, environ: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Check the named backends concurrently; results in the order asked."""
    environ = os.environ if environ is None else environ
    return list(await asyncio.gather(*(_guarded(name, config, environ) for name in names)))


async def _guarded(name: str, config: Config, environ: Mapping[str, str]) -> CheckResult:
    """One check; an error it did not foresee (a proxy refusing in its own way, say) is that
    backend's FAILED line, not a traceback. A bad environment (BadEnvironment) is raised."""
    try:
        return await CHECKS[name](config, environ)
    except BadEnvironment:
        raise
    except Exception as exc:
        return CheckResult(name, False, f"check failed: {describe_cause(exc)}")
