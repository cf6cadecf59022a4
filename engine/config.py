"""config.toml: load and validate every value against the settings registry.

Every bad value is reported in one line naming the file, the key, the value and what is
allowed, e.g. `config.toml: [queue] maxsize = -3: must be an integer from 0 to 1024
(0 = unbounded)`. Unknown tables are refused like unknown keys; tables of the user's own go
under names starting with `x-`. Secrets (API keys, tokens, credentials in URLs) never live
here: they come from the environment only, and error messages hide them. Which keys exist,
their types, defaults and ranges come from engine/settings.py alone; saving is in
engine/config_save.py.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, overload

import tomli_w

from sluice.engine.redact import redact, redact_url
from sluice.engine.settings import (
    SETTINGS,
    Setting,
    SettingError,
    lookup,
    tables,
    unordered_pair,
)

__all__ = [
    "DEFAULT_PATH",
    "USER_TABLE_PREFIX",
    "Config",
    "ConfigChanged",
    "ConfigError",
    "FileStamp",
    "load_config",
    "parse_config",
]

T = TypeVar("T")

DEFAULT_PATH = Path("config.toml")
USER_TABLE_PREFIX = "x-"  # `[x-anything]`: a table of the user's own, kept and not checked


class ConfigError(Exception):
    """A config file that cannot be used; the message is the one line the user sees, with
    any credentials inside URLs hidden."""

    def __init__(self, message: str) -> None:
        super().__init__(_printable(redact(message)))


def _printable(text: str) -> str:
    """`text` with control characters escaped (`\\x1b`): a key or table name from a file must
    not move the cursor or recolour the terminal it is printed on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigChanged(ConfigError):
    """The file changed on disk since it was loaded; saving would overwrite another writer."""


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A config file as it was read: its real path (symlinks resolved) and a digest of its
    bytes (None: there was no file). Saving compares it with the file on disk."""

    path: Path
    digest: str | None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config: a value for every registered setting (the registry's
    default where the file is silent). `path` is where it came from (None: built-in defaults), and
    `source` what the file held when read, so a save can tell whether it changed since.

    Read a value with `config[SETTING]` (typed) or `config["queue.maxsize"]`.
    """

    values: Mapping[str, Any] = field(default_factory=lambda: _defaults())
    path: Path | None = None
    source: FileStamp | None = field(default=None, compare=False)

    @overload
    def __getitem__(self, key: Setting[T]) -> T: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: Setting[Any] | str) -> Any:
        """The value of a setting (its default when the file did not set it)."""
        setting = key if isinstance(key, Setting) else _known(key)
        return self.values.get(setting.name, setting.default)

    def with_values(self, values: Mapping[str, object]) -> Config:
        """A copy with these settings changed; ValueError naming the key when one is not
        allowed (nothing is changed then)."""
        merged = dict(self.values)
        for name, value in values.items():
            try:
                setting = lookup(name)
                merged[name] = setting.coerce(value)
            except SettingError as exc:
                raise ValueError(f"{name} = {value!r}: {exc}") from None
        if (problem := unordered_pair(merged)) is not None:
            raise ValueError(problem)
        return replace(self, values=MappingProxyType(merged))

    def owned_values(self) -> dict[str, dict[str, Any]]:
        """Every key Sluice owns, by table, as it would be written to config.toml."""
        owned: dict[str, dict[str, Any]] = {}
        for setting in SETTINGS.values():
            owned.setdefault(setting.table, {})[setting.key] = setting.to_toml(self[setting])
        return owned


def _defaults() -> Mapping[str, Any]:
    """Every registered setting at its default (what a config without a file holds)."""
    return MappingProxyType({name: setting.default for name, setting in SETTINGS.items()})


def _known(name: str) -> Setting[Any]:
    """The registered setting `name`; KeyError (with the closest names) when unknown."""
    try:
        return lookup(name)
    except SettingError as exc:
        raise KeyError(str(exc)) from None


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


def _shown(value: object, setting: Setting[Any] | None = None) -> str:
    """A value as the error line quotes it: TOML syntax when it has one, URLs redacted."""
    if setting is not None and setting.url and isinstance(value, str):
        value = redact_url(value)
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    try:
        if isinstance(value, (str, int, float)):
            return tomli_w.dumps({"v": value})[4:].strip()
    except (TypeError, ValueError):
        pass
    return " ".join(repr(value).split())


def _refuse_secrets(data: Mapping[str, Any], label: str, where: str = "") -> None:
    """Refuse a secret-like key anywhere in the file, tables Sluice does not own included."""
    for key, value in data.items():
        if _is_secret_name(key):
            place = f"[{where}] {key}" if where else key
            hint = (
                "keep it in an environment variable of your own"
                if where.startswith(USER_TABLE_PREFIX)
                else "set the environment variable instead (ANTHROPIC_API_KEY for Claude)"
            )
            raise ConfigError(
                f"{label}: {place}: secrets are not read from the config file; {hint}"
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
    known = tables()
    for name, value in data.items():
        if name in known or name.startswith(USER_TABLE_PREFIX):
            if name in known and not isinstance(value, Mapping):
                raise ConfigError(f"{label}: [{name}] must be a table, got {type(value).__name__}")
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
    _refuse_secrets(data, label)
    _refuse_unknown_tables(data, label)
    values = dict(_defaults())
    for table in tables():
        keys = data.get(table, {})
        allowed = [s.key for s in SETTINGS.values() if s.table == table]
        for key, value in keys.items():
            setting = SETTINGS.get(f"{table}.{key}")
            if setting is None:
                raise ConfigError(
                    f"{label}: [{table}] {key}: unknown key; allowed keys: {', '.join(allowed)}"
                )
            try:
                values[setting.name] = setting.coerce(value)
            except SettingError as exc:
                raise ConfigError(
                    f"{label}: [{table}] {key} = {_shown(value, setting)}: {exc}"
                ) from None
    if (problem := unordered_pair(values)) is not None:
        raise ConfigError(f"{label}: {problem}")
    return Config(MappingProxyType(values))


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
        return Config(path=path, source=FileStamp(real_path(path), None))
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
        parse_config(data, label), path=path, source=FileStamp(real_path(path), digest(raw))
    )


def real_path(path: Path) -> Path:
    """`path` with every symlink resolved: the file that is really read and written."""
    return Path(os.path.realpath(path))


def digest(raw: bytes) -> str:
    """The digest a FileStamp records of a file's bytes."""
    return hashlib.sha256(raw).hexdigest()
