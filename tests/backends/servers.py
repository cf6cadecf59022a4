"""Loopback HTTP servers speaking Anthropic's Messages SSE and Ollama's NDJSON, with faults.

Each server runs its own asyncio loop in a background thread on 127.0.0.1 (random port), so
both async tests and `asyncio.run`-based CLI tests can point the real clients at it. Every
response is scripted per prompt: `server.script[prompt] = ["429", "ok"]` answers the first
attempt with a 429 and later ones normally (the last entry repeats). The text of an answer
is `server.words(prompt)`, so a test knows exactly what every session must process.

Faults: "ok", "429", "529", "401", "error_event" / "error_line" (an in-band error after half
the chunks), "drop" (connection aborted mid-stream, chunked framing left open), "stall"
(silence past the client's read timeout), "cut" (a close-delimited body that ends before
message_stop / the done line), "503" (Ollama busy), "bad_json" (a line or event that is not
JSON, after half the chunks), "idle" (after half the chunks, only keep-alives for `idle_s`:
Anthropic `ping` events, or for Ollama single spaces that never finish a line; then the rest).
Anthropic only: "weird_event" (an event type the SDK does not know, after half the chunks),
"bad_utf8", "no_usage" / "late_usage" (message_start without usage / without input_tokens;
both counts then come in message_delta), "bare" (message_start without its message,
message_delta without delta or usage), "tool_use" (a tool_use block whose input JSON
fragments do not parse, after the text). Ollama only: "error_first" (a 200 whose first line
is an `{"error": ...}`). `stop_reasons[prompt]` sets the stop reason (Ollama: done_reason).
Writes wait for the socket to drain with a tiny send buffer, so a slow reader blocks the
server's writes (see `write_blocked`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sluice.bench.threaded_server import ThreadedServer

SEND_BUFFER = 4096  # bytes asked of the kernel per accepted socket (it may double it)


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"null")


class Closed(Exception):
    """The handler closed the connection; the keep-alive loop stops."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: LoopbackServer
    keep_alive: bool = True

    async def write(self, data: bytes) -> None:
        """Write and wait until the kernel took it all: a slow reader blocks us here."""
        self.writer.write(data)
        transport = self.writer.transport
        if transport.get_write_buffer_size():
            self.server.write_blocked += 1
            self.server.blocked_now += 1
            try:
                await self.writer.drain()
            finally:
                self.server.blocked_now -= 1
        else:
            await self.writer.drain()

    async def respond(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """A complete response with Content-Length (keep-alive)."""
        head = _head(status, {"content-type": content_type, "content-length": str(len(body))})
        await self.write(head + _extra(headers) + b"\r\n" + body)

    async def start_chunked(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Start a 200 response with chunked transfer encoding."""
        head = _head(200, {"content-type": content_type, "transfer-encoding": "chunked"})
        await self.write(head + _extra(headers) + b"\r\n")

    async def chunk(self, data: bytes) -> None:
        """One HTTP chunk."""
        await self.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end_chunked(self) -> None:
        """The terminating zero-length chunk."""
        await self.write(b"0\r\n\r\n")

    async def start_close_delimited(self, content_type: str) -> None:
        """A 200 response whose body ends when the connection closes (no framing)."""
        self.keep_alive = False
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\nconnection: close\r\n\r\n" % (
            content_type.encode()
        )
        await self.write(head)

    async def stall(self, seconds: float) -> None:
        """Send nothing for `seconds`, or until the client hangs up; then drop the line."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(self.reader.read(), seconds)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (RST), mid-body."""
        self.keep_alive = False
        self.writer.transport.abort()
        raise Closed

    async def close(self) -> None:
        """Close the connection cleanly (FIN) and stop serving it."""
        self.keep_alive = False
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        raise Closed


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Site Overloaded",
}


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode()


def _extra(headers: dict[str, str] | None) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())


Handler = Callable[[_Conn, Request], Awaitable[None]]


@dataclass
class LoopbackServer(ThreadedServer):
    """An HTTP/1.1 server on 127.0.0.1 in its own thread; subclasses add the routes."""

    pace: float = 0.0  # seconds between streamed chunks
    chunks: int = 8  # chunks per answer
    pad: int = 0  # extra characters per chunk (to fill socket buffers sooner)
    stall_s: float = 30.0  # how long a "stall" stays silent
    idle_s: float = 3.0  # how long an "idle" sends only keep-alives
    keepalive_s: float = 0.05  # the gap between those keep-alives
    stop_reasons: dict[str, str] = field(default_factory=dict)  # per prompt; default normal end
    script: dict[str, list[str]] = field(default_factory=dict)
    chunk_counts: dict[str, int] = field(default_factory=dict)  # per-prompt answer length
    requests: list[Request] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    open_connections: int = 0
    connections_total: int = 0
    streaming_now: int = 0
    streaming_peak: dict[str, int] = field(default_factory=dict)
    write_blocked: int = 0  # writes that had to wait for the reader
    blocked_now: int = 0  # handlers waiting for the reader right now
    written: Counter[str] = field(default_factory=Counter)  # stream chunks sent, per prompt

    def __post_init__(self) -> None:
        ThreadedServer.__init__(self)  # the dataclass's __init__ does not call it
        self._streaming_by_model: Counter[str] = Counter()
        self._gate: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------

    def action_for(self, prompt: str) -> str:
        """The scripted action for this prompt's next attempt (counts the attempt)."""
        self.attempts[prompt] += 1
        plan = self.script.get(prompt, ["ok"])
        return plan[min(self.attempts[prompt], len(plan)) - 1]

    def words(self, prompt: str) -> list[str]:
        """The chunks of the answer to `prompt`, in order."""
        count = self.chunk_counts.get(prompt, self.chunks)
        tag = abs(hash(prompt)) % 997
        padding = "x" * self.pad
        return [f"w{tag}.{i}{padding} " for i in range(count)]

    def text(self, prompt: str) -> str:
        """The full answer to `prompt`."""
        return "".join(self.words(prompt))

    def hold(self) -> None:
        """From now on, answers wait (after their headers are read) until `release()`."""

        async def close_gate() -> None:
            self._gate = asyncio.Event()

        asyncio.run_coroutine_threadsafe(close_gate(), self._loop).result(5)

    def release(self) -> None:
        """Let held answers stream."""

        def open_gate() -> None:
            if self._gate is not None:
                self._gate.set()
            self._gate = None

        self._loop.call_soon_threadsafe(open_gate)

    async def wait_gate(self) -> None:
        """Hold the answer while the test's gate is closed."""
        gate = self._gate
        if gate is not None:
            await gate.wait()

    def stream_started(self, model: str) -> None:
        """Count concurrent streams, per model, to check per-backend limits."""
        self.streaming_now += 1
        self._streaming_by_model[model] += 1
        now = self._streaming_by_model[model]
        self.streaming_peak[model] = max(self.streaming_peak.get(model, 0), now)

    def stream_ended(self, model: str) -> None:
        """Undo `stream_started`."""
        self.streaming_now -= 1
        self._streaming_by_model[model] -= 1

    # -- HTTP ------------------------------------------------------------------------------

    def route(self, request: Request) -> Handler | None:
        """The handler for a request; subclasses override."""
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        writer.transport.set_write_buffer_limits(high=0, low=0)
        self.open_connections += 1
        self.connections_total += 1
        conn = _Conn(reader, writer, self)
        try:
            while conn.keep_alive:
                request = await _read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                handler = self.route(request)
                if handler is None:
                    await conn.respond(404, b'{"error":"not found"}', "application/json")
                    continue
                await handler(conn, request)
        except (Closed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self.open_connections -= 1
            if not writer.transport.is_closing():
                writer.close()
            self._handlers.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Request(method, path, headers, body)


# -- Anthropic Messages -------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _api_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@dataclass
class AnthropicServer(LoopbackServer):
    """POST /v1/messages (streamed SSE) and GET /v1/models/{id}, as Anthropic's API."""

    model: str = "claude-test-1"
    api_key: str | None = None  # when set, other keys get 401
    retry_after_ms: int = 10
    known_models: tuple[str, ...] = ("claude-test-1",)

    def route(self, request: Request) -> Handler | None:
        """Messages and models."""
        if request.method == "POST" and request.path.startswith("/v1/messages"):
            return self._messages
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            return self._model
        return None

    def _authorised(self, request: Request) -> bool:
        # The SDK sends the key as `x-api-key` (1.x) or `authorization: Bearer` (2.x).
        if self.api_key is None:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return self.api_key in (request.headers.get("x-api-key"), bearer)

    async def _unauthorised(self, conn: _Conn) -> None:
        body = _api_error("authentication_error", "invalid x-api-key")
        await conn.respond(401, body, "application/json", {"request-id": "req_test"})

    async def _model(self, conn: _Conn, request: Request) -> None:
        if not self._authorised(request):
            await self._unauthorised(conn)
            return
        model_id = request.path.rsplit("/", 1)[1].split("?")[0]
        if model_id not in self.known_models:
            body = _api_error("not_found_error", f"model: {model_id}")
            await conn.respond(404, body, "application/json")
            return
        info = {
            "type": "model",
            "id": model_id,
            "display_name": f"Test {model_id}",
            "created_at": "2025-01-01T00:00:00Z",
        }
        await conn.respond(200, json.dumps(info).encode(), "application/json")

    async def _messages(self, conn: _Conn, request: Request) -> None:
        if not self._authorised(request):
            await self._unauthorised(conn)
            return
        body = request.json()
        prompt = body["messages"][-1]["content"]
        model = body.get("model", self.model)
        action = self.action_for(prompt)
        if action in ("429", "529", "500"):
            kind = {"429": "rate_limit_error", "529": "overloaded_error"}.get(action, "api_error")
            status = int(action)
            headers = {"retry-after-ms": str(self.retry_after_ms), "request-id": "req_test"}
            await conn.respond(
                status, _api_error(kind, f"test {kind}"), "application/json", headers
            )
            return
        if action == "401":
            await self._unauthorised(conn)
            return
        if action == "echo_key":  # a careless upstream that repeats the credential it got
            sent = request.headers.get("x-api-key") or request.headers.get("authorization", "")
            body = _api_error("invalid_request_error", f"bad request for credential {sent}")
            await conn.respond(400, body, "application/json")
            return
        await self.wait_gate()
        words = self.words(prompt)
        cut_at = len(words) // 2
        if action == "cut":
            await conn.start_close_delimited("text/event-stream")
            send = conn.write
        else:
            await conn.start_chunked("text/event-stream", {"request-id": "req_test"})
            send = conn.chunk
        self.stream_started(model)
        try:
            usage = {"input_tokens": len(prompt.split()), "output_tokens": len(words)}
            start = {
                "type": "message_start",
                "message": {
                    "id": f"msg_{abs(hash(prompt)) % 10**8:08d}",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
                },
            }
            if action == "bare":
                start = {"type": "message_start"}
            elif action == "no_usage":
                del start["message"]["usage"]
            elif action == "late_usage":
                start["message"]["usage"] = {"output_tokens": 1}
            await send(_sse("message_start", start))
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
            block["content_block"]["text"] = ""
            await send(_sse("content_block_start", block))
            await send(_sse("ping", {"type": "ping"}))
            for i, word in enumerate(words):
                if i == cut_at and action in _MID_STREAM:
                    await self._fault(conn, action, send)
                if self.pace:
                    await asyncio.sleep(self.pace)
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word},
                }
                await send(_sse("content_block_delta", delta))
                self.written[prompt] += 1
            await send(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            reason = self.stop_reasons.get(prompt, "end_turn")
            if action == "tool_use":
                await _tool_use_block(send)
                reason = "tool_use"
            stop = {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            }
            if action in ("no_usage", "late_usage"):
                stop["usage"] = usage
            elif action == "bare":
                stop = {"type": "message_delta"}
            await send(_sse("message_delta", stop))
            await send(_sse("message_stop", {"type": "message_stop"}))
            await conn.end_chunked()
        finally:
            self.stream_ended(model)

    async def _fault(
        self, conn: _Conn, action: str, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        if action == "error_event":
            await send(_sse("error", json.loads(_api_error("overloaded_error", "Overloaded"))))
            await conn.end_chunked()
            await conn.close()
        elif action == "drop":
            conn.abort()
        elif action == "stall":
            await conn.stall(self.stall_s)
        elif action == "cut":
            await conn.close()
        elif action == "weird_event":  # then the stream goes on as usual
            await send(_sse("weird_event", {"type": "weird_event", "detail": {"x": 1}}))
        elif action == "idle":  # then the stream goes on as usual
            await _keep_alive(self, lambda: send(_sse("ping", {"type": "ping"})))
        elif action in ("bad_json", "bad_utf8"):
            if action == "bad_json":
                data = b'{"type": "content_block_delta", "index": 0, "delta": {'
            else:
                data = b'{"type": "content_block_delta", "index": 0, "delta": '
                data += b'{"type": "text_delta", "text": "caf\xe9"}}'
            await send(b"event: content_block_delta\ndata: " + data + b"\n\n")
            await conn.end_chunked()
            await conn.close()
        else:
            raise AssertionError(f"unknown fault {action!r}")


# Anthropic actions that act after half the chunks (the others change the message's shape).
_MID_STREAM = frozenset(
    ("error_event", "drop", "stall", "cut", "weird_event", "idle", "bad_json", "bad_utf8")
)


async def _tool_use_block(send: Callable[[bytes], Awaitable[None]]) -> None:
    """A tool_use content block whose input JSON fragments do not add up to JSON."""
    block = {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}},
    }
    await send(_sse("content_block_start", block))
    for fragment in ('{"city": ', "Par", "is}"):  # {"city": Paris}
        delta = {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        }
        await send(_sse("content_block_delta", delta))
    await send(_sse("content_block_stop", {"type": "content_block_stop", "index": 1}))


async def _keep_alive(server: LoopbackServer, send: Callable[[], Awaitable[None]]) -> None:
    """Send only keep-alives for `server.idle_s`, one every `server.keepalive_s`."""
    loop = asyncio.get_running_loop()
    until = loop.time() + server.idle_s
    while loop.time() < until:
        await send()
        await asyncio.sleep(server.keepalive_s)


# -- Ollama ---------------------------------------------------------------------------------


@dataclass
class OllamaServer(LoopbackServer):
    """POST /api/chat (streamed NDJSON), GET /api/tags and POST /api/show, as Ollama."""

    models: tuple[str, ...] = ("llama-test:latest",)

    def route(self, request: Request) -> Handler | None:
        """Chat, tags and show."""
        if request.method == "POST" and request.path == "/api/chat":
            return self._chat
        if request.method == "GET" and request.path == "/api/tags":
            return self._tags
        return None

    def _has(self, model: str) -> bool:
        return model in self.models or f"{model}:latest" in self.models

    async def _tags(self, conn: _Conn, request: Request) -> None:
        listing = {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2025-01-01T00:00:00Z",
                    "size": 1000,
                    "digest": "0" * 64,
                    "details": {"format": "gguf", "family": "llama", "parameter_size": "1B"},
                }
                for name in self.models
            ]
        }
        await conn.respond(200, json.dumps(listing).encode(), "application/json")

    async def _chat(self, conn: _Conn, request: Request) -> None:
        body = request.json()
        model = body["model"]
        prompt = body["messages"][-1]["content"]
        if not self._has(model):
            error = {"error": f'model "{model}" not found, try pulling it first'}
            await conn.respond(404, json.dumps(error).encode(), "application/json")
            return
        action = self.action_for(prompt)
        if action == "503":
            error = {"error": "server busy, please try again.  maximum pending requests exceeded"}
            await conn.respond(503, json.dumps(error).encode(), "application/json")
            return
        await self.wait_gate()
        words = self.words(prompt)
        cut_at = len(words) // 2
        if action == "cut":
            await conn.start_close_delimited("application/x-ndjson")
            send = conn.write
        else:
            await conn.start_chunked("application/x-ndjson")
            send = conn.chunk
        self.stream_started(model)
        try:
            if action == "error_first":
                line = {"error": "model runner has unexpectedly stopped,\n out of memory"}
                await send(json.dumps(line).encode() + b"\n")
                await conn.end_chunked()
                return
            for i, word in enumerate(words):
                if i == cut_at and action != "ok":
                    if action == "idle":
                        await _keep_alive(self, lambda: send(b" "))
                    if action == "bad_json":
                        await send(b'{"model": "x", "message": \n')
                        await conn.end_chunked()
                        return
                    if action == "error_line":
                        line = {"error": "an error was encountered while running the model"}
                        await send(json.dumps(line).encode() + b"\n")
                        await conn.end_chunked()
                        return
                    if action == "drop":
                        conn.abort()
                    if action == "stall":
                        await conn.stall(self.stall_s)
                    if action == "cut":
                        await conn.close()
                if self.pace:
                    await asyncio.sleep(self.pace)
                part = {
                    "model": model,
                    "created_at": "2025-01-01T00:00:00.000000Z",
                    "message": {"role": "assistant", "content": word},
                    "done": False,
                }
                await send(json.dumps(part).encode() + b"\n")
                self.written[prompt] += 1
            final = {
                "model": model,
                "created_at": "2025-01-01T00:00:01.000000Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": self.stop_reasons.get(prompt, "stop"),
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": len(prompt.split()),
                "prompt_eval_duration": 10,
                "eval_count": len(words),
                "eval_duration": 900,
            }
            await send(json.dumps(final).encode() + b"\n")
            await conn.end_chunked()
        finally:
            self.stream_ended(model)
