"""The control API: a running engine served over HTTP for `sluice serve`, `sluice attach`,
Prometheus and your own tools (snapshot, knobs, save, cancel, SSE events, /metrics).

    async with serve_control(engine, bind="127.0.0.1:0") as server:
        print(server.url)

It never imports the UI; aiohttp serves it inside the engine's own event loop.
"""

from sluice.engine.control.bind import DEFAULT_BIND, TOKEN_ENV, Bind, BindError, parse_bind
from sluice.engine.control.events import ViewerStats
from sluice.engine.control.server import MAX_BODY, ControlServer, serve_control, start_control

__all__ = [
    "DEFAULT_BIND",
    "MAX_BODY",
    "TOKEN_ENV",
    "Bind",
    "BindError",
    "ControlServer",
    "ViewerStats",
    "parse_bind",
    "serve_control",
    "start_control",
]
