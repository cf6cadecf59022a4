"""`sluice check --backend agent`: the CLI's version and whether it starts (answers the SDK's
`initialize`), one line, never the key; the extra or the CLI missing is a FAILED line naming
the fix; no CLI is left running."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

from sluice.cli.command import CommandIO
from sluice.cli.main import build_parser, run_command
from sluice.engine.config import parse_config
from tests.backends.agent_helpers import live_clis
from tests.backends.helpers import TEST_KEY


def check_agent(cli: str, env: dict[str, str], **agent: object) -> tuple[int, list[str], str]:
    """`sluice check --backend agent` in-process with `[agent] cli_path = cli`."""
    config = parse_config({"agent": {"cli_path": cli, **agent}})
    args = build_parser().parse_args(["check", "--backend", "agent"])
    out, err = io.StringIO(), io.StringIO()
    code = run_command(args, CommandIO(out, err, env), config)
    return code, out.getvalue().splitlines(), err.getvalue()


def test_reports_the_version_and_that_the_cli_starts(fake_cli: Path) -> None:
    code, lines, err = check_agent(str(fake_cli), {"ANTHROPIC_API_KEY": TEST_KEY})
    assert (code, err) == (0, "")
    assert lines == [
        f"agent: ok: Claude Code 2.1.332-fake at {fake_cli}, starts (answered initialize), key set"
    ]
    assert not live_clis()


def test_without_a_key_the_cli_is_still_probed_and_the_line_says_what_is_missing(
    fake_cli: Path,
) -> None:
    code, lines, _ = check_agent(str(fake_cli), {})
    assert code == 1
    assert lines == [
        f"agent: FAILED: Claude Code 2.1.332-fake at {fake_cli}, starts (answered "
        "initialize), but ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN is not set"
    ]


def test_a_cli_that_never_answers_is_reported_and_stopped(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "silent")
    code, lines, _ = check_agent(str(fake_cli), {"ANTHROPIC_API_KEY": TEST_KEY}, timeout_s=0.3)
    assert code == 1
    assert lines == [
        f"agent: FAILED: Claude Code 2.1.332-fake at {fake_cli} did not answer initialize "
        "within 0.3s"
    ]
    assert not live_clis()


def test_a_missing_cli_is_a_failed_line_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "claude"
    code, lines, _ = check_agent(str(missing), {"ANTHROPIC_API_KEY": TEST_KEY})
    assert code == 1
    assert lines == [
        f"agent: FAILED: [agent] cli_path = '{missing}': no such file; give the Claude Code "
        "CLI's path"
    ]


def test_without_the_extra_the_line_names_the_pip_command(
    fake_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "claude_agent_sdk" else real(name, *a),
    )
    code, lines, _ = check_agent(str(fake_cli), {"ANTHROPIC_API_KEY": TEST_KEY})
    assert code == 1
    assert lines == [
        "agent: FAILED: the agent backend needs the Claude Agent SDK: pip install 'sluice[agent]'"
    ]
