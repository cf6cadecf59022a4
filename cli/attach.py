"""`sluice attach URL [URL ...]`: the app on engines served by `sluice serve` (or by
`serve_control` in your own service), one or many; `sluice attach redis://HOST:PORT[/DB]`:
on every served node of a cluster, found in its Redis registry.

The same app as `sluice`, reading each node's event stream instead of running an engine:
knob changes go to every node (or the one `a` picks), `s` saves on each node's side, `c`
cancels on the session's node; a node that goes away is shown disconnected and retried
until it is back. The bearer token comes from SLUICE_TOKEN. Quitting leaves the served
engines running as they are. A bad URL is one line and exit 2.

Through a registry the nodes follow the cluster (`[cluster] name` of the config in use, or
`--cluster NAME`): newcomers are attached, nodes whose card expired dropped. Node URLs and a
redis:// URL are not mixed (one line, exit 2). A Redis password comes from SLUICE_REDIS_URL
(used when it names the same host and port) or from the URL given; it is never shown.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from sluice.cli.app import run_app
from sluice.cli.command import Command, CommandIO, UsageError
from sluice.engine import settings as S
from sluice.engine.cluster.options import (
    REDIS_SCHEMES,
    REDIS_URL_ENV,
    ClusterConfigError,
    ClusterOptions,
    viewer_options,
)
from sluice.engine.config import Config
from sluice.engine.control.bind import TOKEN_ENV, token_from_env
from sluice.engine.redact import redact_url

__all__ = ["COMMAND"]

# Timeouts of the registry's connection (connect(): half the lease, 1-5 s): a viewer never
# waits long on an unreachable Redis.
VIEWER_LEASE_S = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One or more node URLs, or one cluster's Redis URL."""
    parser.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        help="a served engine, as `sluice serve` prints it (http://127.0.0.1:8321), or one "
        "cluster's Redis (redis://127.0.0.1:6379/0: every served node of the cluster); "
        f"the bearer token comes from {TOKEN_ENV}, a Redis password from {REDIS_URL_ENV}",
    )
    parser.add_argument(
        "--cluster",
        metavar="NAME",
        help="with a redis:// URL: the cluster to attach to (default: [cluster] name of the "
        "config in use)",
    )


def _is_redis(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in REDIS_SCHEMES


def _db_problem(url: str) -> str | None:
    """Why the path or query of a Redis URL is not a database number, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # viewer_options names it
    db = parts.path.strip("/")
    if parts.query or parts.fragment or (db and not db.isdigit()):
        return "after the port only /DB may follow (a database number)"
    return None


def _with_env_password(url: str, environ: Mapping[str, str]) -> str:
    """`url`, with the credentials of SLUICE_REDIS_URL when that names the same scheme,
    host and port and `url` carries none (so a password need not be typed)."""
    env = environ.get(REDIS_URL_ENV, "").strip()
    try:
        given, other = urlsplit(url), urlsplit(env)
        same = (given.scheme.lower(), given.hostname, given.port or 6379) == (
            other.scheme.lower(),
            other.hostname,
            other.port or 6379,
        )
    except ValueError:
        return url
    if not env or "@" in given.netloc or "@" not in other.netloc or not same:
        return url
    userinfo = other.netloc.rpartition("@")[0]
    return urlunsplit(given._replace(netloc=f"{userinfo}@{given.netloc}"))


def cluster_to_watch(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> ClusterOptions | None:
    """The registry `args` name (None for node URLs); UsageError for a mix, a bad URL or a
    bad name (credentials hidden)."""
    redis_urls = [u for u in args.urls if _is_redis(u)]
    if not redis_urls:
        if args.cluster is not None:
            raise UsageError("--cluster goes with a redis:// URL (the cluster's registry)")
        return None
    if len(args.urls) > 1:
        raise UsageError(
            "give node URLs (http://...) or one cluster's redis:// URL, not both or several "
            "redis:// URLs"
        )
    url = redis_urls[0]
    problem = _db_problem(url)
    if problem is not None:
        raise UsageError(f"URL {redact_url(url)!r}: {problem}, like redis://127.0.0.1:6379/0")
    name = args.cluster if args.cluster is not None else config[S.CLUSTER_NAME]
    try:
        return viewer_options(_with_env_password(url, environ), name, VIEWER_LEASE_S)
    except ClusterConfigError as exc:
        raise UsageError(f"{'URL ' if 'cluster name' not in str(exc) else ''}{exc}") from None


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Check every URL (or the registry's), then open the app on them."""
    from sluice.engine.control.client import ControlClient

    cluster = cluster_to_watch(args, config, io.environ)
    client = functools.partial(ControlClient, token=token_from_env(io.environ))
    for url in args.urls if cluster is None else ():
        try:
            client(url)  # checks it (and the token's use) without connecting
        except ValueError as exc:
            raise UsageError(f"URL {exc}") from None
    if not (sys.stdin.isatty() and io.stdout.isatty()):
        raise UsageError("the app needs a terminal")
    from sluice.tui.app import SluiceApp
    from sluice.tui.link import RemoteLink

    if cluster is None:
        link = RemoteLink(args.urls, client=client)
    else:
        from sluice.tui.registry_link import RegistryLink

        link = RegistryLink(cluster, client=client)
    app = SluiceApp(config=config, link=link, relax_gc=True)
    return run_app(app)


COMMAND = Command(
    name="attach",
    help="open the app on one or more served engines (sluice serve) by URL, or on every "
    "node of a cluster (redis://...)",
    add_arguments=add_arguments,
    run=run,
)
