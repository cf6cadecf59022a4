"""The agent backend: Claude Agent SDK sessions (`claude_agent_sdk.query`) with partial-message
streaming, behind the session's bounded buffer like any other backend.

Needs the optional extra (`pip install 'sluice[agent]'`); only the registry imports this
module, when an agent backend is built, so the base install never loads the SDK.

One session is one `query()` (its body, `InternalClient.process_query`; see `stream`): the
SDK starts the Claude Code CLI as a subprocess, answers its
`initialize` control request, writes the prompt and reads the CLI's stdout (stream-json) in a
task of its own into a queue of 100 messages. Text deltas of the main thread's `StreamEvent`s
become chunks; tool-input and thinking deltas are counted on the session, never delivered
(and never parsed); a subagent's events are skipped. The `ResultMessage` ends the stream: its
usage, cost, turns and stop reason land on the session, and an error result fails it. The
CLI's `api_retry` notices count in the session's `attempts`.

Back-pressure: while the session's buffer is full this generator is not resumed, so the SDK's
queue fills, its reader waits, the pipe fills and the CLI blocks on write (measured in
docs/benchmarks.md, held by tests/backends/test_agent_backpressure.py).

Faults: the SDK has no read timeout, so `timeout_s` without any message from the CLI (start-up
included) fails the session (the content-idle clock). A CLI that exits mid-stream, writes
output that does not parse or ends without a result fails the session with one line. The CLI
never outlives its session: `_CliTransport.close` stops it at once (SIGTERM, then SIGKILL)
unless it has sent its result, when it gets a moment to exit on its own first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    CLIConnectionError,
    CLIJSONDecodeError,
    CLINotFoundError,
    Message,
    ProcessError,
    ResultMessage,
    StreamEvent,
    SystemMessage,
)
from claude_agent_sdk._errors import MessageParseError
from claude_agent_sdk._internal.client import InternalClient
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

from sluice.engine.backends.base import BackendError, StreamInfo, StreamTruncated, describe_error
from sluice.engine.backends.idle import ContentIdle, IdleClock
from sluice.engine.backends.remote import one_line
from sluice.engine.chunk import Chunk

__all__ = ["EXIT_WAIT_S", "STOP_WAIT_S", "AgentBackend", "CliTransport", "stop_process"]

# The SDK logs a failed reader at ERROR; with no handler configured Python would print that on
# stderr (over the app's screen). The session's error says it in one line instead.
logging.getLogger("claude_agent_sdk").addHandler(logging.NullHandler())

EXIT_WAIT_S = 2.0  # seconds a CLI that sent its result gets to exit on its own
STOP_WAIT_S = 1.5  # seconds after SIGTERM before SIGKILL (both within the session's grace)
STDERR_LINES = 5  # last lines of the CLI's stderr kept for an error message


class _StderrTail:
    """The CLI's last few stderr lines (a bounded deque), for error messages; never shown
    elsewhere, so the CLI cannot write over the app's screen."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)

    def __call__(self, line: str) -> None:
        text = one_line(line)
        if text:
            self.lines.append(text[:300])

    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


async def stop_process(process: Any, wait_first: float) -> None:
    """Stop a CLI subprocess (an anyio Process): wait `wait_first` seconds for it to exit on
    its own, then SIGTERM, then SIGKILL. Bounded; a cancel while waiting kills it at once
    (asyncio's child watcher still reaps it, so no zombie is left)."""
    try:
        steps = ((wait_first, None), (STOP_WAIT_S, signal.SIGTERM), (None, signal.SIGKILL))
        for wait, sig in steps:
            if process.returncode is not None:
                return
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if wait is None else max(wait, 0.0)):
                    await process.wait()
    except BaseException:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        raise


class CliTransport(SubprocessCLITransport):
    """The SDK's own subprocess transport, with a bounded stop.

    The SDK's `close()` waits 5 s for the CLI to exit after closing its stdin, then 5 s after
    SIGTERM: up to ten seconds for a CLI that hangs or is still answering, longer than a
    session's shutdown grace. Here the CLI is stopped at once unless it sent its result
    (`answered`), and the SDK's close then finds it gone and cleans up the rest."""

    answered = False

    async def close(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            if self.answered:  # end of input (if not yet): a CLI with nothing left exits
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_WAIT_S):
                        await self.end_input()
            await stop_process(process, EXIT_WAIT_S if self.answered else 0.0)
        await super().close()


class AgentBackend:
    """Streams Claude Agent SDK sessions: one CLI subprocess per streaming session."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, str],
        model: str = "",
        max_turns: int = 0,
        allowed_tools: tuple[str, ...] = (),
        permission_mode: str = "default",
        cwd: str = "",
        system: str = "",
        cli_path: str = "",
        timeout_s: float = 120.0,
        name: str = "agent",
    ) -> None:
        self.name = name
        self.model = model
        self.max_turns = max_turns
        self.allowed_tools = allowed_tools
        self.permission_mode = permission_mode
        self.cwd = cwd
        self.system = system
        self.cli_path = cli_path
        self.timeout_s = timeout_s
        self._env = dict(credentials)  # passed to the CLI only; scrubbed from every message
        self._secrets = [value for value in self._env.values() if value]

    def __repr__(self) -> str:
        return f"AgentBackend(model={self.model!r}, cli_path={self.cli_path!r})"

    def options(self, stderr: Any = None) -> ClaudeAgentOptions:
        """The SDK options of one session (also what `sluice check` starts the CLI with)."""
        return ClaudeAgentOptions(
            model=self.model or None,
            max_turns=self.max_turns or None,
            allowed_tools=list(self.allowed_tools),
            permission_mode=self.permission_mode,  # type: ignore[arg-type]
            cwd=self.cwd or None,
            system_prompt=self.system or None,
            cli_path=self.cli_path or None,
            include_partial_messages=True,
            env=self._env,
            stderr=stderr or _StderrTail(),
        )

    def find_cli(self) -> str:
        """The CLI a session would run: `cli_path`, else the SDK's own search (its bundled
        CLI, then `claude` on PATH and the usual install folders); CLINotFoundError if none."""
        return self.cli_path or CliTransport(prompt="", options=self.options())._find_cli()

    async def probe(self, timeout_s: float) -> str:
        """What `sluice check` says of the CLI: `Claude Code <version> at <path>, starts`.
        Runs `<cli> --version`, then starts it as a session would and waits for its answer
        to `initialize` (no prompt is sent, so nothing is spent). BackendError with the
        reason when it cannot; the CLI is stopped on every path."""
        try:
            path = self.find_cli()
        except CLINotFoundError as exc:
            raise BackendError(f"Claude Code CLI not found: {one_line(exc)[:200]}") from None
        version = await _cli_version(path, timeout_s)
        stderr = _StderrTail()
        options = self.options(stderr)
        transport = CliTransport(prompt="", options=options)
        client = ClaudeSDKClient(options=options, transport=transport)
        try:
            async with asyncio.timeout(timeout_s):
                await client.connect()
            transport.answered = True  # it started: at the end of its input it exits
        except TimeoutError:
            raise BackendError(
                f"{version} at {path} did not answer initialize within {timeout_s:g}s"
            ) from None
        except Exception as exc:
            failure = self._failure(exc, 0, stderr)
            raise BackendError(f"{version} at {path} does not start: {failure}") from None
        finally:
            await client.disconnect()
            await transport.close()
        return f"{version} at {path}, starts (answered initialize)"

    def scrub(self, text: str) -> str:
        """`text` in one line with any credential replaced (whatever the CLI echoes)."""
        text = one_line(text)
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def stream(self, prompt: str, info: StreamInfo) -> AsyncIterator[Chunk]:
        """Yield the text deltas of the agent's answer to `prompt`, filling `info`."""
        stderr = _StderrTail()
        options = self.options(stderr)
        transport = CliTransport(prompt=prompt, options=options)
        info.attempts = 1
        info.tool_deltas = info.thinking_deltas = 0
        # The body of `claude_agent_sdk.query()`, called directly: query() is an async
        # generator around this one, and closing an outer generator leaves the inner one
        # open (PEP 533), so the CLI would be stopped later by a finalizer, not here.
        messages = cast(
            AsyncGenerator[Message, None],
            InternalClient().process_query(prompt=prompt, options=options, transport=transport),
        )
        clock = IdleClock(self.timeout_s)
        count = 0
        result: ResultMessage | None = None
        try:
            while True:
                try:
                    message = await clock.read(messages)
                except StopAsyncIteration:
                    break
                if isinstance(message, StreamEvent):
                    event = message.event
                    kind = event.get("type")
                    if kind == "ping":
                        continue  # not content: a hung answer may still ping
                    clock.content()
                    if message.parent_tool_use_id is not None:
                        continue  # a subagent's stream; its text is not the answer
                    if kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        delta_type = delta.get("type")
                        if delta_type == "text_delta":
                            text = delta.get("text")
                            if isinstance(text, str) and text:
                                meta = {
                                    "type": "content_block_delta",
                                    "index": event.get("index"),
                                    "delta_type": "text_delta",
                                    "session_id": message.session_id,
                                    "model": info.model,
                                }
                                yield Chunk(text, count, meta, meta_bytes=sys.getsizeof(meta))
                                count += 1
                        elif delta_type == "input_json_delta":
                            info.tool_deltas += 1
                        elif delta_type in ("thinking_delta", "signature_delta"):
                            info.thinking_deltas += 1
                    elif kind == "message_start":
                        started = event.get("message") or {}
                        info.model = started.get("model") or info.model
                    elif kind == "message_delta":
                        stop = (event.get("delta") or {}).get("stop_reason")
                        info.stop_reason = stop or info.stop_reason
                    continue
                clock.content()  # any other message: the agent is working (tools, turns)
                if isinstance(message, ResultMessage):
                    result = message
                    break
                if isinstance(message, SystemMessage) and message.subtype == "api_retry":
                    # The CLI retrying its API request (up to its own limit): count it as
                    # Claude's backend counts the SDK's retries.
                    attempt = message.data.get("attempt")
                    if isinstance(attempt, int):
                        info.attempts = max(info.attempts, attempt + 1)
        except Exception as exc:
            raise self._failure(exc, count, stderr) from exc
        finally:
            clock.close()
            transport.answered = result is not None
            await messages.aclose()  # stops the CLI (CliTransport.close) on every path
            await transport.close()  # (nothing left to do unless the SDK skipped it)
        if result is None:
            raise StreamTruncated(
                self._with_stderr(
                    f"the CLI ended its output after {count} chunks without a result", stderr
                )
            )
        _read_result(info, result)
        if result.is_error:
            raise BackendError(self.scrub(f"error result after {count} chunks: {_why(result)}"))

    def _with_stderr(self, message: str, stderr: _StderrTail) -> str:
        last = stderr.last()
        return self.scrub(f"{message} (stderr: {last})" if last else message)

    def _failure(self, exc: Exception, count: int, stderr: _StderrTail) -> Exception:
        """The one-line error for `exc` raised after `count` chunks (the exception itself
        when it is not the CLI's fault: a bug propagates as it is)."""
        after = f"after {count} chunks"
        if isinstance(exc, ContentIdle):
            return BackendError(f"no message from the CLI for {self.timeout_s:g}s {after}")
        if isinstance(exc, CLINotFoundError):
            return BackendError(self.scrub(f"Claude Code CLI not found: {exc}"))
        if isinstance(exc, ProcessError):
            exited = f"the CLI exited with code {exc.exit_code} {after}"
            return BackendError(self._with_stderr(exited, stderr))
        if isinstance(exc, (CLIJSONDecodeError, MessageParseError)):
            return BackendError(self.scrub(f"malformed output from the CLI {after}: {exc}"[:400]))
        if isinstance(exc, CLIConnectionError):
            return BackendError(self._with_stderr(f"the CLI failed {after}: {exc}", stderr))
        if type(exc) is Exception:  # the SDK's plain errors: a control request timing out...
            return BackendError(self._with_stderr(f"{describe_error(exc)} {after}", stderr))
        return exc


async def _cli_version(path: str, timeout_s: float) -> str:
    """`Claude Code 2.1.332`, from the first line of `<path> --version` (the CLI's own
    words when they are not that shape); BackendError if it does not answer."""
    try:
        process = await asyncio.create_subprocess_exec(
            path,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise BackendError(f"cannot run {path}: {describe_error(exc)}") from None
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await process.communicate()
    except TimeoutError:
        raise BackendError(f"{path} --version printed nothing within {timeout_s:g}s") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    first = one_line(out.decode(errors="replace").partition("\n")[0])[:100]
    if process.returncode != 0 or not first:
        raise BackendError(f"{path} --version failed (exit code {process.returncode})")
    number = first.split()[0]
    return f"Claude Code {number}" if number[:1].isdigit() else first


def _read_result(info: StreamInfo, result: ResultMessage) -> None:
    """Usage, cost, turns and stop reason from the final result (usage covers every turn)."""
    usage = result.usage or {}
    if isinstance(usage.get("input_tokens"), int):
        info.input_tokens = usage["input_tokens"]
    if isinstance(usage.get("output_tokens"), int):
        info.output_tokens = usage["output_tokens"]
    info.cost_usd = result.total_cost_usd
    info.turns = result.num_turns
    info.stop_reason = result.stop_reason or info.stop_reason


def _why(result: ResultMessage) -> str:
    """What an error result says: its errors, else its text, else its subtype."""
    if result.errors:
        return f"{result.subtype}: " + "; ".join(map(str, result.errors))
    if result.result:
        return f"{result.subtype}: {result.result}"
    return result.subtype
