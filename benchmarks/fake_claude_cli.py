#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI that speaks the Agent SDK's stream-json protocol, for
the agent backend's tests and `sluice bench --only agent` (standard library only; pass its
path as `[agent] cli_path`).

What the SDK does and this answers (claude_agent_sdk 0.2.x): it runs `CLI --output-format
stream-json --verbose ... --include-partial-messages --input-format stream-json`, writes a
`control_request` (subtype `initialize`) on stdin and waits for the matching
`control_response`; then it writes the prompt as a `user` message and, having no callbacks
to serve, closes stdin. The CLI answers on stdout, one JSON object a line: a `system`/`init`
message, `stream_event`s wrapping the Messages API's stream events (message_start,
content_block_start/delta/stop, message_delta, message_stop), an `assistant` message per
model turn, a `user` message carrying tool results, and a final `result`.

The prompt picks the scenario: it may start with `[fake:NAME]`:

- `text` (the default): the answer is `You said: <prompt>` in deltas of 4 characters.
- `retry`: two `api_retry` notices (as the real CLI sends while it retries), then `text`.
- `tools`: a turn with text and a tool call (input_json_delta), its result, then a turn that
  thinks (thinking_delta, signature_delta) and answers; two turns.
- `error`: some text, then an error result (`error_max_turns`), exit code 1.
- `exit`: some text, a line on stderr (holding the key), then exit code 3 mid-answer.
- `garbage`: some text, then a line that starts like JSON and is not, then it sleeps.
- `hang`: some text, then it sleeps and ignores SIGTERM.
- FAKE_CLAUDE_SCENARIO=silent in the environment: it never answers `initialize` (a CLI stuck
  at start-up).
- `slow`: 20 deltas 25 ms apart (a session that is still streaming when cancelled).
- `flood`: FAKE_CLAUDE_DELTAS deltas (default 20000) written as fast as the pipe takes them.

`--version` prints `2.1.332-fake (Claude Code)`. With FAKE_CLAUDE_RECORD set, the arguments,
the working folder and whether a key was in the environment (never the key) are written to
that file as JSON; with FAKE_CLAUDE_PROGRESS set, the number of deltas written so far is kept
there (updated every 50, and at the end); with FAKE_CLAUDE_SPANS set to a folder, its start
and end times go there (see `span`).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

VERSION = "2.1.332-fake"
SESSION = str(uuid.uuid4())
MODEL = "claude-fake-1"
CHUNK = 4


def emit(message: dict[str, Any]) -> None:
    """One stdout line, written straight to the pipe (so a full pipe blocks right here)."""
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def event(body: dict[str, Any]) -> None:
    emit(
        {
            "type": "stream_event",
            "uuid": str(uuid.uuid4()),
            "session_id": SESSION,
            "parent_tool_use_id": None,
            "event": body,
        }
    )


def text_block(index: int, text: str) -> None:
    event({"type": "content_block_start", "index": index, "content_block": {"type": "text"}})
    for start in range(0, len(text), CHUNK):
        piece = text[start : start + CHUNK]
        event(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            }
        )
    event({"type": "content_block_stop", "index": index})


def message_start(turn: int) -> None:
    event(
        {
            "type": "message_start",
            "message": {
                "id": f"msg_fake_{turn}",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "usage": {"input_tokens": 11, "output_tokens": 1},
            },
        }
    )


def message_end(stop_reason: str, output_tokens: int) -> None:
    event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    event({"type": "message_stop"})


def assistant(content: list[dict[str, Any]], stop_reason: str | None = None) -> None:
    emit(
        {
            "type": "assistant",
            "uuid": str(uuid.uuid4()),
            "session_id": SESSION,
            "parent_tool_use_id": None,
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": content,
                "stop_reason": stop_reason,
                "usage": {"input_tokens": 11, "output_tokens": 7},
            },
        }
    )


def result(text: str, turns: int, *, error: str | None = None) -> None:
    message: dict[str, Any] = {
        "type": "result",
        "subtype": error or "success",
        "is_error": error is not None,
        "duration_ms": 42,
        "duration_api_ms": 40,
        "num_turns": turns,
        "result": text,
        "session_id": SESSION,
        "stop_reason": "end_turn",
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 11 * turns,
            "output_tokens": 7 * turns,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
        "uuid": str(uuid.uuid4()),
    }
    if error is not None:
        message["errors"] = [f"Reached maximum number of turns ({turns})"]
    emit(message)


class Progress:
    """Deltas written so far, kept in a file for the back-pressure test and the bench."""

    def __init__(self) -> None:
        path = os.environ.get("FAKE_CLAUDE_PROGRESS")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if path else None
        self.count = 0

    def step(self) -> None:
        self.count += 1
        if self.count % 50 == 0:
            self.save()

    def save(self) -> None:
        if self.fd is not None:
            os.pwrite(self.fd, f"{self.count:>12}".encode(), 0)


def read_message() -> dict[str, Any] | None:
    """The next JSON line on stdin (None at its end)."""
    for line in sys.stdin:
        if line.strip():
            return dict(json.loads(line))
    return None


def answer_initialize() -> None:
    """Read the SDK's initialize request and answer it as the CLI does."""
    request = read_message()
    if request is None or request.get("type") != "control_request":
        sys.stderr.write("fake claude: expected the initialize control_request\n")
        sys.exit(2)
    emit(
        {
            "type": "control_response",
            "response": {
                "subtype": "success",
                "request_id": request["request_id"],
                "response": {"commands": [], "output_style": "default", "models": []},
            },
        }
    )


def record() -> None:
    path = os.environ.get("FAKE_CLAUDE_RECORD")
    if path:
        key_set = bool(
            os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("CLAUDE_CODE_OAUTH_TOKEN")
        )
        with open(path, "w") as out:
            json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "key_set": key_set}, out)


def span() -> None:
    """With FAKE_CLAUDE_SPANS set (a folder), write this process's start and end times
    (CLOCK_MONOTONIC, shared by every process) there when it ends normally: a test can then
    count how many CLIs ran at once."""
    folder = os.environ.get("FAKE_CLAUDE_SPANS")
    if folder:
        start = time.monotonic()

        def write() -> None:
            with open(os.path.join(folder, f"{os.getpid()}.span"), "w") as out:
                out.write(f"{start} {time.monotonic()}")

        atexit.register(write)


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(f"{VERSION} (Claude Code)")
        return
    span()
    record()
    if "--input-format" not in sys.argv:
        sys.stderr.write("fake claude: only --input-format stream-json is spoken here\n")
        sys.exit(2)
    if os.environ.get("FAKE_CLAUDE_SCENARIO") == "silent":
        time.sleep(3600)
    answer_initialize()
    user = read_message()
    if user is None:
        return  # stdin closed without a prompt (`sluice check`): nothing to answer
    prompt = str(user["message"]["content"])
    scenario = "text"
    if prompt.startswith("[fake:") and "]" in prompt:
        scenario, _, prompt = prompt[len("[fake:") :].partition("]")
        prompt = prompt.strip()
    emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": SESSION,
            "uuid": str(uuid.uuid4()),
            "cwd": os.getcwd(),
            "model": MODEL,
            "tools": [],
            "permissionMode": "default",
            "claude_code_version": VERSION.split("-")[0],
            "apiKeySource": "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none",
        }
    )
    run(scenario, prompt)


def run(scenario: str, prompt: str) -> None:
    message_start(1)
    if scenario == "text":
        answer = f"You said: {prompt}"
        text_block(0, answer)
        assistant([{"type": "text", "text": answer}], "end_turn")
        message_end("end_turn", 7)
        result(answer, 1)
    elif scenario == "retry":
        for attempt in (1, 2):  # as the real CLI reports its API retries
            emit(
                {
                    "type": "system",
                    "subtype": "api_retry",
                    "attempt": attempt,
                    "max_retries": 10,
                    "retry_delay_ms": 5,
                    "error_status": 529,
                    "error": "overloaded",
                    "session_id": SESSION,
                    "uuid": str(uuid.uuid4()),
                }
            )
        answer = f"You said: {prompt}"
        text_block(0, answer)
        message_end("end_turn", 7)
        result(answer, 1)
    elif scenario == "tools":
        text_block(0, "Let me look.")
        event(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}},
            }
        )
        for part in ('{"file_', 'path": "', 'notes.txt"}'):
            event(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                }
            )
        event({"type": "content_block_stop", "index": 1})
        assistant(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "Read",
                    "input": {"file_path": "notes.txt"},
                }
            ],
            "tool_use",
        )
        message_end("tool_use", 9)
        emit(
            {
                "type": "user",
                "uuid": str(uuid.uuid4()),
                "session_id": SESSION,
                "parent_tool_use_id": None,
                "message": {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "three notes"}
                    ],
                },
            }
        )
        message_start(2)
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            }
        )
        for part in ("The file has ", "three notes."):
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": part},
                }
            )
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "c2ln"},
            }
        )
        event({"type": "content_block_stop", "index": 0})
        text_block(1, " It holds three notes.")
        message_end("end_turn", 5)
        result("Let me look. It holds three notes.", 2)
    elif scenario == "error":
        text_block(0, "Partial answer")
        message_end("end_turn", 3)
        result("", 1, error="error_max_turns")
        sys.exit(1)
    elif scenario == "exit":
        text_block(0, "Half an ans")
        # Echoes the key, as a careless CLI might: Sluice must never show it.
        key = os.environ.get("ANTHROPIC_API_KEY", "")
        sys.stderr.write(f"fake claude: crashed on purpose; key {key}\n")
        sys.stderr.flush()
        os._exit(3)
    elif scenario == "garbage":
        text_block(0, "Before the garbage")
        os.write(1, b'{"type": "stream_event", this is not JSON\n')
        time.sleep(3600)
    elif scenario == "hang":
        text_block(0, "Hello, then nothing")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
    elif scenario == "slow":
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
        for n in range(20):
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"w{n} "},
                }
            )
            time.sleep(0.025)
        event({"type": "content_block_stop", "index": 0})
        message_end("end_turn", 20)
        result("slow", 1)
    elif scenario == "flood":
        total = int(os.environ.get("FAKE_CLAUDE_DELTAS", "20000"))
        progress = Progress()
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
        for n in range(total):
            event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"{n % 10}"},
                }
            )
            progress.step()
        progress.save()
        event({"type": "content_block_stop", "index": 0})
        message_end("end_turn", total)
        result("flood", 1)
    else:
        sys.stderr.write(f"fake claude: unknown scenario {scenario!r}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
