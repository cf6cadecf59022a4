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
