"""`sluice attach URL [URL ...]`: the app on engines served by `sluice serve` (or by
`serve_control` in your own service), one or many.

The same app as `sluice`, reading each node's event stream instead of running an engine:
knob changes go to every node (or the one `a` picks), `s` saves on each node's side, `c`
cancels on the session's node; a node that goes away is shown disconnected and retried
until it is back. The bearer token comes from SLUICE_TOKEN. Quitting leaves the served
engines running as they are. A bad URL is one line and exit 2.
"""

from __future__ import annotations

import argparse
import functools
import sys

from sluice.cli.app import run_app
from sluice.cli.command import Command, CommandIO, UsageError
from sluice.engine.config import Config
from sluice.engine.control.bind import TOKEN_ENV, token_from_env

__all__ = ["COMMAND"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One or more node URLs."""
    parser.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        help="a served engine, as `sluice serve` prints it (http://127.0.0.1:8321); "
        f"the bearer token comes from {TOKEN_ENV}",
    )


def run(args: argparse.Namespace, config: Config, io: CommandIO) -> int:
    """Check every URL, then open the app on them."""
    from sluice.engine.control.client import ControlClient

    client = functools.partial(ControlClient, token=token_from_env(io.environ))
    for url in args.urls:
        try:
            client(url)  # checks it (and the token's use) without connecting
        except ValueError as exc:
            raise UsageError(f"URL {exc}") from None
    if not (sys.stdin.isatty() and io.stdout.isatty()):
        raise UsageError("the app needs a terminal")
    from sluice.tui.app import SluiceApp
    from sluice.tui.link import RemoteLink

    app = SluiceApp(config=config, link=RemoteLink(args.urls, client=client), relax_gc=True)
    return run_app(app)


COMMAND = Command(
    name="attach",
    help="open the app on one or more served engines (sluice serve) by URL",
    add_arguments=add_arguments,
    run=run,
)
