"""Reading the container's memory limit from cgroup v2 or v1, where one is set.

Both readers take their roots as arguments so tests can point them at fixture trees.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["memory_limit"]

# cgroup v1 reports "no limit" as a huge page-aligned number near 2**63.
_V1_UNLIMITED = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroups(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path for v2 (the `0::` line) and for v1's memory controller."""
    text = _read(proc_cgroup)
    v2 = v1 = None
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _v2_limit(root: Path, cgroup_path: str | None) -> int | None:
    """The tightest `memory.max` from this cgroup up to the root, or None if all are 'max'."""
    candidates: list[Path] = []
    if cgroup_path:
        current = root / cgroup_path.lstrip("/")
        while True:
            candidates.append(current / "memory.max")
            if current == root or root not in current.parents:
                break
            current = current.parent
    candidates.append(root / "memory.max")
    best: int | None = None
    for candidate in candidates:
        limit = _parse_limit(_read(candidate))
        if limit is None:
            continue
        best = limit if best is None else min(best, limit)
    return best


def _v1_limit(root: Path, cgroup_path: str | None) -> int | None:
    """The tightest `memory.limit_in_bytes` from this cgroup up to the memory root, or None.

    v1 limits nest like v2's (a child cannot use more than its parent allows), so every level
    is read, not just the first file found.
    """
    base = root / "memory"
    candidates: list[Path] = []
    if cgroup_path:
        current = base / cgroup_path.lstrip("/")
        while current != base and base in current.parents:
            candidates.append(current / "memory.limit_in_bytes")
            current = current.parent
    candidates.append(base / "memory.limit_in_bytes")
    best: int | None = None
    for candidate in candidates:
        limit = _parse_limit(_read(candidate))
        if limit is None or limit >= _V1_UNLIMITED:
            continue
        best = limit if best is None else min(best, limit)
    return best


def _parse_limit(value: str | None) -> int | None:
    """A positive byte count from a limit file, or None ('max', empty, garbage, <= 0)."""
    if value is None:
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if limit > 0 else None


def memory_limit(
    root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup"
) -> int | None:
    """Bytes this process's container may use, or None when no limit is set."""
    root = Path(root)
    v2_path, v1_path = _own_cgroups(Path(proc_cgroup))
    if (root / "cgroup.controllers").exists() or (v2_path is not None and v1_path is None):
        limit = _v2_limit(root, v2_path)
        if limit is not None:
            return limit
    return _v1_limit(root, v1_path)
