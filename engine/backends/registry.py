"""Build the configured backends from a Config, and close them when a run ends.

One place knows how a backend name becomes an object: `claude`, `ollama` and `agent` here,
`demo` inside the Engine. Another backend slots in by adding a builder to `BUILDERS`. The SDKs
are imported only when their backend is built, so `sluice --help` stays quick and the base
install never needs the agent extra (`agent_problem` says what is missing, with the fix).
URLs read from the environment (ANTHROPIC_BASE_URL, OLLAMA_HOST) are checked here, like the
config's at load.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path

from sluice.engine import settings as S
from sluice.engine.backends.base import Backend, BackendError, describe_error
from sluice.engine.config import Config
from sluice.engine.redact import redact_url
from sluice.engine.settings import BACKENDS, URL_RULE, url_problem

__all__ = [
    "AGENT_EXTRA",
    "BUILDERS",
    "BadEnvironment",
    "MissingCredentials",
    "UnknownBackend",
    "agent_credentials",
    "agent_problem",
    "build_backend",
    "check_environment",
    "claude_base_url",
    "close_backends",
    "open_backends",
    "parse_backend_list",
    "require_credentials",
]

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"
# What the agent backend's CLI accepts as credentials (an API key, or a Claude Code token).
AGENT_KEY_VARIABLES = (API_KEY_VARIABLE, "CLAUDE_CODE_OAUTH_TOKEN")
AGENT_EXTRA = "pip install 'sluice[agent]'"
# Proxy variables both SDKs' HTTP client (httpx) honours, and the schemes it can use.
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
)
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


class MissingCredentials(BackendError):
    """A backend needs a secret from the environment that is not set."""


class BadEnvironment(BackendError):
    """An environment variable holds a value a backend cannot use (exit 2 on the command
    line); the message names the variable and shows the value with its credentials hidden."""


def require_credentials(names: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
    """Refuse early (before any session starts) when a chosen backend lacks its key."""
    environ = os.environ if environ is None else environ
    names = set(names)
    if "claude" in names and not environ.get(API_KEY_VARIABLE, "").strip():
        raise MissingCredentials(
            f"the claude backend needs {API_KEY_VARIABLE} set in the environment"
        )
    if "agent" in names and not agent_credentials(environ):
        raise MissingCredentials(
            f"the agent backend needs {' or '.join(AGENT_KEY_VARIABLES)} set in the environment"
        )


def agent_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The credentials the agent's CLI gets from `environ` (empty when none is set)."""
    found = {name: environ.get(name, "").strip() for name in AGENT_KEY_VARIABLES}
    return {name: value for name, value in found.items() if value}


def agent_problem(config: Config, environ: Mapping[str, str]) -> str | None:
    """Why the agent backend cannot start here (the extra, the CLI or its working folder
    missing), in one line naming the fix; None when it can."""
    if importlib.util.find_spec("claude_agent_sdk") is None:
        return f"the agent backend needs the Claude Agent SDK: {AGENT_EXTRA}"
    cli = config[S.AGENT_CLI_PATH].strip()
    if cli:
        path = Path(cli).expanduser()
        if not path.is_file():
            return f"[agent] cli_path = {cli!r}: no such file; give the Claude Code CLI's path"
        if not os.access(path, os.X_OK):
            return f"[agent] cli_path = {cli!r}: not executable"
    elif _bundled_cli() is None and shutil.which("claude", path=environ.get("PATH")) is None:
        return (
            "the agent backend found no Claude Code CLI (none bundled with the SDK, no "
            "`claude` on PATH): reinstall with " + AGENT_EXTRA + " or set [agent] cli_path"
        )
    cwd = config[S.AGENT_CWD].strip()
    if cwd and not Path(cwd).expanduser().is_dir():
        return f"[agent] cwd = {cwd!r}: no such folder"
    return None


def _bundled_cli() -> Path | None:
    """The CLI the SDK's wheel bundles, if there is one."""
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def _environ_url(variable: str, environ: Mapping[str, str]) -> str | None:
    """The URL in `variable`, None when unset or blank; BadEnvironment when unusable."""
    value = environ.get(variable, "").strip()
    if not value:
        return None
    problem = url_problem(value)
    if problem is not None:
        raise BadEnvironment(f"{variable}={redact_url(value)!r}: {problem}; {URL_RULE}")
    return value


def _check_proxies(environ: Mapping[str, str]) -> None:
    """Refuse a proxy variable the HTTP client would choke on (with a traceback) later."""
    for variable in PROXY_VARIABLES:
        value = environ.get(variable, "").strip()
        if not value:
            continue
        shown = f"{variable}={redact_url(value)!r}"
        problem = url_problem(value, PROXY_SCHEMES)
        if problem is not None:
            raise BadEnvironment(
                f"{shown}: {problem}; must be a proxy URL like http://proxy:3128 "
                f"({', '.join(PROXY_SCHEMES)}; a host, a port 1-65535)"
            )
        if value.lower().startswith("socks") and not importlib.util.find_spec("socksio"):
            raise BadEnvironment(
                f"{shown}: a SOCKS proxy needs the socksio package (pip install 'httpx[socks]')"
            )


def claude_base_url(config: Config, environ: Mapping[str, str]) -> str | None:
    """`[claude] base_url`, else ANTHROPIC_BASE_URL, else None (the SDK's default)."""
    return config[S.CLAUDE_BASE_URL] or _environ_url("ANTHROPIC_BASE_URL", environ)


def check_environment(
    names: Iterable[str], config: Config, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse early (before any session starts) a URL from the environment that a chosen
    backend would use and could not."""
    environ = os.environ if environ is None else environ
    names = set(names)
    if names & set(BUILDERS):
        _check_proxies(environ)
    if "claude" in names:
        claude_base_url(config, environ)
    if "ollama" in names and not config[S.OLLAMA_HOST].strip():
        _environ_url("OLLAMA_HOST", environ)
    if "agent" in names and (problem := agent_problem(config, environ)) is not None:
        raise BadEnvironment(problem)


def _build_claude(config: Config, environ: Mapping[str, str]) -> Backend:
    from sluice.engine.backends.claude import ClaudeBackend

    require_credentials(["claude"], environ)
    return ClaudeBackend(
        api_key=environ[API_KEY_VARIABLE].strip(),
        model=config[S.CLAUDE_MODEL],
        max_tokens=config[S.CLAUDE_MAX_TOKENS],
        system=config[S.CLAUDE_SYSTEM],
        base_url=claude_base_url(config, environ),
        timeout_s=config[S.CLAUDE_TIMEOUT_S],
        retries=config[S.CLAUDE_RETRIES],
    )


def _build_ollama(config: Config, environ: Mapping[str, str]) -> Backend:
    from sluice.engine.backends.ollama import OllamaBackend, resolve_host

    return OllamaBackend(
        host=resolve_host(config[S.OLLAMA_HOST], environ),
        model=config[S.OLLAMA_MODEL],
        timeout_s=config[S.OLLAMA_TIMEOUT_S],
        retries=config[S.OLLAMA_RETRIES],
    )


def _build_agent(config: Config, environ: Mapping[str, str]) -> Backend:
    from sluice.engine.backends.agent import AgentBackend

    require_credentials(["agent"], environ)
    cli = config[S.AGENT_CLI_PATH].strip()
    cwd = config[S.AGENT_CWD].strip()
    return AgentBackend(
        credentials=agent_credentials(environ),
        model=config[S.AGENT_MODEL],
        max_turns=config[S.AGENT_MAX_TURNS],
        allowed_tools=config[S.AGENT_ALLOWED_TOOLS],
        permission_mode=config[S.AGENT_PERMISSION_MODE],
        cwd=str(Path(cwd).expanduser()) if cwd else "",
        system=config[S.AGENT_SYSTEM],
        cli_path=str(Path(cli).expanduser()) if cli else "",
        timeout_s=config[S.AGENT_TIMEOUT_S],
    )


# Backend name -> builder. `demo` is absent: the Engine builds its own demo model.
BUILDERS: dict[str, Callable[[Config, Mapping[str, str]], Backend]] = {
    "claude": _build_claude,
    "ollama": _build_ollama,
    "agent": _build_agent,
}


def parse_backend_list(text: str) -> list[str]:
    """`claude,ollama` -> ['claude', 'ollama'], refusing unknown or repeated names."""
    names = [part.strip() for part in text.split(",")]
    allowed = ", ".join(BACKENDS)
    if not text.strip() or any(not name for name in names):
        raise ValueError(f"--backend {text!r}: give one or more of {allowed}, comma-separated")
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"--backend {name!r}: unknown backend; allowed: {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"--backend {text!r}: a backend is named twice")
    return names


class UnknownBackend(ValueError):
    """A backend name nothing can build; the message names the known ones."""


def build_backend(name: str, config: Config, environ: Mapping[str, str] | None = None) -> Backend:
    """One real backend, configured from `config` and the environment. A client the
    environment makes impossible (a proxy variable with an unknown scheme, a SOCKS proxy
    without its package) is a BadEnvironment, not a crash."""
    environ = os.environ if environ is None else environ
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise UnknownBackend(f"no backend named {name!r}; known: {', '.join(BUILDERS)}") from None
    check_environment([name], config, environ)
    try:
        return builder(config, environ)
    except (ImportError, ValueError) as exc:
        raise BadEnvironment(f"cannot set up the {name} backend: {describe_error(exc)}") from None


async def close_backends(backends: Iterable[Backend]) -> None:
    """Close every backend that holds a client; errors while closing are not the user's."""
    for backend in backends:
        closer = getattr(backend, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


@contextlib.asynccontextmanager
async def open_backends(
    config: Config, names: Iterable[str], environ: Mapping[str, str] | None = None
) -> AsyncIterator[dict[str, Backend]]:
    """The named real backends (demo is skipped), closed on every path when the block ends."""
    backends: dict[str, Backend] = {}
    try:
        for name in names:
            if name in BUILDERS and name not in backends:
                backends[name] = build_backend(name, config, environ)
        yield backends
    finally:
        await close_backends(backends.values())
