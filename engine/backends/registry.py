"""Build the configured backends from a Config, and close them when a run ends.

One place knows how a backend name becomes an object: `claude` and `ollama` here, `demo`
inside the Engine. A third backend slots in by adding a builder to `BUILDERS`. The SDKs are
imported only when their backend is built, so `sluice --help` stays quick.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from sluice.engine.backends.base import Backend, BackendError
from sluice.engine.config import Config

__all__ = [
    "BACKEND_NAMES",
    "BUILDERS",
    "MissingCredentials",
    "build_backend",
    "claude_base_url",
    "close_backends",
    "open_backends",
    "parse_backend_list",
    "require_credentials",
]

BACKEND_NAMES = ("claude", "ollama", "demo")
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


class MissingCredentials(BackendError):
    """A backend needs a secret from the environment that is not set."""


def require_credentials(names: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
    """Refuse early (before any session starts) when a chosen backend lacks its key."""
    environ = os.environ if environ is None else environ
    if "claude" in names and not environ.get(API_KEY_VARIABLE, "").strip():
        raise MissingCredentials(
            f"the claude backend needs {API_KEY_VARIABLE} set in the environment"
        )


def claude_base_url(config: Config, environ: Mapping[str, str]) -> str | None:
    """`[claude] base_url`, else ANTHROPIC_BASE_URL, else None (the SDK's default)."""
    return config.claude.base_url or environ.get("ANTHROPIC_BASE_URL", "").strip() or None


def _build_claude(config: Config, environ: Mapping[str, str]) -> Backend:
    from sluice.engine.backends.claude import ClaudeBackend

    require_credentials(["claude"], environ)
    cfg = config.claude
    return ClaudeBackend(
        api_key=environ[API_KEY_VARIABLE].strip(),
        model=cfg.model,
        max_tokens=cfg.max_tokens,
        system=cfg.system,
        base_url=claude_base_url(config, environ),
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
    )


def _build_ollama(config: Config, environ: Mapping[str, str]) -> Backend:
    from sluice.engine.backends.ollama import OllamaBackend, resolve_host

    cfg = config.ollama
    return OllamaBackend(
        host=resolve_host(cfg.host, environ),
        model=cfg.model,
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
    )


# Backend name -> builder. `demo` is absent: the Engine builds its own demo model.
BUILDERS: dict[str, Callable[[Config, Mapping[str, str]], Backend]] = {
    "claude": _build_claude,
    "ollama": _build_ollama,
}


def parse_backend_list(text: str) -> list[str]:
    """`claude,ollama` -> ['claude', 'ollama'], refusing unknown or repeated names."""
    names = [part.strip() for part in text.split(",")]
    allowed = ", ".join(BACKEND_NAMES)
    if not text.strip() or any(not name for name in names):
        raise ValueError(f"--backend {text!r}: give one or more of {allowed}, comma-separated")
    for name in names:
        if name not in BACKEND_NAMES:
            raise ValueError(f"--backend {name!r}: unknown backend; allowed: {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"--backend {text!r}: a backend is named twice")
    return names


def build_backend(name: str, config: Config, environ: Mapping[str, str] | None = None) -> Backend:
    """One real backend, configured from `config` and the environment."""
    environ = os.environ if environ is None else environ
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise KeyError(f"no backend builder for {name!r}; known: {', '.join(BUILDERS)}") from None
    return builder(config, environ)


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
