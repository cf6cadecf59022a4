"""config.toml: every key's bad value is refused in one line (file, key, value, what is
allowed) with exit code 2 through the real `sluice` entry point; unknown tables and
secret-like keys are refused; the shipped file equals the built-in defaults; saving is
atomic, keeps what it does not own, updates a symlink's target, leaves a .bak only when there
was a previous file, and never overwrites a file changed on disk since it was loaded."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from sluice.cli.main import main
from sluice.engine import config_save as config_module
from sluice.engine.config import (
    Config,
    ConfigChanged,
    ConfigError,
    load_config,
    parse_config,
)
from sluice.engine.config_save import save_config
from sluice.engine.settings import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).with_name("sluice")
# Should a bad value ever be accepted, the run that follows must be instant, not a demo run.
NO_RUN = ["--sessions", "0"]

# (table, key, bad value as written in TOML, a piece of the "allowed" text)
BAD_VALUES = [
    ("queue", "maxsize", "-3", "must be an integer from 0 to 1024 (0 = unbounded)"),
    ("queue", "maxsize", "2000", "from 0 to 1024"),
    ("queue", "maxsize", "1.5", "must be an integer"),
    ("queue", "maxsize", '"16"', "must be an integer"),
    ("queue", "maxsize", "true", "must be an integer"),
    ("queue", "batch_max", "0", "must be an integer from 1 to 256"),
    ("limits", "claude", "0", "must be an integer from 1 to 10000"),
    ("limits", "ollama", "-2", "must be an integer from 1 to 10000"),
    ("limits", "demo", "2.5", "must be an integer from 1 to 10000"),
    ("consumer", "kind", '"webhook"', "must be one of 'sleep', 'sqlite', 'stdout', 'null'"),
    ("consumer", "delay_ms", "-1", "must be a number from 0 to 10000"),
    ("consumer", "delay_ms", "nan", "must be a number from 0 to 10000"),
    ("consumer", "path", '""', "must be a non-empty string"),
    ("consumer", "path", "5", "must be a string"),
    ("consumer", "timeout_s", "-1", "must be a number from 0 to 3600 (seconds; 0 = no limit)"),
    ("consumer", "timeout_s", '"30s"', "must be a number from 0 to 3600"),
    ("demo", "sessions", "-1", "must be an integer from 0 to 10000"),
    ("demo", "tokens", "0", "must be an integer from 1 to 100000"),
    ("demo", "rate", "0", "must be a number from 0.1 to 10000 (tokens per second)"),
    ("demo", "rate", "inf", "must be a number from 0.1 to 10000"),
    ("demo", "ttft_ms", "-5", "must be a number from 0 to 600000"),
    ("demo", "seed", '"abc"', "must be an integer"),
    ("demo", "seed", "1.5", "must be an integer"),
    ("claude", "model", '""', "must be a non-empty string"),
    ("claude", "max_tokens", "0", "must be an integer from 1 to 1000000"),
    ("claude", "system", "[1, 2]", "must be a string"),
    ("claude", "base_url", '"not a url at all"', "must be a URL like"),
    ("claude", "base_url", '"http://[bad"', "not a valid URL (bad host or port); must be a URL"),
    ("claude", "base_url", '"ftp://example.com"', "scheme 'ftp' not allowed"),
    ("claude", "timeout_s", "0", "must be a number from 0.1 to 3600"),
    ("claude", "retries", "21", "must be an integer from 0 to 20"),
    ("ollama", "host", '"http://bad host"', "must be a URL like"),
    ("ollama", "host", '"http://[bad"', "not a valid URL (bad host or port); must be a URL"),
    ("ollama", "host", '"http://127.0.0.1:70000"', "port 1-65535"),
    ("ollama", "host", '"http://127.0.0.1:0"', "port 0"),
    ("ollama", "host", '"http://:11434"', "no host"),
    ("ollama", "model", "7", "must be a string"),
    ("ollama", "timeout_s", "-1", "must be a number from 0.1 to 3600"),
    ("ollama", "retries", "-1", "must be an integer from 0 to 20"),
    ("limits", "agent", "0", "must be an integer from 1 to 10000"),
    ("agent", "model", "3", "must be a string"),
    ("agent", "max_turns", "-1", "must be an integer from 0 to 1000 (0 = the CLI's own limit)"),
    ("agent", "allowed_tools", '"Read"', "must be a list of distinct non-empty strings"),
    ("agent", "allowed_tools", '["Read", "Read"]', "must be a list of distinct"),
    ("agent", "permission_mode", '"yolo"', "must be one of 'default', 'acceptEdits', 'plan'"),
    ("agent", "cwd", "[1]", "must be a string"),
    ("agent", "system", "1", "must be a string"),
    ("agent", "cli_path", "false", "must be a string"),
    ("agent", "timeout_s", "0", "must be a number from 0.1 to 3600"),
    ("cluster", "redis_url", '"http://127.0.0.1:6379"', "scheme 'http' not allowed"),
    ("cluster", "redis_url", '"127.0.0.1:6379"', "no scheme (it must start with redis://"),
    ("cluster", "name", '""', "must be a non-empty string"),
    ("cluster", "node", "5", "must be a string"),
    ("cluster", "shared", '["gpt"]', "must be a list of distinct names from 'claude'"),
    ("cluster", "shared", '"claude"', "must be a list of distinct names"),
    ("cluster", "lease_s", "0", "must be a number from 1 to 600"),
    ("autotune", "claude", "1", "must be true or false"),
    ("autotune", "ollama", '"yes"', "must be true or false"),
    ("autotune", "maxsize", "0", "must be true or false"),
    ("autotune", "window_s", "0", "must be a number from 0.05 to 600"),
    ("autotune", "backoff", "1", "must be a number from 0.5 to 0.99"),
    ("autotune", "claude_min", "0", "must be an integer from 1 to 10000"),
    ("autotune", "claude_max", "2.5", "must be an integer from 1 to 10000"),
    ("autotune", "ollama_min", "-1", "must be an integer from 1 to 10000"),
    ("autotune", "ollama_max", "true", "must be an integer"),
    ("autotune", "headroom", "-1", "must be a number from 0 to 100"),
    ("autotune", "tolerance", "nan", "must be a number from 0 to 10"),
    ("autotune", "baseline_s", "0.5", "must be a number from 1 to 86400"),
    ("autotune", "probe_limit", "0", "must be an integer from 1 to 10000"),
    ("autotune", "target_buffer_ms", "0", "must be a number from 1 to 600000"),
    ("autotune", "memory_ceiling_mb", "-1", "must be a number from 0 to 1000000 (MiB; 0 ="),
    ("autotune", "hysteresis", "1", "must be a number from 0 to 0.9"),
]


def test_every_key_of_every_table_has_a_bad_value_case() -> None:
    covered = {(table, key) for table, key, _, _ in BAD_VALUES}
    owned = {(t, k) for t, keys in Config().owned_values().items() for k in keys}
    assert covered == owned


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("table", "key", "value", "allowed"), BAD_VALUES)
def test_a_bad_value_exits_2_with_one_line_naming_file_key_value_and_what_is_allowed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
    key: str,
    value: str,
    allowed: str,
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"# a comment\n[{table}]\n{key} = {value}\n")
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert str(path) in err
    assert f"[{table}] {key} = {value}" in err
    assert allowed in err
    assert "Traceback" not in err


def test_the_config_option_also_works_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[queue]\nmaxsize = -3\n")
    code, _, err = run_cli(["run", "--headless", "--config", str(path), *NO_RUN], capsys)
    assert code == 2
    assert err == (
        f"sluice: {path}: [queue] maxsize = -3: must be an integer from 0 to 1024 (0 = unbounded)\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[queue\nmaxsize = 1\n", "not valid TOML"),
        (
            "[queue]\nmaxsixe = 4\n",
            "[queue] maxsixe: unknown key; allowed keys: maxsize, batch_max",
        ),
        ("queue = 5\n", "[queue] must be a table, got int"),
        (
            "[limits]\nopenai = 3\n",
            "[limits] openai: unknown key; allowed keys: claude, ollama, demo, agent",
        ),
    ],
)
def test_broken_files_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    code, _, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and expected in err, err


@pytest.mark.parametrize(
    "text",
    [
        '[claude]\napi_key = "fake-SECRETVALUE"\n',
        '[claude]\nANTHROPIC_API_KEY = "fake-SECRETVALUE"\n',
        '[ollama]\npassword = "SECRETVALUE"\n',
        'api_key = "fake-SECRETVALUE"\n',
        '[anthropic]\napi_key = "fake-SECRETVALUE"\n',
        '[my_plugin.auth]\nclient_secret = "SECRETVALUE"\n',
        '[[hooks]]\nname = "a"\n[[hooks]]\npassword = "SECRETVALUE"\n',
    ],
)
def test_secret_like_keys_are_refused_without_echoing_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2
    assert "environment" in err and err.count("\n") == 1
    assert "SECRETVALUE" not in err + out


# Names a secret hides behind; each must be refused like `api_key`, in Sluice's tables and in
# the user's own. (`max_tokens` and `tokens` are real keys and stay allowed.)
SECRET_NAMES = [
    "x-api-key", "api-key", "apiKey", "X_API_KEY", "auth_token", "authToken", "access_token",
    "authorization", "Authorization", "credentials", "credential", "token", "secret",
    "client_secret", "password", "passwd", "bearer", "bearer_token", "auth", "private_key",
    "session-token", "aws_access_key_id",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
@pytest.mark.parametrize("table", ["claude", "ollama", "x-mine"])
def test_every_secret_like_key_name_is_refused_naming_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, name: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[{table}]\n"{name}" = "SECRETVALUE"\n')
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2
    assert f"[{table}] {name}: secrets are not read from the config file" in err
    assert err.count("\n") == 1 and "SECRETVALUE" not in err + out
    # Sluice's own tables name its variable; a table of the user's own does not.
    assert ("ANTHROPIC_API_KEY" in err) == (not table.startswith("x-")), err


def test_ordinary_key_names_are_not_mistaken_for_secrets() -> None:
    data = {"claude": {"max_tokens": 8}, "demo": {"tokens": 9}, "x-mine": {"keys": 1, "tok": 2}}
    cfg = parse_config(data)
    assert (cfg["claude.max_tokens"], cfg["demo.tokens"]) == (8, 9)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("base_url", "http://user:SECRETVALUE@proxy.example:8080"),
        ("base_url", "https://SECRETVALUE@api.example.com/v1"),
        ("base_url", "http://user:SECRETVALUE@[bad"),
        ("host", "user:SECRETVALUE@127.0.0.1:11434"),
        ("host", "http://us:SECRET VALUE@h"),
    ],
)
def test_credentials_inside_a_config_url_are_refused_and_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    table = "claude" if key == "base_url" else "ollama"
    path = tmp_path / "c.toml"
    path.write_text(f'[{table}]\n{key} = "{value}"\n')
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"[{table}] {key} = " in err and "***@" in err
    assert "SECRET" not in err + out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[queu]\nmaxsize = 4\n", "[queu]: unknown table; did you mean [queue]?"),
        ("[Limits]\ndemo = 4\n", "[Limits]: unknown table; did you mean [limits]?"),
        ("[olama]\nhost = ''\n", "[olama]: unknown table; did you mean [ollama]?"),
        ("[zzz]\na = 1\n", "[zzz]: unknown table; Sluice's tables: queue, limits, consumer"),
        ("maxsize = 4\n", "maxsize: unknown key; "),
        ("[[hooks]]\nname = 'a'\n", "[[hooks]]: unknown table"),
    ],
)
def test_an_unknown_table_exits_2_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and expected in err, err
    assert "tables of your own go under names starting with x-" in err


def test_tables_of_your_own_are_allowed_under_the_x_prefix() -> None:
    data = {
        "queue": {"maxsize": 3},
        "x-notes": {"anything": [1, 2], "nested": {"deep": True}},
        "x-hooks": [{"name": "a"}, {"name": "b"}],
        "x-version": 2,
    }
    assert parse_config(data)["queue.maxsize"] == 3


def test_a_missing_explicit_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.toml"
    code, _, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert code == 2
    assert err == f"sluice: {path}: no such file\n"


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[queue]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_a_missing_default_file_means_the_built_in_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config()
    assert replace(loaded, path=None) == Config()


def test_the_shipped_config_toml_is_exactly_the_built_in_defaults() -> None:
    shipped = ROOT / "config.toml"
    loaded = load_config(shipped)
    assert replace(loaded, path=None) == Config()
    # Every key the app owns is written out (and so documented) in the shipped file.
    data = tomllib.loads(shipped.read_text())
    for table, values in Config().owned_values().items():
        assert set(data[table]) == set(values), table


def test_every_key_in_the_shipped_file_is_commented() -> None:
    # Each key, or the block of keys it belongs to, has a comment right above it.
    lines = (ROOT / "config.toml").read_text().splitlines()

    def is_key(line: str) -> bool:
        return "=" in line and not line.lstrip().startswith("#")

    for i, line in enumerate(lines):
        if is_key(line):
            above = i - 1
            while above >= 0 and is_key(lines[above]):
                above -= 1
            assert lines[above].lstrip().startswith("#"), f"uncommented key: {line}"


def test_a_partial_file_takes_defaults_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[queue]\nmaxsize = 0\n[demo]\nrate = 12.5\n")
    loaded = load_config(path)
    assert loaded["queue.maxsize"] == 0 and loaded["demo.rate"] == 12.5
    assert all(loaded[f"limits.{b}"] == Config()[f"limits.{b}"] for b in BACKENDS)
    assert loaded.path == path
    assert isinstance(loaded["consumer.delay_ms"], float)


def test_parse_config_accepts_every_boundary_value() -> None:
    data = {
        "queue": {"maxsize": 1024, "batch_max": 256},
        "limits": {"claude": 1, "ollama": 10_000, "demo": 1},
        "consumer": {"kind": "null", "delay_ms": 0, "path": "x.db"},
        "demo": {"sessions": 0, "tokens": 100_000, "rate": 0.1, "ttft_ms": 0, "seed": -7},
        "claude": {"base_url": "https://api.example.com/v1", "retries": 0, "timeout_s": 3600},
        "ollama": {"host": "http://127.0.0.1:11434", "retries": 20, "timeout_s": 0.1},
    }
    cfg = parse_config(data)
    assert cfg["queue.maxsize"] == 1024 and cfg["demo.rate"] == 0.1 and cfg["demo.seed"] == -7
    assert cfg["ollama.host"] == "http://127.0.0.1:11434"


@pytest.mark.parametrize("backend", ["claude", "ollama"])
def test_an_auto_limits_floor_above_its_ceiling_exits_2_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[autotune]\n{backend}_min = 50\n{backend}_max = 10\n")
    code, out, err = run_cli(["--config", str(path), "run", "--headless", *NO_RUN], capsys)
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert f"autotune.{backend}_min = 50 is above autotune.{backend}_max = 10" in err
    assert "the floor must be at most the ceiling" in err and str(path) in err
    equal = parse_config({"autotune": {f"{backend}_min": 10, f"{backend}_max": 10}})
    assert equal[f"autotune.{backend}_min"] == 10
    with pytest.raises(ValueError, match="is above"):
        Config().with_values({f"autotune.{backend}_min": 65})  # above the default 64


# -- saving ---------------------------------------------------------------------------------

USER_FILE = """\
# my own notes at the top
x-schema = 2  # a root key Sluice does not own

[queue]
# how deep each buffer is
maxsize = 16 # inline note
batch_max = 1

[limits]
claude = 4
ollama = 6
demo = 4

[x-my_tool]
# a table Sluice does not own
answer = 42
names = ["a", "b"]

[demo]
sessions = 12
rate = 40
"""


def test_save_keeps_comments_and_foreign_tables_leaves_a_backup_and_reloads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    tuned = load_config(path).with_values(
        {
            "queue.maxsize": 64,
            "queue.batch_max": 8,
            "limits.demo": 9,
            "consumer.delay_ms": 12.5,
            "demo.rate": 250,
            "demo.sessions": 30,
        }
    )
    result = save_config(tuned)
    assert (result.path, result.backup) == (path, path.with_name("config.toml.bak"))
    text = path.read_text()
    for kept in ("# my own notes at the top", "# how deep each buffer is", "# inline note",
                 "# a table Sluice does not own"):  # fmt: skip
        assert kept in text
    data = tomllib.loads(text)
    assert data["x-my_tool"] == {"answer": 42, "names": ["a", "b"]}
    assert data["x-schema"] == 2
    assert data["queue"] == {"maxsize": 64, "batch_max": 8}
    assert (path.with_name("config.toml.bak")).read_text() == USER_FILE
    again = load_config(path)
    assert replace(again, path=None) == replace(tuned, path=None)
    assert (again["queue.maxsize"], again["limits.demo"], again["consumer.delay_ms"]) == (
        64,
        9,
        12.5,
    )
    assert (again["demo.rate"], again["demo.sessions"]) == (250, 30)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_saving_the_shipped_defaults_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = (ROOT / "config.toml").read_text()
    path.write_text(original)
    save_config(load_config(path))
    assert path.read_text() == original


def test_save_to_a_new_file_writes_every_owned_key_and_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "fresh.toml"
    result = save_config(Config().with_values({"queue.maxsize": 3}), path)
    assert not path.with_name("fresh.toml.bak").exists()
    assert result.backup is None and ".bak" not in result.backup_note
    assert result.backup_note == "a new file: there was no previous one to keep"
    assert load_config(path)["queue.maxsize"] == 3
    assert replace(load_config(path), path=None) == Config().with_values({"queue.maxsize": 3})


def test_save_is_atomic_when_the_final_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)

    def broken_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(config_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_config(load_config(path).with_values({"queue.maxsize": 99}))
    assert path.read_text() == USER_FILE  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "config.toml.bak"]


def test_save_refuses_to_overwrite_a_file_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("this is [not toml\n")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        save_config(Config(), path)
    assert path.read_text() == "this is [not toml\n"


def test_save_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    for mode in (0o600, 0o640, 0o664):
        path.chmod(mode)
        save_config(load_config(path).with_values({"queue.maxsize": 5}))
        assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.fixture
def umask_027() -> object:
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_027")
def test_a_new_config_file_gets_the_usual_mode_from_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save_config(load_config())  # no config.toml yet: the built-in defaults, saved
    assert stat.S_IMODE((tmp_path / "config.toml").stat().st_mode) == 0o640  # 0666 & ~027
    assert replace(load_config(), path=None) == Config()
    assert not (tmp_path / "config.toml.bak").exists()


def test_saving_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "sluice.toml"
    target.write_text(USER_FILE)
    target.chmod(0o640)
    link = tmp_path / "config.toml"
    link.symlink_to(target)
    result = save_config(load_config(link).with_values({"queue.maxsize": 77}))
    assert link.is_symlink() and link.readlink() == target
    assert load_config(target)["queue.maxsize"] == 77 and "# inline note" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert (result.path, result.written) == (link, target)
    assert result.backup == dotfiles / "sluice.toml.bak"
    assert result.backup.read_text() == USER_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "dotfiles"]
    assert sorted(p.name for p in dotfiles.iterdir()) == ["sluice.toml", "sluice.toml.bak"]


def test_save_fsyncs_the_file_the_backup_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    synced: list[tuple[int, int]] = []  # (inode, mode) of every fsync'd descriptor
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_ino, info.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(config_module.os, "fsync", recording_fsync)
    save_config(load_config(path).with_values({"queue.maxsize": 5}))
    inodes = {ino for ino, _ in synced}
    assert path.stat().st_ino in inodes  # the new file, before it replaced the old one
    assert path.with_name("config.toml.bak").stat().st_ino in inodes
    assert tmp_path.stat().st_ino in inodes and any(stat.S_ISDIR(m) for _, m in synced)


OTHER_WRITER = USER_FILE.replace("maxsize = 16 # inline note", "maxsize = 99 # set by hand")


def test_a_file_changed_on_disk_since_it_was_loaded_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    tuned = load_config(path).with_values({"queue.maxsize": 5, "queue.batch_max": 3})
    path.write_text(OTHER_WRITER)  # an editor or a second Sluice saves meanwhile
    with pytest.raises(ConfigChanged, match="changed on disk since it was loaded") as caught:
        save_config(tuned)
    assert "not saved, nothing overwritten" in str(caught.value)
    assert path.read_text() == OTHER_WRITER
    assert not path.with_name("config.toml.bak").exists()
    # The way through: overwrite on purpose. The other writer's comment survives the edit.
    result = save_config(tuned, overwrite=True)
    assert load_config(path)["queue.maxsize"] == 5 and "# set by hand" in path.read_text()
    assert result.backup is not None and result.backup.read_text() == OTHER_WRITER


def test_the_stamp_of_a_save_lets_the_same_config_save_again(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    loaded = load_config(path)
    first = save_config(loaded.with_values({"queue.maxsize": 5}))
    with pytest.raises(ConfigChanged):  # the loaded stamp is of the file before the save
        save_config(loaded.with_values({"queue.maxsize": 6}))
    again = replace(loaded.with_values({"queue.maxsize": 6}), source=first.source)
    save_config(again)
    assert load_config(path)["queue.maxsize"] == 6
    assert (
        first.source.digest
        == hashlib.sha256(path.with_name("config.toml.bak").read_bytes()).hexdigest()
    )


def test_two_saves_of_one_file_at_once_cannot_both_pass_the_change_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes sharing one config file save at the same moment: the second one must see
    the first one's file (ConfigChanged), not write over it and also answer "saved"."""
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    first, second = load_config(path), load_config(path)  # the same stamp
    write = config_module._atomic_write
    other: list[BaseException | str] = []

    def racing_write(target: Path, text: str, *, keep_backup: bool) -> Path | None:
        # While the first save writes, the second one runs in another thread.
        def second_save() -> None:
            try:
                save_config(second.with_values({"queue.maxsize": 52}))
                other.append("saved")
            except BaseException as exc:
                other.append(exc)

        thread = threading.Thread(target=second_save)
        monkeypatch.setattr(config_module, "_atomic_write", write)  # once
        thread.start()
        thread.join(0.3)  # with the lock it waits for this write to finish
        backup = write(target, text, keep_backup=keep_backup)
        racing_write.thread = thread  # type: ignore[attr-defined]
        return backup

    monkeypatch.setattr(config_module, "_atomic_write", racing_write)
    save_config(first.with_values({"queue.maxsize": 51}))
    racing_write.thread.join(5)  # type: ignore[attr-defined]
    assert len(other) == 1 and isinstance(other[0], ConfigChanged), other
    assert load_config(path)["queue.maxsize"] == 51


def test_a_save_waits_a_bounded_time_for_another_writer_then_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    monkeypatch.setattr(config_module, "LOCK_WAIT_S", 0.1)
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    loaded = load_config(path)
    holder = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process mid-save
        with pytest.raises(ConfigError, match="another process has been saving"):
            save_config(loaded.with_values({"queue.maxsize": 5}))
        assert path.read_text() == USER_FILE
    finally:
        os.close(holder)
    save_config(loaded.with_values({"queue.maxsize": 5}))
    assert load_config(path)["queue.maxsize"] == 5


def test_a_file_created_or_removed_since_loading_is_a_change_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = load_config()  # no file: the built-in defaults
    Path("config.toml").write_text(OTHER_WRITER)
    with pytest.raises(ConfigChanged, match="was created by another program"):
        save_config(defaults)
    assert Path("config.toml").read_text() == OTHER_WRITER
    loaded = load_config()
    Path("config.toml").unlink()
    with pytest.raises(ConfigChanged, match="was removed since it was loaded"):
        save_config(loaded)
    assert not Path("config.toml").exists()


def test_a_config_built_in_code_saves_without_a_change_check(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    result = save_config(Config().with_values({"queue.maxsize": 2}), path)
    assert load_config(path)["queue.maxsize"] == 2 and result.backup is not None


def test_the_real_sluice_command_exits_2_on_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[demo]\nrate = -4\n")
    command = [str(SLUICE)] if SLUICE.exists() else [sys.executable, "-m", "sluice"]
    result = subprocess.run(
        [*command, "--config", str(path), "run", "--headless", "--json", *NO_RUN],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    allowed = "must be a number from 0.1 to 10000 (tokens per second)"
    assert result.stderr == f"sluice: {path}: [demo] rate = -4: {allowed}\n"


@pytest.mark.parametrize(
    "text",
    ['[queue]\n"ev\\u001b[31mil" = 1\n', '["x\\u001b[2Jy"]\nk = 1\n', '"top\\u0007" = 1\n'],
)
def test_control_characters_in_names_are_escaped_in_the_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert all(c.isprintable() for c in message), message
    assert "\\x1b" in message or "\\x07" in message
