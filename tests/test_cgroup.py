"""The cgroup v1/v2 memory-limit readers, on fixture trees built in tmp_path."""

from __future__ import annotations

from pathlib import Path

from sluice.engine.cgroup import memory_limit

V1_UNLIMITED = "9223372036854771712"  # what v1 reports when no limit is set (2**63 - 4096)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def v2_tree(tmp_path: Path, own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpuset cpu io memory pids")
    proc = tmp_path / "proc_self_cgroup"
    write(proc, f"0::{own}")
    return root, proc


def v1_tree(tmp_path: Path, own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    (root / "memory").mkdir(parents=True)
    proc = tmp_path / "proc_self_cgroup"
    write(proc, f"12:pids:{own}\n4:memory:{own}\n1:name=systemd:{own}")
    return root, proc


# -- cgroup v2 ------------------------------------------------------------------------------


def test_v2_container_root_limit(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "memory.max", str(512 * 2**20))
    assert memory_limit(root, proc) == 512 * 2**20


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "memory.max", "max")
    assert memory_limit(root, proc) is None


def test_v2_no_memory_max_file_means_no_limit(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    assert memory_limit(root, proc) is None


def test_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, "/system.slice/app.service")
    write(root / "system.slice" / "memory.max", str(2 * 2**30))
    write(root / "system.slice" / "app.service" / "memory.max", "max")
    assert memory_limit(root, proc) == 2 * 2**30
    write(root / "system.slice" / "app.service" / "memory.max", str(2**30))
    assert memory_limit(root, proc) == 2**30


def test_v2_own_path_missing_falls_back_to_root(tmp_path: Path) -> None:
    # Without a cgroup namespace /proc/self/cgroup names a host path the mount does not have.
    root, proc = v2_tree(tmp_path, "/docker/0123abcd")
    write(root / "memory.max", "1073741824")
    assert memory_limit(root, proc) == 1073741824


def test_v2_garbage_and_zero_are_ignored(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, "/a")
    write(root / "a" / "memory.max", "not a number")
    write(root / "memory.max", "0")
    assert memory_limit(root, proc) is None


# -- cgroup v1 ------------------------------------------------------------------------------


def test_v1_limit_at_memory_root(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path)
    write(root / "memory" / "memory.limit_in_bytes", str(256 * 2**20))
    assert memory_limit(root, proc) == 256 * 2**20


def test_v1_unlimited_is_none(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path)
    write(root / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    assert memory_limit(root, proc) is None


def test_v1_own_cgroup_limit(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path, "/docker/abc")
    write(root / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    write(root / "memory" / "docker" / "abc" / "memory.limit_in_bytes", str(300 * 2**20))
    assert memory_limit(root, proc) == 300 * 2**20


def test_v1_parent_limit_applies_when_own_is_unlimited(tmp_path: Path) -> None:
    # A child reporting "unlimited" is still bound by its parent's limit.
    root, proc = v1_tree(tmp_path, "/user.slice/session-1.scope")
    write(
        root / "memory" / "user.slice" / "session-1.scope" / "memory.limit_in_bytes", V1_UNLIMITED
    )
    write(root / "memory" / "user.slice" / "memory.limit_in_bytes", str(4 * 2**30))
    write(root / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    assert memory_limit(root, proc) == 4 * 2**30


def test_v1_own_path_missing_falls_back_to_mount_root(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path, "/docker/abc")
    write(root / "memory" / "memory.limit_in_bytes", "536870912")
    assert memory_limit(root, proc) == 536870912


def test_v1_no_files_means_no_limit(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path, "/docker/abc")
    assert memory_limit(root, proc) is None


# -- neither --------------------------------------------------------------------------------


def test_missing_proc_file_and_empty_root(tmp_path: Path) -> None:
    assert memory_limit(tmp_path / "nothing", tmp_path / "no_proc_file") is None


def test_hybrid_prefers_v2_limit_then_v1(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_self_cgroup"
    write(proc, "4:memory:/svc\n0::/svc")
    write(root / "memory" / "svc" / "memory.limit_in_bytes", str(700 * 2**20))
    # No cgroup.controllers at the root: the v1 memory controller is the one in charge.
    assert memory_limit(root, proc) == 700 * 2**20
