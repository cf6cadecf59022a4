"""The command declaration: exit codes from the one signal table, bad input on one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.cli.command import ExitCode
from sluice.cli.main import main
from sluice.cli.signals import STOP_SIGNALS


def test_the_signal_exit_codes_come_from_the_one_table() -> None:
    assert {sig: ExitCode.stopped_by(sig) for sig in STOP_SIGNALS} == dict(STOP_SIGNALS)
    assert {ExitCode[sig.name] for sig in STOP_SIGNALS} == set(STOP_SIGNALS.values())
    assert (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE) == (0, 1, 2)


def test_bad_input_is_one_line_even_when_the_reason_has_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "broken_workload.py"
    workload.write_text('raise ValueError("first line\\nsecond line")\n')
    assert main(["monitor", f"{workload}:main"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    target = str(workload)
    assert err == f"sluice monitor: cannot import {target!r}: ValueError: first line second line\n"
