"""An installed Sluice adds exactly one top-level import name: `sluice`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_holds_only_the_sluice_package(tmp_path: Path) -> None:
    # No build isolation: the dev extra brings the setuptools the build needs, so the test
    # reaches no package index.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = tmp_path.glob("sluice-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        top_level = next(n for n in names if n.endswith("top_level.txt"))
        declared = archive.read(top_level).decode().split()
    assert tops == {"sluice"}
    assert declared == ["sluice"]
    for module in (
        "engine/engine.py",
        "tui/app.py",
        "tui/app.tcss",
        "cli/main.py",
        "cli/bench.py",
        "bench/runner.py",
    ):
        assert f"sluice/{module}" in names


def test_package_imports_by_its_one_name() -> None:
    code = "import sluice.engine, sluice.tui, sluice.cli.main; print(sluice.engine.Engine)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr


def test_textual_is_pinned_below_the_next_major_of_the_one_installed() -> None:
    """tui/cells.py relies on DataTable internals: the requirement must keep the app on the
    Textual major its tests ran with (pyproject.toml says why)."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    textual = next(Requirement(d) for d in deps["dependencies"] if d.startswith("textual"))
    major = int(version("textual").split(".")[0])
    assert version("textual") in textual.specifier
    assert f"{major + 1}.0" not in textual.specifier  # no next major
    assert f"{major - 1}.99" not in textual.specifier  # no older one either
