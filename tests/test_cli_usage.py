"""`sluice --version`, and a bad option under a subcommand shown with that subcommand's usage."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

import sluice
from sluice.cli.main import main


def test_version_comes_from_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sluice {version('sluice')}"
    assert sluice.__version__ == version("sluice")


def test_the_console_script_says_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"sluice {sluice.__version__}"


@pytest.mark.parametrize("command", ["run", "calibrate", "bench", "check"])
def test_a_bad_option_under_a_subcommand_shows_its_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: sluice {command} ")
    assert f"sluice {command}: error: unrecognized arguments: --bogus" in err
    assert "[COMMAND]" not in err  # not the top-level usage


def test_a_bad_option_before_the_subcommand_is_the_top_level_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--bogus", "run"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sluice [-h]")
    assert "sluice: error: unrecognized arguments: --bogus" in err
