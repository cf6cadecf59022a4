"""A loopback server answering Anthropic's Messages API with one long SSE stream per request,
for the long-response benchmark (the benchmark cannot use the test suite's servers).

`python -m sluice.bench.anthropic_sse` listens on 127.0.0.1 (a free port), prints the port on
one line and serves until its stdin closes. The prompt is the number of text deltas to send;
the body is rendered once per size and sent with a Content-Length, as fast as the client
reads, so what is measured is the client's cost per delta. Running it in its own process keeps
its CPU out of the client's.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["answer_pieces", "render_stream", "serve"]

TEXT = " token"  # the text of every delta


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def answer_pieces(model: str, deltas: int, text: str = TEXT) -> tuple[bytes, bytes, bytes]:
    """One answer's SSE events as the API sends them, in three pieces: what comes before the
    text deltas (message_start, content_block_start), one text delta, what comes after
    them (the block's stop, message_delta with `deltas` output tokens, message_stop). The
    benchmarks' Anthropic-format servers send them whole or paced."""
    message: dict[str, Any] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    head = _event("message_start", {"type": "message_start", "message": message}) + _event(
        "content_block_start", block
    )
    delta = _event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    end["usage"] = {"output_tokens": deltas}
    tail = b"".join(
        (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta", end),
            _event("message_stop", {"type": "message_stop"}),
        )
    )
    return head, delta, tail


@functools.cache
def render_stream(deltas: int, model: str = "bench-model") -> bytes:
    """The whole SSE body of one answer made of `deltas` text deltas, as the API sends it."""
    head, delta, tail = answer_pieces(model, deltas)
    return b"".join((head, _event("ping", {"type": "ping"}), delta * deltas, tail))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API

    def do_POST(self) -> None:
        """POST /v1/messages: the prompt says how many deltas to stream."""
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        try:
            deltas = int(request["messages"][-1]["content"])
        except (KeyError, IndexError, TypeError, ValueError):
            self.send_error(400, "the prompt must be the number of deltas")
            return
        body = render_stream(deltas, str(request.get("model", "bench-model")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the benchmark's output is its table."""


def serve() -> int:
    """Serve on a free loopback port until stdin closes; the port goes to stdout first."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
