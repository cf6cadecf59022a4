"""ControlServer: the control API on a running engine, over aiohttp, in the engine's loop.

    async with serve_control(engine, bind="127.0.0.1:0", config_path="config.toml") as server:
        print(server.url)

Endpoints (docs/json.md, "Control API"): GET /v1/snapshot, GET and PATCH /v1/knobs,
POST /v1/save, POST /v1/sessions/{id}/cancel, GET /v1/events (SSE), GET /metrics. Only
knobs, saves and cancels change anything. Operator events (start, knob changes and who made
them, saves, cancels, failed sessions, stop) are logged one line each on the
`sluice.control` logger; the token never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sluice.engine.config import ConfigChanged, ConfigError, FileStamp
from sluice.engine.config_save import save_config
from sluice.engine.control.bind import (
    DEFAULT_BIND,
    Bind,
    check_exposure,
    is_loopback_host,
    parse_bind,
    token_from_env,
    token_matches,
)
from sluice.engine.control.events import RateError, Viewer, ViewerStats, parse_rates
from sluice.engine.control.metrics import CONTENT_TYPE, MetricsRenderer
from sluice.engine.control.wire import (
    RowCache,
    knobs_document,
    node_name,
    one_line,
    render_snapshot,
)
from sluice.engine.engine import Engine, KnobError
from sluice.engine.session import Session
from sluice.engine.tasks import cancel_and_wait

__all__ = ["MAX_BODY", "ControlServer", "serve_control", "start_control"]

log = logging.getLogger("sluice.control")
# aiohttp's own protocol log (malformed requests, a client gone mid-request): never a
# traceback a client can make as long as it likes, only one short DEBUG line.
_http_log = logging.getLogger("sluice.control.http")


class _Quiet(logging.Filter):
    """Turns aiohttp's protocol-level records into one-line DEBUG records."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text = f"{text}: {type(error).__name__}: {error}"
        record.msg, record.args = one_line(text, 200), ()
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_http_log.addFilter(_Quiet())

MAX_BODY = 64 * 1024  # bytes a request body may have (413 above)
SHUTDOWN_GRACE = 2.0  # seconds in-flight requests get when the server stops
_FROM_ENV: Any = object()  # `token=` default: read SLUICE_TOKEN
_ENDPOINTS = (
    "GET /v1/snapshot, GET|PATCH /v1/knobs, POST /v1/save, "
    "POST /v1/sessions/{id}/cancel, GET /v1/events, GET /metrics"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    """A request answered with an error status and one line (the JSON `error`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": one_line(message)}, status=status, headers=headers)


def _peer(request: web.Request) -> str:
    """`host:port` of the client (IPv6 in brackets), for the log."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return "unknown peer"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class ControlServer:
    """Serves `engine`'s control API on `bind` (HOST:PORT, port 0 = a free one).

    `config_path` is where POST /v1/save writes (default: the file the engine's config was
    loaded from; none: saving answers 409). `token` defaults to SLUICE_TOKEN from the
    environment; with one set every request needs `Authorization: Bearer <token>`. A
    non-loopback `bind` without a token raises BindError. `node` names this engine in
    snapshots and metrics (default `host:pid`). Use `async with`, or `await start()` and
    `await stop()`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        bind: str | Bind = DEFAULT_BIND,
        config_path: str | Path | None = None,
        token: str | None = _FROM_ENV,
        node: str | None = None,
    ) -> None:
        self.engine = engine
        self.bind = parse_bind(bind) if isinstance(bind, str) else bind
        self._token: str | None = token_from_env() if token is _FROM_ENV else (token or None)
        check_exposure(self.bind, self._token)
        if config_path is None and engine.config.path is not None:
            config_path = engine.config.path
        self.config_path: Path | None = Path(config_path) if config_path is not None else None
        self.node = node or node_name()
        self._metrics = MetricsRenderer(engine, self.node)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closing = asyncio.Event()
        self._viewers: set[Viewer] = set()
        # Encoded event-stream frames by "with sessions?": (built at, bytes), shared by the
        # viewers that ask within their max age, and the builds under way.
        self._frames: dict[bool, tuple[float, bytes]] = {}
        self._building: dict[bool, asyncio.Task[bytes]] = {}
        self._rows = RowCache()  # finished sessions' encoded rows, reused frame to frame
        self._save_lock = asyncio.Lock()
        self._saved_source: FileStamp | None = None
        self._actor: str | None = None  # who is changing knobs right now (the PATCH's peer)
        self._unsubscribe: list[Callable[[], None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://HOST:PORT` the server answers on (after start)."""
        if self._url is None:
            raise RuntimeError("the control server is not started")
        return self._url

    @property
    def auth(self) -> bool:
        """True when requests need the bearer token."""
        return self._token is not None

    async def start(self) -> ControlServer:
        """Listen; OSError when the address cannot be bound (in use, not this host's)."""
        if self._runner is not None:
            return self
        self._closing = asyncio.Event()  # a server stopped and started again serves anew
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors, self._guard])
        app.router.add_get("/v1/snapshot", self._get_snapshot)
        app.router.add_get("/v1/knobs", self._get_knobs)
        app.router.add_patch("/v1/knobs", self._patch_knobs)
        app.router.add_post("/v1/save", self._post_save)
        app.router.add_post("/v1/sessions/{id}/cancel", self._post_cancel)
        app.router.add_get("/v1/events", self._get_events, allow_head=False)
        app.router.add_get("/metrics", self._get_metrics)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE,
            logger=_http_log,
            auto_decompress=False,  # no compressed bodies: nothing to inflate past MAX_BODY
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.bind.host or None, self.bind.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._url = self._url_of(runner.addresses)
        self._unsubscribe = [
            self.engine.on_knob_change(self._on_knob_change),
            self.engine.on_session_end(self._on_session_end),
        ]
        auth = "bearer token (SLUICE_TOKEN)" if self.auth else "none (loopback only)"
        log.info("control API on %s (node %s; auth: %s)", self._url, self.node, auth)
        return self

    def _url_of(self, addresses: list[Any]) -> str:
        host, port = addresses[0][0], addresses[0][1]
        if self.bind.host and is_loopback_host(self.bind.host) and not self.bind.host[0].isdigit():
            host = self.bind.host  # `localhost` stays a name
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    async def stop(self) -> None:
        """Close every event stream, finish in-flight requests (bounded), stop listening."""
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        self._closing.set()
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(ValueError):
                unsubscribe()
        self._unsubscribe = []
        for viewer in list(self._viewers):
            if viewer.writing:  # stuck on a full socket: no goodbye can reach it
                viewer.abort()
        await runner.cleanup()
        building = list(self._building.values())
        await cancel_and_wait(building)
        log.info("control API on %s stopped", self._url)

    async def __aenter__(self) -> ControlServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def viewers(self) -> list[ViewerStats]:
        """The event-stream viewers connected now."""
        return [v.stats() for v in self._viewers]

    # -- engine events ---------------------------------------------------------------------

    def _on_knob_change(self, name: str, value: Any) -> None:
        cluster = self.engine.cluster
        if cluster is not None and cluster.applying:
            return  # from another node: the cluster link logs it, naming the node
        reason = self.engine.change_reason
        if reason is not None:
            log.info("knob %s set to %s by auto-tune (%s)", name, value, one_line(reason))
        elif self._actor is None:  # the API logs its own changes, one line per request
            log.info("knob %s set to %s in-process (not through the API)", name, value)

    def _on_session_end(self, session: Session) -> None:
        if session.state == "failed":
            log.warning(
                "session %s failed: %s", session.id, one_line(session.error or "unknown error")
            )

    # -- middleware ------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error as `{"error": "one line"}`; nothing a request does escapes as a crash."""
        try:
            return await handler(request)
        except _Refused as exc:
            return _error(exc.status, str(exc), exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, self._http_message(request, exc), self._keep_headers(exc))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            log.error(
                "error answering %s %s: %s",
                request.method,
                one_line(request.path, 100),
                one_line(f"{type(exc).__name__}: {exc}"),
            )
            return _error(500, f"internal error: {type(exc).__name__}")

    @staticmethod
    def _http_message(request: web.Request, exc: web.HTTPException) -> str:
        path = one_line(request.path, 100)
        if isinstance(exc, web.HTTPNotFound):
            return f"no endpoint {request.method} {path}; there are: {_ENDPOINTS}"
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            return f"{request.method} is not allowed on {path}; allowed: {allowed}"
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            return f"request body too large: at most {MAX_BODY} bytes"
        return exc.reason

    @staticmethod
    def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
        return {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)}

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The token (when set), then the browser rules: a loopback-only server answers only
        requests addressed to a loopback name (no DNS rebinding), and nothing that changes
        state is accepted from another web origin."""
        if self._token is not None:
            if not token_matches(request.headers.get("Authorization"), self._token):
                raise _Refused(
                    401,
                    "missing or wrong bearer token",
                    {"WWW-Authenticate": 'Bearer realm="sluice"'},
                )
        elif not is_loopback_host(request.url.host or ""):
            raise _Refused(
                403, "the Host header must name a loopback address (this server has no token)"
            )
        origin = request.headers.get("Origin")
        if origin is not None and request.method not in ("GET", "HEAD"):
            host = request.headers.get("Host", "")
            if origin.partition("://")[2].rstrip("/") != host:
                raise _Refused(403, "requests from another web origin cannot change anything")
        return await handler(request)

    # -- reading ---------------------------------------------------------------------------

    async def _render(self, sessions: bool = True) -> bytes:
        """A snapshot taken now on the loop, encoded in a worker thread (it is frozen data),
        so a large frame never holds the engine's loop for its whole encoding."""
        snapshot = self.engine.snapshot()
        knobs = knobs_document(self.engine)
        return await asyncio.to_thread(
            render_snapshot, snapshot, knobs, self.node, sessions, self._rows
        )

    async def _frame(self, max_age: float, sessions: bool) -> bytes:
        """An encoded snapshot at most `max_age` seconds old, shared between viewers: one
        build at a time per kind (with or without the session list)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        cached = self._frames.get(sessions)
        if cached is not None and now - cached[0] <= max_age:
            return cached[1]
        building = self._building.get(sessions)
        if building is None:
            building = loop.create_task(self._render(sessions), name="sluice-control-frame")
            self._building[sessions] = building
            building.add_done_callback(functools.partial(self._built, sessions, now))
        return await asyncio.shield(building)

    def _built(self, sessions: bool, started: float, task: asyncio.Task[bytes]) -> None:
        self._building.pop(sessions, None)
        if not task.cancelled() and task.exception() is None:
            self._frames[sessions] = (started, task.result())

    async def _get_snapshot(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=await self._render(), content_type="application/json")

    async def _get_knobs(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"knobs": knobs_document(self.engine)})

    async def _get_metrics(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _get_events(self, request: web.Request) -> web.StreamResponse:
        try:
            rate, sessions_rate = parse_rates(
                request.query.get("rate"), request.query.get("sessions_rate")
            )
        except RateError as exc:
            raise _Refused(422, str(exc)) from None
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold frames back
            }
        )
        await response.prepare(request)
        viewer = Viewer(_peer(request), rate, sessions_rate, response, request.transport)
        self._viewers.add(viewer)
        try:
            await viewer.run(self._frame, self._closing)
        except ConnectionError:
            pass  # the viewer went away
        except Exception as exc:  # the stream has started: no error response can follow
            log.error("event stream to %s ended: %s", viewer.peer, one_line(repr(exc)))
        finally:
            self._viewers.discard(viewer)
        return response

    # -- changing --------------------------------------------------------------------------

    @staticmethod
    async def _json_body(request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()  # 413 past MAX_BODY
        if not raw.strip() and optional:
            return {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f"bad byte at {exc.start}"
            raise _Refused(422, f"the body is not UTF-8 JSON text ({where})") from None
        try:
            return json.loads(
                text.removeprefix("\ufeff"),  # a BOM before JSON may be ignored (RFC 8259)
                parse_constant=_refuse_constant,
                parse_float=_float,
                parse_int=_int,
                object_pairs_hook=_checked_object,
            )
        except _BadMember as exc:
            raise _Refused(422, str(exc)) from None
        except ValueError as exc:
            raise _Refused(422, f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _Refused(422, "the body nests arrays or objects too deeply") from None

    async def _patch_knobs(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if not isinstance(body, dict):
            raise _Refused(
                422,
                'the body must be a JSON object of knob names to values: {"queue.maxsize": 32}',
            )
        before = dict(self.engine.knobs)
        peer = _peer(request)
        self._actor = peer
        try:
            stored = self.engine.set_knobs(body)
        except KnobError as exc:
            raise _Refused(422, str(exc)) from None
        finally:
            self._actor = None
        changes = [f"{n} {before.get(n)} -> {v}" for n, v in stored.items() if before.get(n) != v]
        if changes:
            log.info("knobs changed by %s: %s", peer, ", ".join(changes))
        return web.json_response({"knobs": knobs_document(self.engine)})

    async def _post_save(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request, optional=True)
        if not isinstance(body, dict) or not set(body) <= {"overwrite"}:
            raise _Refused(422, 'the body must be empty or {"overwrite": true|false}')
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise _Refused(422, "overwrite must be true or false")
        if self.config_path is None:
            raise _Refused(409, "this engine has no config file to save to")
        async with self._save_lock:
            config = self.engine.tuned_config()
            if self._saved_source is not None:  # the file as this server last wrote it
                config = replace(config, source=self._saved_source)
            try:
                result = await asyncio.to_thread(
                    save_config, config, self.config_path, overwrite=overwrite
                )
            except ConfigChanged as exc:
                raise _Refused(
                    409, f'{exc}; send {{"overwrite": true}} to replace Sluice\'s keys anyway'
                ) from None
            except ConfigError as exc:
                raise _Refused(409, str(exc)) from None
            except OSError as exc:
                raise _Refused(409, f"{self.config_path}: cannot write: {exc.strerror}") from None
            self._saved_source = result.source
        log.info("knobs saved to %s by %s (%s)", result.path, _peer(request), result.backup_note)
        return web.json_response(
            {
                "path": str(result.path),
                "written": str(result.written),
                "backup": None if result.backup is None else str(result.backup),
                "note": result.backup_note,
            }
        )

    async def _post_cancel(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        session = self.engine.sessions.get(session_id)
        shown = one_line(repr(session_id), 120)
        if session is None:
            raise _Refused(
                404,
                f"no session {shown} (finished sessions beyond the engine's history are only "
                "in the totals)",
            )
        if session.finished:
            raise _Refused(
                409, f"session {shown} already ended ({session.state}); nothing to cancel"
            )
        self.engine.cancel(session_id)
        log.info("session %s cancelled by %s", session_id, _peer(request))
        return web.json_response({"id": session_id, "cancelled": True})


def _refuse_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser would accept them."""
    raise ValueError(f"{name} is not a JSON value")


class _BadMember(ValueError):
    """A member of a JSON object that is valid JSON but cannot be taken (said as is)."""


class _OutOfRange(float):
    """A JSON number beyond a float's range (1e400): infinity, with the text as sent."""

    text: str


def _float(text: str) -> float:
    """A JSON number as a float; one beyond a float's range is marked (`_OutOfRange`) so
    its member is refused naming the text sent, not read as infinity."""
    value = float(text)
    if not math.isinf(value):
        return value
    marked = _OutOfRange(value)
    marked.text = text[:40]
    return marked


def _int(text: str) -> int:
    """A JSON integer; one of more than 1,000 digits is refused before Python is asked to
    read it (past 4,300 digits it refuses with a message about its own settings)."""
    if len(text.lstrip("-")) > 1000:
        raise _BadMember(f"an integer of {len(text.lstrip('-'))} digits: no knob takes one")
    return int(text)


def _checked_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a key given twice (which one would win is not something a
    caller should have to guess) or a number beyond range is refused, naming the key."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        name = json.dumps(key)[1:-1][:80]  # escaped: one line whatever the key holds
        if key in values:
            raise _BadMember(f"{name} is given twice")
        if isinstance(value, _OutOfRange):
            raise _BadMember(f"{name} = {value.text}: beyond the range of a number")
        values[key] = value
    return values


def serve_control(engine: Engine, **options: Any) -> ControlServer:
    """A ControlServer for `engine`, started by `async with` (options as ControlServer's)."""
    return ControlServer(engine, **options)


async def start_control(engine: Engine, **options: Any) -> ControlServer:
    """Start serving `engine` now; `await server.stop()` ends it."""
    return await ControlServer(engine, **options).start()
