"""config.toml: load and validate every value, save tuned knobs atomically.

Every bad value is reported in one line naming the file, the key, the value and what is
allowed, e.g. `config.toml: [queue] maxsize = -3: must be an integer from 0 to 1024
(0 = unbounded)`. Unknown tables are refused like unknown keys; tables of the user's own go
under names starting with `x-`. Saving writes a temporary file beside the target (through a
symlink: beside the file it points to), fsyncs it and its folder, keeps the previous file as
`<name>.bak` and swaps the new one in with `os.replace`; keys and tables the app does not
own, and the comments around the keys it does, are kept. A file that changed on disk since
it was loaded is not overwritten unless asked. Secrets (API keys, tokens, credentials in
URLs) never live here: they come from the environment only, and error messages hide them.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import secrets
import shutil
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from sluice.engine.consumers import CONSUMER_KINDS
from sluice.engine.redact import redact, redact_url

__all__ = [
    "BACKENDS",
    "KNOB_SPECS",
    "ClaudeConfig",
    "Config",
    "ConfigChanged",
    "ConfigError",
    "ConsumerConfig",
    "DemoConfig",
    "FileStamp",
    "KnobSpec",
    "LimitsConfig",
    "OllamaConfig",
    "QueueConfig",
    "SaveResult",
    "load_config",
    "save_config",
    "url_problem",
]

BACKENDS = ("claude", "ollama", "demo")
DEFAULT_PATH = Path("config.toml")
USER_TABLE_PREFIX = "x-"  # `[x-anything]`: a table of the user's own, kept and not checked


class ConfigError(Exception):
    """A config file that cannot be used; the message is the one line the user sees, with
    any credentials inside URLs hidden."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigChanged(ConfigError):
    """The file changed on disk since it was loaded; saving would overwrite another writer."""


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A config file as it was read: its real path (symlinks resolved) and a digest of its
    bytes (None: there was no file). Saving compares it with the file on disk."""

    path: Path
    digest: str | None


@dataclass(frozen=True, slots=True)
class KnobSpec:
    """The allowed range of one number in the config and on its slider."""

    minimum: float
    maximum: float
    integer: bool = True
    note: str = ""

    def describe(self) -> str:
        """What is allowed, in words."""
        kind = "an integer" if self.integer else "a number"
        text = f"must be {kind} from {_plain(self.minimum)} to {_plain(self.maximum)}"
        return f"{text} ({self.note})" if self.note else text

    def check(self, value: object) -> bool:
        """True when `value` is of the right type and inside the range."""
        if isinstance(value, bool):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return self.minimum <= value <= self.maximum


def _plain(number: float) -> str:
    """1000000 as `1000000` and 0.1 as `0.1` (never `1e+06`)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


# One table of ranges for the config, the engine's setters and the app's sliders.
KNOB_SPECS: dict[str, KnobSpec] = {
    "maxsize": KnobSpec(0, 1024, note="0 = unbounded"),
    "batch_max": KnobSpec(1, 256),
    "limit": KnobSpec(1, 10_000),
    "delay_ms": KnobSpec(0, 10_000, integer=False),
    "rate": KnobSpec(0.1, 10_000, integer=False, note="tokens per second"),
    "sessions": KnobSpec(0, 10_000),
    "tokens": KnobSpec(1, 100_000),
    "ttft_ms": KnobSpec(0, 600_000, integer=False),
    "max_tokens": KnobSpec(1, 1_000_000),
    "timeout_s": KnobSpec(0.1, 3_600, integer=False),
    "consumer_timeout_s": KnobSpec(0, 3_600, integer=False, note="seconds; 0 = no limit"),
    "retries": KnobSpec(0, 20),
}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """`[queue]`: the per-session buffer."""

    maxsize: int = 16
    batch_max: int = 1


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """`[limits]`: concurrent sessions allowed per backend."""

    claude: int = 4
    ollama: int = 6
    demo: int = 4

    def as_dict(self) -> dict[str, int]:
        """Backend name to limit."""
        return {"claude": self.claude, "ollama": self.ollama, "demo": self.demo}


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """`[consumer]`: the built-in work done per batch."""

    kind: str = "sleep"
    delay_ms: float = 50.0
    path: str = "sluice.db"
    timeout_s: float = 30.0  # a consumer call running longer fails its session; 0 = no limit


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """`[demo]`: the simulated model and how many sessions run on it."""

    sessions: int = 12
    tokens: int = 200
    rate: float = 40.0
    ttft_ms: float = 300.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ClaudeConfig:
    """`[claude]`: Claude through the anthropic SDK (the key comes from the environment)."""

    model: str = "claude-sonnet-5-5"
    max_tokens: int = 1024
    system: str = ""
    base_url: str = ""
    timeout_s: float = 60.0
    retries: int = 2


@dataclass(frozen=True, slots=True)
class OllamaConfig:
    """`[ollama]`: a local or remote Ollama server."""

    host: str = ""
    model: str = "llama3.2"
    timeout_s: float = 60.0
    retries: int = 2


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config; `path` is where it came from (None: built-in defaults)."""

    queue: QueueConfig = field(default_factory=QueueConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    claude: ClaudeConfig = field(default_factory=ClaudeConfig)
    ollama: OllamaConfig = field(default_factory=OllamaConfig)
    path: Path | None = None
    # The file as loaded, so that saving can tell whether someone else changed it since.
    source: FileStamp | None = field(default=None, compare=False, repr=False)

    def value(self, name: str) -> Any:
        """The value of the setting `name` (a dotted config name such as `queue.maxsize`)."""
        table, _, key = name.partition(".")
        section = getattr(self, table, None)
        if section is None or not hasattr(section, key):
            raise KeyError(name)
        return getattr(section, key)

    def with_knobs(
        self,
        *,
        maxsize: int | None = None,
        batch_max: int | None = None,
        limits: Mapping[str, int] | None = None,
        delay_ms: float | None = None,
        rate: float | None = None,
        sessions: int | None = None,
    ) -> Config:
        """A copy with the given live knobs changed."""
        queue = replace(
            self.queue,
            maxsize=self.queue.maxsize if maxsize is None else maxsize,
            batch_max=self.queue.batch_max if batch_max is None else batch_max,
        )
        merged = self.limits.as_dict()
        merged.update({k: v for k, v in (limits or {}).items() if k in BACKENDS})
        consumer = replace(
            self.consumer, delay_ms=self.consumer.delay_ms if delay_ms is None else delay_ms
        )
        demo = replace(
            self.demo,
            rate=self.demo.rate if rate is None else rate,
            sessions=self.demo.sessions if sessions is None else sessions,
        )
        return replace(
            self, queue=queue, limits=LimitsConfig(**merged), consumer=consumer, demo=demo
        )

    def owned_values(self) -> dict[str, dict[str, Any]]:
        """Every key the app owns, by table, as it would be written to config.toml."""
        return {
            "queue": {"maxsize": self.queue.maxsize, "batch_max": self.queue.batch_max},
            "limits": self.limits.as_dict(),
            "consumer": {
                "kind": self.consumer.kind,
                "delay_ms": _plain_number(self.consumer.delay_ms),
                "path": self.consumer.path,
                "timeout_s": _plain_number(self.consumer.timeout_s),
            },
            "demo": {
                "sessions": self.demo.sessions,
                "tokens": self.demo.tokens,
                "rate": _plain_number(self.demo.rate),
                "ttft_ms": _plain_number(self.demo.ttft_ms),
                "seed": self.demo.seed,
            },
            "claude": {
                "model": self.claude.model,
                "max_tokens": self.claude.max_tokens,
                "system": self.claude.system,
                "base_url": self.claude.base_url,
                "timeout_s": _plain_number(self.claude.timeout_s),
                "retries": self.claude.retries,
            },
            "ollama": {
                "host": self.ollama.host,
                "model": self.ollama.model,
                "timeout_s": _plain_number(self.ollama.timeout_s),
                "retries": self.ollama.retries,
            },
        }


def _plain_number(value: float) -> int | float:
    """Write 50.0 as 50 so a saved file reads like the shipped one."""
    return int(value) if float(value).is_integer() else value


# -- loading --------------------------------------------------------------------------------

# Key names that would hold a secret, matched on the name in snake_case (`x-api-key`,
# `apiKey` -> `x_api_key`, `api_key`): api_key/apikey, auth_token, authorization, ...
# `token` counts only as a word's end, so `max_tokens` and `tokens` stay allowed.
_SECRET_NAME = re.compile(
    r"api_?key|access_?key|private_?key|secret|passw(?:or)?d|passphrase|bearer|cookie"
    r"|authori[sz]ation|credential|(?:^|_)(?:auth|pwd)(?:_|$)|token(?:_|$)"
)


def _is_secret_name(key: str) -> bool:
    """True for a key name meant to hold a secret (`api_key`, `x-api-key`, `auth_token`)."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    return bool(_SECRET_NAME.search(re.sub(r"[^a-z0-9]+", "_", name)))


URL_RULE = "must be a URL like http://127.0.0.1:11434: http or https, a host, a port 1-65535"


def url_problem(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why `value` is not a usable URL with one of `schemes`, or None when it is. A bare
    `host[:port]` counts as `http://host[:port]`. The reason never quotes the value (it may
    hold a key)."""
    if any(c.isspace() for c in value):
        return "contains spaces"
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        port = parts.port
    except ValueError:
        return "not a valid URL (bad host or port)"
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme!r} not allowed"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


class _Validator:
    """Checks one table's keys, collecting the values or raising the first error."""

    def __init__(self, label: str, table: str, data: Mapping[str, Any], allowed: tuple[str, ...]):
        self.label = label
        self.table = table
        self.data = data
        for key in data:  # secret-like names were refused for the whole file already
            if key not in allowed:
                raise ConfigError(
                    f"{label}: [{table}] {key}: unknown key; allowed keys: {', '.join(allowed)}"
                )

    def _fail(self, key: str, value: object, allowed: str) -> ConfigError:
        scalar = isinstance(value, (str, int, float)) and _tomlable(value)
        shown = tomli_w.dumps({"v": value})[4:].strip() if scalar else " ".join(repr(value).split())
        return ConfigError(f"{self.label}: [{self.table}] {key} = {shown}: {allowed}")

    def number(self, key: str, default: float, spec: KnobSpec) -> Any:
        value = self.data.get(key, default)
        if not spec.check(value):
            raise self._fail(key, value, spec.describe())
        return value if spec.integer else float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, value, "must be an integer")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            raise self._fail(key, value, f"must be one of {', '.join(map(repr, choices))}")
        return str(value)

    def text(self, key: str, default: str, *, nonempty: bool = False, url: bool = False) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, value, "must be a string")
        if nonempty and not value.strip():
            raise self._fail(key, value, "must be a non-empty string")
        if url and value:
            problem = url_problem(value)
            if problem is not None:
                raise self._fail(key, redact_url(value), f"{problem}; {URL_RULE}; or empty")
            if "@" in urlsplit(value if "://" in value else f"http://{value}").netloc:
                raise self._fail(
                    key,
                    redact_url(value),
                    "credentials in a URL are not read from the config file; leave it empty "
                    "and set the URL in the environment instead (ANTHROPIC_BASE_URL, OLLAMA_HOST)",
                )
        return value


def _tomlable(value: object) -> bool:
    try:
        tomli_w.dumps({"v": value})
    except (TypeError, ValueError):
        return False
    return True


def _refuse_secrets(data: Mapping[str, Any], label: str, where: str = "") -> None:
    """Refuse a secret-like key anywhere in the file, tables Sluice does not own included."""
    for key, value in data.items():
        if _is_secret_name(key):
            place = f"[{where}] {key}" if where else key
            raise ConfigError(
                f"{label}: {place}: secrets are not read from the config file; "
                "set the environment variable instead (ANTHROPIC_API_KEY for Claude)"
            )
        inner = f"{where}.{key}" if where else key
        if isinstance(value, Mapping):
            _refuse_secrets(value, label, inner)
        elif isinstance(value, list):  # an array of tables
            for item in value:
                if isinstance(item, Mapping):
                    _refuse_secrets(item, label, inner)


def _refuse_unknown_tables(data: Mapping[str, Any], label: str) -> None:
    """Refuse a top-level name that is neither Sluice's table nor `x-...` (the user's own)."""
    known = tuple(Config().owned_values())
    for name, value in data.items():
        if name in known or name.startswith(USER_TABLE_PREFIX):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean [{close[0]}]?" if close else f"Sluice's tables: {', '.join(known)}"
        if isinstance(value, Mapping):
            what = f"[{name}]: unknown table"
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            what = f"[[{name}]]: unknown table"
        else:
            what = f"{name}: unknown key"
        raise ConfigError(
            f"{label}: {what}; {hint} (tables of your own go under names starting with "
            f"{USER_TABLE_PREFIX}, e.g. [{USER_TABLE_PREFIX}notes])"
        )


def parse_config(data: Mapping[str, Any], label: str = "config.toml") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError on the first bad value."""

    def table(name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: [{name}] must be a table, got {type(value).__name__}")
        return value

    _refuse_secrets(data, label)
    _refuse_unknown_tables(data, label)
    specs = KNOB_SPECS
    v = _Validator(label, "queue", table("queue"), ("maxsize", "batch_max"))
    queue = QueueConfig(
        maxsize=v.number("maxsize", 16, specs["maxsize"]),
        batch_max=v.number("batch_max", 1, specs["batch_max"]),
    )
    v = _Validator(label, "limits", table("limits"), BACKENDS)
    defaults = LimitsConfig()
    limits = LimitsConfig(
        **{name: v.number(name, getattr(defaults, name), specs["limit"]) for name in BACKENDS}
    )
    v = _Validator(label, "consumer", table("consumer"), ("kind", "delay_ms", "path", "timeout_s"))
    consumer = ConsumerConfig(
        kind=v.choice("kind", "sleep", CONSUMER_KINDS),
        delay_ms=v.number("delay_ms", 50.0, specs["delay_ms"]),
        path=v.text("path", "sluice.db", nonempty=True),
        timeout_s=v.number("timeout_s", 30.0, specs["consumer_timeout_s"]),
    )
    v = _Validator(label, "demo", table("demo"), ("sessions", "tokens", "rate", "ttft_ms", "seed"))
    demo = DemoConfig(
        sessions=v.number("sessions", 12, specs["sessions"]),
        tokens=v.number("tokens", 200, specs["tokens"]),
        rate=v.number("rate", 40.0, specs["rate"]),
        ttft_ms=v.number("ttft_ms", 300.0, specs["ttft_ms"]),
        seed=v.integer("seed", 0),
    )
    claude_defaults = ClaudeConfig()
    v = _Validator(
        label,
        "claude",
        table("claude"),
        ("model", "max_tokens", "system", "base_url", "timeout_s", "retries"),
    )
    claude = ClaudeConfig(
        model=v.text("model", claude_defaults.model, nonempty=True),
        max_tokens=v.number("max_tokens", claude_defaults.max_tokens, specs["max_tokens"]),
        system=v.text("system", ""),
        base_url=v.text("base_url", "", url=True),
        timeout_s=v.number("timeout_s", claude_defaults.timeout_s, specs["timeout_s"]),
        retries=v.number("retries", claude_defaults.retries, specs["retries"]),
    )
    ollama_defaults = OllamaConfig()
    v = _Validator(label, "ollama", table("ollama"), ("host", "model", "timeout_s", "retries"))
    ollama = OllamaConfig(
        host=v.text("host", "", url=True),
        model=v.text("model", ollama_defaults.model, nonempty=True),
        timeout_s=v.number("timeout_s", ollama_defaults.timeout_s, specs["timeout_s"]),
        retries=v.number("retries", ollama_defaults.retries, specs["retries"]),
    )
    return Config(queue, limits, consumer, demo, claude, ollama)


def load_config(path: str | Path | None = None, *, must_exist: bool = False) -> Config:
    """Load and validate `path` (default ./config.toml).

    A missing default file means the built-in defaults (the same values config.toml ships
    with); a missing file the user named explicitly is an error.
    """
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_PATH
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit or must_exist:
            raise ConfigError(f"{label}: no such file") from None
        return replace(Config(), path=path, source=FileStamp(_real(path), None))
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    return replace(
        parse_config(data, label), path=path, source=FileStamp(_real(path), _digest(raw))
    )


def _real(path: Path) -> Path:
    """`path` with every symlink resolved: the file that is really read and written."""
    return Path(os.path.realpath(path))


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# -- saving ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What `save_config` did. `written` is the file really replaced (a symlink's target);
    `backup` the copy of the previous file, None when there was none (a new file);
    `source` the new file's stamp, for the next save of the same config."""

    path: Path
    written: Path
    backup: Path | None
    source: FileStamp

    @property
    def backup_note(self) -> str:
        """`previous kept as config.toml.bak`, or that there was no previous file."""
        if self.backup is None:
            return "a new file: there was no previous one to keep"
        return f"previous kept as {self.backup}"


def save_config(
    config: Config, path: str | Path | None = None, *, overwrite: bool = False
) -> SaveResult:
    """Write the app's keys to `path` atomically, keeping everything else in the file.

    Through a symlink the target is updated and the link kept. The previous file, if any, is
    kept as `<name>.bak` beside it. When `config` was loaded from this file and the file has
    changed since (another program or an editor wrote it), raise ConfigChanged and write
    nothing, unless `overwrite` is true.
    """
    path = Path(path) if path is not None else (config.path or DEFAULT_PATH)
    target = _real(path)
    owned = config.owned_values()
    try:
        old_raw: bytes | None = target.read_bytes()
    except FileNotFoundError:
        old_raw = None
    if old_raw is None:
        new_text = tomli_w.dumps(owned)
    else:
        try:
            old_text = old_raw.decode("utf-8")
            old_data = tomllib.loads(old_text)
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text, refusing to overwrite it") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML, refusing to overwrite it: {exc}") from None
        expected = _merge(old_data, owned)
        edited = _edit_in_place(old_text, owned)
        if edited is not None and _parse_or_none(edited) == expected:
            new_text = edited
        else:
            new_text = tomli_w.dumps(expected)
    if not overwrite:
        _refuse_if_changed(config.source, target, old_raw, path)
    backup = _atomic_write(target, new_text, keep_backup=old_raw is not None)
    if backup is not None and target == Path(os.path.abspath(path)):
        backup = path.with_name(backup.name)  # no link involved: name it as the user did
    stamp = FileStamp(target, _digest(new_text.encode("utf-8")))
    return SaveResult(path=path, written=target, backup=backup, source=stamp)


def _refuse_if_changed(
    source: FileStamp | None, target: Path, raw: bytes | None, path: Path
) -> None:
    """Raise ConfigChanged when the file on disk is not the one `source` recorded."""
    if source is None or source.path != target:
        return  # not loaded from this file: nothing to compare with
    digest = None if raw is None else _digest(raw)
    if digest == source.digest:
        return
    if digest is None:
        what = "was removed since it was loaded"
    elif source.digest is None:
        what = "was created by another program since Sluice started"
    else:
        what = "changed on disk since it was loaded (another program or an editor wrote it)"
    raise ConfigChanged(f"{path}: {what}; not saved, nothing overwritten")


def _parse_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _merge(old: Mapping[str, Any], owned: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in old.items()}
    for table, values in owned.items():
        target = merged.setdefault(table, {})
        if not isinstance(target, dict):
            target = merged[table] = {}
        target.update(values)
    return merged


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-]+)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def _edit_in_place(text: str, owned: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Change the owned keys' values line by line so comments and layout survive.

    Returns None when the file's shape is beyond simple edits; the caller then verifies the
    result by parsing it and falls back to a full rewrite if anything differs.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for table, values in owned.items():
        start = next(
            (i for i, line in enumerate(lines) if (m := _HEADER.match(line)) and m[1] == table),
            None,
        )
        if start is None:
            lines.append(f"\n[{table}]\n")
            lines.extend(f"{key} = {_toml_value(value)}\n" for key, value in values.items())
            continue
        end = next(
            (i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
        )
        for key, value in values.items():
            pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\n]*?)(\s*#[^\n]*)?(\n?)$")
            for i in range(start + 1, end):
                m = pattern.match(lines[i])
                if m:
                    lines[i] = f"{m[1]}{_toml_value(value)}{m[3] or ''}{m[4]}"
                    break
            else:
                # Insert after the table's last key line, before trailing blanks/comments.
                insert_at = end
                while insert_at - 1 > start and not lines[insert_at - 1].strip():
                    insert_at -= 1
                lines.insert(insert_at, f"{key} = {_toml_value(value)}\n")
                end += 1
    return "".join(lines)


def _toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": value})[4:].strip()


def _atomic_write(path: Path, text: str, *, keep_backup: bool) -> Path | None:
    """Write via a temp file in the same folder, fsync, keep a .bak, os.replace, fsync the
    folder. A new file gets the usual mode (0666 less the umask); a replaced one keeps its
    mode. Returns the backup's path, or None when none was kept."""
    folder = path.parent
    mode = stat.S_IMODE(path.stat().st_mode) if keep_backup else None
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never follow or reuse anything already there; 0o666: the umask applies.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    backup = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if keep_backup:
            backup = path.with_name(path.name + ".bak")
            backup.unlink(missing_ok=True)  # a stale link there must not be written through
            shutil.copy2(path, backup)
            _fsync_path(backup)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(folder)
    return backup


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by name; a file system that cannot is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
