"""ControlClient: one served engine's control API seen from another process (`sluice attach`).

It follows `GET /v1/events` (light frames often, the session list about once a second) and
keeps the newest snapshot; it sends knob changes, saves and cancels. A node that is down,
slow or refusing is never waited on forever: every request has a timeout, a silent event
stream counts as lost, and the stream is retried with capped exponential backoff (with
jitter) until the client is closed. Its state is `connecting`, `connected` or
`disconnected` (since when, and why). The bearer token comes from SLUICE_TOKEN only and is
never shown; credentials inside the URL are hidden wherever the URL is shown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

from sluice.engine.control.bind import TOKEN_ENV, token_from_env
from sluice.engine.control.wire import one_line
from sluice.engine.redact import redact_url
from sluice.engine.settings import SETTINGS, url_problem
from sluice.engine.snapshot import EngineSnapshot, SessionSnapshot
from sluice.engine.tasks import cancel_and_wait

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "DISCONNECTED",
    "ClientError",
    "ControlClient",
    "NodeStatus",
    "SaveAnswer",
    "check_snapshot",
    "check_url",
]

CONNECTING, CONNECTED, DISCONNECTED = "connecting", "connected", "disconnected"
REQUEST_TIMEOUT = 5.0  # seconds a PATCH, save or cancel may take before it is given up
STALE_AFTER = 10.0  # seconds without a byte on the event stream before it counts as lost
BACKOFF = (0.25, 4.0)  # first retry delay and the cap, in seconds (doubling, jittered)
MAX_FRAME = 64 * 2**20  # bytes one event may have: a server cannot make us hold more
THREAD_PARSE = 64 * 1024  # bytes from which a frame is parsed in a worker thread
_FROM_ENV: Any = object()


class ClientError(Exception):
    """A request the node refused or that could not be made; `str()` is one line fit to
    show (the node's own error text, control characters escaped, credentials hidden).
    `status` is the HTTP status (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(one_line(message))
        self.status = status


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Where the link to one node stands: `state` since `since` (the local monotonic
    clock), the node's name once known, and why the last attempt failed (one line)."""

    url: str  # credentials hidden
    state: str
    since: float
    name: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SaveAnswer:
    """A save the node made: the file it wrote and what became of the previous one."""

    path: str
    note: str


def check_url(text: str) -> str:
    """A node's URL as the client uses it (`http://host:port`, no trailing slash; a bare
    `host:port` means http); ValueError with one line naming what is allowed. The message
    never shows credentials written in the URL."""
    shown = redact_url(text)
    problem = url_problem(text)
    if problem is None and not text.strip():
        problem = "empty"
    if problem is not None:
        raise ValueError(
            f"{shown!r}: {problem}; expected the URL `sluice serve` prints, "
            "like http://127.0.0.1:8321"
        )
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.query or parts.fragment or parts.path.strip("/"):
        raise ValueError(f"{shown!r}: a node's URL has no path or query, like http://host:8321")
    return urlunsplit((parts.scheme.lower(), parts.netloc, "", "", ""))


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "None": (type(None),),
}
_CHECKS: dict[type, list[tuple[str, tuple[type, ...] | None]]] = {}


def _checks(cls: type) -> list[tuple[str, tuple[type, ...] | None]]:
    """Per field of a snapshot class: the JSON types its value may have (None: a nested
    object checked on its own)."""
    found = _CHECKS.get(cls)
    if found is None:
        found = []
        for f in fields(cls):
            names = [part.strip() for part in str(f.type).split("|")]
            if all(name in _TYPES for name in names):
                found.append((f.name, tuple(t for name in names for t in _TYPES[name])))
            else:
                found.append((f.name, None))
        _CHECKS[cls] = found
    return found


def _check(obj: Any) -> None:
    """TypeError unless every field of a snapshot part has a type its declaration allows:
    a node's numbers are shown and summed, so a string where a number belongs (or a
    boolean) must be refused here, not crash the screen later."""
    for name, allowed in _checks(type(obj)):
        value = getattr(obj, name)
        if allowed is not None:
            if not isinstance(value, allowed) or isinstance(value, bool):
                raise TypeError(name)
        elif hasattr(value, "__dataclass_fields__"):
            _check(value)
        elif isinstance(value, Mapping) and not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value.values()
        ):
            raise TypeError(name)


def check_snapshot(snap: EngineSnapshot) -> None:
    """TypeError naming the first member of a parsed snapshot whose type is wrong."""
    for part in (snap.totals, snap.process, *snap.backends, *snap.sessions):
        _check(part)
    for name, value in snap.knobs.items():
        setting = SETTINGS.get(name)
        if setting is not None and setting.kind is bool:  # the auto-tune switches
            if not isinstance(value, bool):
                raise TypeError(f"knobs.{name}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"knobs.{name}")


def _parse(data: bytes) -> tuple[EngineSnapshot, dict[str, Any], Any, bool]:
    """A frame's snapshot (type-checked), knob entries, node name and whether it carried
    the session list; ClientError when it does not parse."""
    try:
        doc = json.loads(data)
        with_sessions = "sessions" in doc
        snap = EngineSnapshot.from_dict(doc if with_sessions else {**doc, "sessions": ()})
        check_snapshot(snap)
        knobs = doc["knobs"]
        if not isinstance(knobs, dict) or not all(isinstance(v, dict) for v in knobs.values()):
            raise TypeError("knobs")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ClientError(f"a frame that does not parse: {type(exc).__name__}") from None
    return snap, knobs, doc.get("node"), with_sessions


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a byte stream (without `\n` or `\r\n`), each chunk searched once: a
    1 MB event arriving in 64 KiB pieces is not rescanned piece by piece. A line (one
    event's data) longer than MAX_FRAME is refused."""
    partial: list[bytes] = []
    held = 0
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            partial.append(chunk[start:end])
            line = b"".join(partial)
            partial, held = [], 0
            yield line[:-1] if line.endswith(b"\r") else line
            start = end + 1
        if start < len(chunk):
            partial.append(chunk[start:])
            held += len(chunk) - start
            if held > MAX_FRAME:
                raise ClientError(f"an event larger than {MAX_FRAME} bytes")


def _status_text(status: int, body: bytes) -> str:
    """`401: missing or wrong bearer token`: the node's one-line error, if it sent one."""
    try:
        message = json.loads(body)["error"]
        if not isinstance(message, str):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        message = body[:200].decode("utf-8", "replace").strip() or "no reason given"
    hint = f" (set {TOKEN_ENV} to the node's token)" if status == 401 else ""
    return f"HTTP {status}: {message}{hint}"


def _why(exc: BaseException) -> str:
    """A failed connection in a few words."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the node closed the connection"
    if isinstance(exc, ClientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ControlClient:
    """The control API of the engine served at `url`.

    `start()` begins following its event stream (`rate` frames a second, the session list
    `sessions_rate` times a second); `snapshot()` is the newest one (None before the first);
    `status` says whether it is connected; `on_change()` is called after each frame and
    each change of state. `token` defaults to SLUICE_TOKEN. Close with `aclose()`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = _FROM_ENV,
        rate: float = 5.0,
        sessions_rate: float = 1.0,
        timeout: float = REQUEST_TIMEOUT,
        stale_after: float = STALE_AFTER,
        backoff: tuple[float, float] = BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = check_url(url)
        parts = urlsplit(self.url)
        self.shown_url = redact_url(url if "://" in url else f"http://{url}").rstrip("/")
        token = token_from_env() if token is _FROM_ENV else token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        if parts.username is not None:  # for a proxy in front of the node; never shown
            if token:
                raise ValueError(
                    f"{self.shown_url!r}: credentials in the URL and {TOKEN_ENV} cannot both "
                    "be sent; use one"
                )
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            host = parts.netloc.rpartition("@")[2]
            self.url = urlunsplit((parts.scheme, host, "", "", ""))
        self.rate = rate
        self.sessions_rate = sessions_rate
        self.timeout = timeout
        self.stale_after = stale_after
        self.backoff = backoff
        self.clock = clock
        self.on_change = on_change
        self._status = NodeStatus(self.shown_url, CONNECTING, clock())
        self._light: EngineSnapshot | None = None
        self._event, self._data = b"message", list[bytes]()  # the event being read
        self._sessions: tuple[SessionSnapshot, ...] = ()
        self._knobs: Mapping[str, Mapping[str, Any]] = MappingProxyType({})
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.frames = 0  # frames received since start

    # -- state -----------------------------------------------------------------------------

    @property
    def status(self) -> NodeStatus:
        """The link's state now."""
        return self._status

    @property
    def knob_entries(self) -> Mapping[str, Mapping[str, Any]]:
        """The node's knobs as its last frame had them: by dotted name, each with `value`,
        `min`, `max` and more (docs/json.md)."""
        return self._knobs

    def snapshot(self, *, sessions: bool = True) -> EngineSnapshot | None:
        """The newest snapshot (with the newest session list when `sessions`), in the
        node's own clock; None before the first frame."""
        light = self._light
        if light is None or not sessions:
            return light
        return EngineSnapshot(
            light.taken_at, self._sessions, light.backends, light.knobs, light.process, light.totals
        )

    def _set_state(self, state: str, error: str | None = None) -> None:
        old = self._status
        since = old.since if state == old.state else self.clock()
        if state == CONNECTING and old.state == DISCONNECTED:
            state, since = DISCONNECTED, old.since  # still down while retrying
        name = old.name
        self._status = NodeStatus(self.shown_url, state, since, name, error)
        if old != self._status:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- lifecycle -------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._http

    def start(self) -> None:
        """Follow the node's event stream in a task of the running loop (idempotent)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._follow(), name=f"sluice-attach {self.shown_url}"
            )

    @property
    def closed(self) -> bool:
        """True once `aclose()` finished: nothing of the client runs or is open."""
        return self._closed and self._task is None and (self._http is None or self._http.closed)

    async def aclose(self) -> None:
        """Stop following and close the connections (bounded: nothing here waits on the
        node)."""
        self._closed = True
        task = self._task
        if task is not None:
            await cancel_and_wait([task])
            self._task = None  # only once it ended: a second call waits for it too
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> ControlClient:
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- the event stream ------------------------------------------------------------------

    async def _follow(self) -> None:
        """Connect, read frames until the stream ends or goes silent, wait, again."""
        failures = 0
        while not self._closed:
            self._set_state(CONNECTING, self._status.error)
            try:
                await self._read_stream()
                error = "the event stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = one_line(_why(exc), 200)
            if self._status.state == CONNECTED:
                failures = 0  # it worked for a while: start the backoff again
            self._set_state(DISCONNECTED, error)
            low, cap = self.backoff
            delay = min(cap, low * 2**failures) * random.uniform(0.5, 1.0)
            failures = min(failures + 1, 30)
            await asyncio.sleep(delay)

    async def _read_stream(self) -> None:
        query = f"rate={self.rate:g}&sessions_rate={self.sessions_rate:g}"
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeout, sock_connect=self.timeout, sock_read=self.stale_after
        )
        async with self._session().get(f"{self.url}/v1/events?{query}", timeout=timeout) as resp:
            if resp.status != 200:
                body = await resp.content.read(4096)
                raise ClientError(_status_text(resp.status, body), resp.status)
            self._event, self._data = b"message", []
            async for line in _lines(resp.content.iter_any()):
                await self._line(line)

    async def _line(self, line: bytes) -> None:
        """One line of the event stream: a field of the event being read, or (empty) the
        end of it."""
        if line:
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value
            return
        event, data = self._event, self._data
        self._event, self._data = b"message", []
        if event == b"snapshot" and data:
            await self._take(b"\n".join(data))
        elif event == b"closing":
            raise ClientError("the node is stopping")

    async def _take(self, data: bytes) -> None:
        """One snapshot frame: keep it (a frame without the session list keeps the last
        list); a frame that does not parse ends the connection (it is retried). A big frame
        (the session list) is parsed in a worker thread: the parse is mostly Python, so the
        loop (the app's keys) gets its turns meanwhile instead of waiting it out."""
        if len(data) > THREAD_PARSE:
            snap, knobs, name, with_sessions = await asyncio.to_thread(_parse, data)
        else:
            snap, knobs, name, with_sessions = _parse(data)
        if with_sessions:
            self._sessions = snap.sessions
            snap = replace(snap, sessions=())
        self._light = snap
        self._knobs = MappingProxyType(knobs)
        old = self._status
        name = one_line(str(name), 80) if name is not None else old.name
        if old.state != CONNECTED or old.name != name:
            since = self.clock() if old.state != CONNECTED else old.since
            self._status = NodeStatus(self.shown_url, CONNECTED, since, name, None)
        self.frames += 1
        self._changed()

    # -- requests --------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        """One request with the client's timeout; its JSON answer, or ClientError."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session().request(
                method, f"{self.url}{path}", data=data, headers=headers
            ) as resp:
                raw = await resp.content.read(MAX_FRAME)
                if resp.status != 200:
                    raise ClientError(_status_text(resp.status, raw), resp.status)
        except ClientError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ClientError(_why(exc)) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ClientError("the answer is not JSON") from None

    async def fetch_snapshot(self) -> EngineSnapshot:
        """`GET /v1/snapshot`, now."""
        doc = await self._request("GET", "/v1/snapshot")
        try:
            snap = EngineSnapshot.from_dict(doc)
            check_snapshot(snap)
            return snap
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ClientError(f"a snapshot that does not parse: {type(exc).__name__}") from None

    async def set_knobs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`PATCH /v1/knobs`: all of `values` or none (ClientError with the node's reason);
        returns every knob's value as the node now has it."""
        doc = await self._request("PATCH", "/v1/knobs", dict(values))
        try:
            knobs = doc["knobs"]
            values_now = {name: entry["value"] for name, entry in knobs.items()}
        except (TypeError, KeyError, AttributeError):
            raise ClientError("an answer without knobs") from None
        self._knobs = MappingProxyType(knobs)
        return values_now

    async def save(self, *, overwrite: bool = False) -> SaveAnswer:
        """`POST /v1/save`: the node writes its knobs to its own config file (ClientError
        with the reason, status 409, when it cannot)."""
        doc = await self._request("POST", "/v1/save", {"overwrite": True} if overwrite else {})
        try:
            return SaveAnswer(one_line(str(doc["path"])), one_line(str(doc.get("note", ""))))
        except (TypeError, KeyError):
            raise ClientError("an answer without a path") from None

    async def cancel(self, session_id: str) -> None:
        """`POST /v1/sessions/{id}/cancel` (ClientError: 404 unknown, 409 already ended)."""
        await self._request("POST", f"/v1/sessions/{quote(session_id, safe='')}/cancel")
