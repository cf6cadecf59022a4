"""[cluster] resolved: the Redis URL (config or SLUICE_REDIS_URL), the cluster and node names,
the shared backends and the lease. Standalone (no URL) resolves to None.

Importing this module does not import the Redis client: a standalone engine never loads it.
The URL may carry credentials (only from the environment: the config file refuses them);
`ClusterOptions.shown_url` is the one form that may be printed, logged or shown.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from sluice.engine import settings as S
from sluice.engine.config import Config, ConfigError
from sluice.engine.redact import redact_url
from sluice.engine.settings import url_problem

__all__ = [
    "REDIS_URL_ENV",
    "ClusterConfigError",
    "ClusterOptions",
    "cluster_options",
    "viewer_options",
]

REDIS_URL_ENV = "SLUICE_REDIS_URL"
REDIS_SCHEMES = ("redis", "rediss")
# Names become part of Redis keys and channels: no braces (they would break the hash tag
# that keeps one cluster's keys in one Redis Cluster slot), no `|` (it ends a node id inside
# a ticket), no spaces or control characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")


class ClusterConfigError(ConfigError):
    """A [cluster] value or SLUICE_REDIS_URL that cannot be used (exit 2, one line)."""


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """What a node needs to join a cluster. `url` may hold a password: never show it; use
    `shown_url`."""

    url: str = field(repr=False)
    name: str
    node: str
    shared: tuple[str, ...]
    lease_s: float

    @property
    def shown_url(self) -> str:
        """The URL with any credentials hidden (`redis://***@host:6379/0`)."""
        return redact_url(self.url)


def default_node_name() -> str:
    """The host name and the process id, `web-3:4242`, made safe for a key."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{host}:{os.getpid()}"


def cluster_options(
    config: Config, environ: Mapping[str, str] | None = None
) -> ClusterOptions | None:
    """The cluster `config` (and SLUICE_REDIS_URL when `[cluster] redis_url` is empty) asks
    for, or None when standalone. ClusterConfigError names what is wrong, credentials hidden."""
    env = os.environ if environ is None else environ
    url = config[S.CLUSTER_REDIS_URL]
    if not url:
        url = env.get(REDIS_URL_ENV, "").strip()
        if not url:
            return None
        problem = url_problem(url, REDIS_SCHEMES)
        if problem is not None:
            raise ClusterConfigError(
                f"{REDIS_URL_ENV}={redact_url(url)!r}: {problem}; must be a URL like "
                "redis://127.0.0.1:6379/0 (redis or rediss; a password may go in it here)"
            )
    where = f"{config.path}: " if config.path is not None else ""
    name = config[S.CLUSTER_NAME]
    if not _NAME.fullmatch(name):
        raise ClusterConfigError(
            f"{where}[cluster] name = {name!r}: must be 1-100 letters, digits or . _ : @ - "
            "(starting with a letter or digit)"
        )
    node = config[S.CLUSTER_NODE] or default_node_name()
    if not _NAME.fullmatch(node):
        raise ClusterConfigError(
            f"{where}[cluster] node = {node!r}: must be 1-100 letters, digits or . _ : @ - "
            "(starting with a letter or digit), or empty for host:pid"
        )
    shared: tuple[str, ...] = config[S.CLUSTER_SHARED]
    return ClusterOptions(
        url=url,
        name=name,
        node=node,
        shared=shared,
        lease_s=float(config[S.CLUSTER_LEASE_S]),
    )


def viewer_options(url: str, name: str, lease_s: float = 10.0) -> ClusterOptions:
    """Options to read the cluster `name` at `url` without joining it (what `sluice attach
    redis://...` needs for `list_nodes`); ClusterConfigError names a bad URL or name, with
    credentials hidden."""
    problem = url_problem(url, REDIS_SCHEMES)
    if problem is not None:
        raise ClusterConfigError(
            f"{redact_url(url)!r}: {problem}; must be a URL like redis://127.0.0.1:6379/0"
        )
    if not _NAME.fullmatch(name):
        raise ClusterConfigError(
            f"cluster name {name!r}: must be 1-100 letters, digits or . _ : @ - "
            "(starting with a letter or digit)"
        )
    return ClusterOptions(url=url, name=name, node="viewer", shared=(), lease_s=lease_s)
