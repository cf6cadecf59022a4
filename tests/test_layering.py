"""The engine is a library: it must never import the UI or Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"
UI_PACKAGES = ("sluice.tui", "sluice.cli")


def test_engine_sources_import_no_ui() -> None:
    offenders = []
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "textual" or name.startswith(UI_PACKAGES):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_importing_engine_loads_no_ui_module() -> None:
    code = (
        "import sys, sluice.engine, sluice.engine.headless, sluice.engine.report; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'textual' "
        "or m.startswith(('sluice.tui', 'sluice.cli'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
