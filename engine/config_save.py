"""Saving config.toml: the app's keys written atomically, everything else in the file kept.

A temporary file beside the target (through a symlink: beside the file it points to) is
written and fsynced, the previous file is kept as `<name>.bak`, the new one swapped in with
`os.replace` and the folder fsynced. Keys and tables Sluice does not own, and the comments
around the keys it does, are kept. A file that changed on disk since it was loaded is not
overwritten unless asked; the check and the write hold an advisory lock on the folder, so
two processes saving one file at once cannot both pass it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from sluice.engine.config import (
    DEFAULT_PATH,
    Config,
    ConfigChanged,
    ConfigError,
    FileStamp,
    digest,
    real_path,
)

__all__ = ["LOCK_WAIT_S", "SaveResult", "save_config"]

LOCK_WAIT_S = 2.0  # how long a save waits for another one in the same folder


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
    target = real_path(path)
    with _folder_lock(target.parent, path):
        return _save_locked(config, path, target, overwrite=overwrite)


def _save_locked(config: Config, path: Path, target: Path, *, overwrite: bool) -> SaveResult:
    """The save proper: read, check the stamp, write; under the folder's lock, so two
    writers (two nodes sharing one file) cannot both pass the check and both write."""
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
    stamp = FileStamp(target, digest(new_text.encode("utf-8")))
    return SaveResult(path=path, written=target, backup=backup, source=stamp)


@contextmanager
def _folder_lock(folder: Path, shown: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on `folder` while a save reads, checks and
    replaces a file in it: the file itself is swapped by rename, so its own lock would
    not exclude the next writer. Waits up to LOCK_WAIT_S, then ConfigError. Where flock
    is missing (not POSIX) or the folder cannot be opened, no lock is taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield  # the write will say what is wrong with the folder
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"{shown}: another process has been saving in its folder for "
                        f"{LOCK_WAIT_S:g} s; not saved, try again"
                    ) from None
                time.sleep(0.01)
            except OSError:
                break  # a file system without flock: save unlocked, as before
        yield
    finally:
        os.close(fd)  # releases the lock


def _refuse_if_changed(
    source: FileStamp | None, target: Path, raw: bytes | None, path: Path
) -> None:
    """Raise ConfigChanged when the file on disk is not the one `source` recorded."""
    if source is None or source.path != target:
        return  # not loaded from this file: nothing to compare with
    found = None if raw is None else digest(raw)
    if found == source.digest:
        return
    if found is None:
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
    """One value as TOML on one line (a list inline, so a line edit can replace it)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
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
