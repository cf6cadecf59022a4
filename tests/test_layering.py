"""The layers import one way: cli -> bench -> tui -> engine. The engine is a library: it never
imports the UI, Textual, the command line or argparse; the app never imports the command
line; the benchmarks never import the command line. `sluice run` never loads Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# folder -> the imports its modules may not make (a name, or a package and its modules)
FORBIDDEN = {
    "engine": ("textual", "argparse", "sluice.tui", "sluice.cli", "sluice.bench"),
    "tui": ("sluice.cli", "sluice.bench"),
    "benchmarks": ("sluice.cli",),
}


def imported_names(path: Path) -> list[str]:
    """Every module `path` imports, at its top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_sources_import_only_downwards(folder: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in imported_names(path)
        if any(is_within(name, bad) for bad in FORBIDDEN[folder])
    ]
    assert offenders == []


def loaded_after(code: str) -> list[str]:
    """Modules of Textual, the app, the command line or the benchmarks loaded after `code`
    runs in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\nprint(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('textual', 'argparse') "
        "or m.startswith(('sluice.tui', 'sluice.cli', 'sluice.bench'))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(ast.literal_eval(result.stdout.splitlines()[-1]))


def test_importing_the_engine_loads_no_ui_and_no_command_line() -> None:
    code = "import sluice.engine, sluice.engine.headless, sluice.engine.report"
    assert loaded_after(code) == []


def test_sluice_run_loads_neither_textual_nor_the_benchmarks(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[consumer]\nkind = "null"\n[demo]\nsessions = 1\ntokens = 3\nrate = 1000\nttft_ms = 0\n'
    )
    code = (
        "from sluice.cli.main import main\n"
        f"assert main(['run', '--headless', '--config', {str(config)!r}]) == 0"
    )
    loaded = loaded_after(code)
    assert "sluice.cli.run" in loaded  # the probe does see what the command line loads
    assert [m for m in loaded if m.startswith(("textual", "sluice.tui", "sluice.bench"))] == []
