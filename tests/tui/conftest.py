"""Fixtures for the app's tests: a time-scaled demo config so sessions finish in a blink."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.engine.config import Config, load_config

FAST_TOML = """\
# a config the app tests start from; [x-extra] is a table the app does not own
[queue]
maxsize = 8 # buffer
batch_max = 1

[limits]
claude = 4
ollama = 6
demo = 3

[consumer]
kind = "sleep"
delay_ms = 20

[demo]
sessions = 6
tokens = 400
rate = 200
ttft_ms = 5
seed = 3

[x-extra]
owner = "someone else"
numbers = [1, 2, 3]
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A fresh config file with a table the app does not own."""
    path = tmp_path / "config.toml"
    path.write_text(FAST_TOML, encoding="utf-8")
    return path


@pytest.fixture
def fast_config(config_path: Path) -> Config:
    """The loaded fast config: streams that keep sessions busy for a couple of seconds."""
    return load_config(config_path)
