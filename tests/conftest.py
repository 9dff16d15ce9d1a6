"""Test tiers (see README, "Tests").

Every test module sets ``pytestmark`` to one tier marker:

- ``unit``    no root, fakes only (a temp dir as cgroupfs, a recording syscall layer)
- ``root``    root on this host: namespaces, mounts, overlay
- ``cgroup1`` root on a host with cgroup v1 controllers (this machine is hybrid)
- ``cgroup2`` root on a unified cgroup v2 host: run through ``scripts/vm-test``
- ``docker``  inside a privileged docker container: run through ``scripts/docker-test``
- ``oci``     root on this host: podman, docker and containerd drive minicontainer-runc (tests/oci)

A tier whose requirement is missing is skipped with the reason; scripts/test
runs every tier this machine can run, each where it can run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _is_root() -> bool:
    return os.geteuid() == 0


def _fs_type(path: str) -> str | None:
    """The filesystem type mounted exactly at ``path``, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if fields[4] == path:
                    fstype = right.split()[0]
        return fstype  # the last mount on a path is the visible one
    except (OSError, UnboundLocalError):
        return None


def _has_v1_controllers() -> bool:
    return _fs_type("/sys/fs/cgroup/memory") == "cgroup" and _fs_type("/sys/fs/cgroup/pids") == "cgroup"


def _has_v2_controllers() -> bool:
    if _fs_type("/sys/fs/cgroup") != "cgroup2":
        return False
    try:
        ctrls = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return False
    return {"memory", "cpu", "pids"} <= set(ctrls)


def pytest_collection_modifyitems(config, items):
    reasons = {}
    if not _is_root():
        why = "needs root (namespaces, mounts and cgroups); run scripts/test, which runs as root"
        for tier in ("root", "cgroup1", "cgroup2", "docker"):
            reasons[tier] = why
    if "cgroup1" not in reasons and not _has_v1_controllers():
        reasons["cgroup1"] = "this host has no cgroup v1 controllers mounted under /sys/fs/cgroup/<controller>"
    if "cgroup2" not in reasons and not _has_v2_controllers():
        reasons["cgroup2"] = (
            "this host has no unified cgroup v2 hierarchy with memory/cpu/pids; "
            "scripts/vm-test runs this tier in a qemu VM that has one"
        )
    if "docker" not in reasons and os.environ.get("MINICONTAINER_IN_DOCKER") != "1":
        reasons["docker"] = "only runs inside the privileged container that scripts/docker-test starts"
    for item in items:
        for tier, why in reasons.items():
            if tier in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))
                break


@pytest.fixture
def mc_dirs(tmp_path, monkeypatch):
    """Point MINICONTAINER_HOME and MINICONTAINER_ROOT at fresh temp dirs."""
    home = tmp_path / "home"
    root = tmp_path / "run"
    monkeypatch.setenv("MINICONTAINER_HOME", str(home))
    monkeypatch.setenv("MINICONTAINER_ROOT", str(root))
    return home, root
