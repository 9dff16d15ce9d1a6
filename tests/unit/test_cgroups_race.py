"""cgroup creation racing another container's cleanup (issue 11, item 8), on a fake cgroupfs.

Another container's destroy() removes the shared ``minicontainer`` directory
of each hierarchy when it looks unused (no child cgroup yet): that can fall
between any two of our create steps. Here the fake cgroupfs does exactly
that, once, before the Nth mkdir or write of a run: every N is tried, on v1
and v2. In the nastiest case a third container makes the directory again
right after our write failed, so "is the parent there?" says yes: the
ENOENT must still be retried, not reported as a missing controller.
"""

from __future__ import annotations

import errno
import os

import pytest

from minicontainer.cgroups import manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs, _err
from minicontainer.cgroups.resources import parse_resources
from minicontainer.errors import CgroupError, SyscallError

pytestmark = pytest.mark.unit

PID = 4242


class RacingFs(FakeCgroupFs):
    """Before its ``at``-th mkdir or write, another container's cleanup removes
    every shared parent that is empty; with ``comes_back``, a third container
    makes them again right after that operation (which then hit ENOENT)."""

    def __init__(self, at: int, comes_back: bool = False):
        super().__init__()
        self.at = at
        self.comes_back = comes_back
        self.ops = 0
        self.paths: list[str] = []  # every mkdir and write, in order
        self.removed: list[str] = []

    def shared(self) -> list[str]:
        return [f"{m}/minicontainer" for m in self.hierarchies]

    def _race(self, path):
        self.ops += 1
        self.paths.append(path)
        if self.ops != self.at:
            return []
        gone = []
        for p in self.shared():
            if os.path.isdir(p) and not self.subdirs(p) and not self._own_pids(p):
                self.rmdir(p)
                gone.append(p)
        self.removed.extend(gone)
        return gone

    def _back(self, gone):
        if self.comes_back:
            for p in gone:
                if not os.path.isdir(p):
                    super().mkdir(p)

    def mkdir(self, path):
        gone = self._race(path)
        try:
            super().mkdir(path)
        finally:
            self._back(gone)

    def write(self, path, value):
        gone = self._race(path)
        try:
            super().write(path, value)
        finally:
            self._back(gone)


def _v2(tmp_path, fs):
    mount = fs.add_v2(tmp_path / "cg", ("cpuset", "cpu", "io", "memory", "pids"))
    host = HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("cpuset", "cpu", "io", "memory", "pids")))
    return host


def _v1(tmp_path, fs):
    mounts = {c: fs.add_v1(tmp_path / "cg" / c, (c,)) for c in ("freezer", "memory", "cpuset", "pids", "devices")}
    return HostCgroups(mode="hybrid", v2_mount=str(tmp_path / "cg" / "unified"), v1_mounts=mounts)


HOSTS = {"v1": _v1, "v2": _v2}
RES = dict(memory="32m", pids_limit=16, cpuset_cpus="0", cpus_available={0, 1}, mems_available={0})


def _run_all(tmp_path, version, at, comes_back=False):
    fs = RacingFs(at, comes_back)
    host = HOSTS[version](tmp_path, fs)
    m = manager_for("c1", parse_resources(**RES), host=host, fs=fs)
    for step in m.steps():  # as the interpreter does: each step, once, in order
        m.execute(step, pid=PID)
    return fs, m


def _ops(tmp_path, version) -> int:
    fs, _ = _run_all(tmp_path / "count", version, at=0)
    return fs.ops


def _check(fs, m):
    for leaf in m.leaves():
        assert os.path.isdir(leaf), leaf
        assert str(PID) in open(f"{leaf}/cgroup.procs").read().split()
    limit = {"v1": "memory/minicontainer/c1/memory.limit_in_bytes", "v2": "minicontainer/c1/memory.max"}[m.version]
    top = m.leaves()[0].split("/minicontainer/")[0]
    base = top.rsplit("/", 1)[0] if m.version == "v1" else top
    assert open(f"{base}/{limit}").read().strip() == str(32 << 20)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("comes_back", [False, True], ids=["removed", "removed-and-made-again"])
def test_a_shared_parent_removed_before_any_create_step_is_retried(tmp_path, version, comes_back):
    total = _ops(tmp_path, version)
    assert total >= 5
    raced = 0
    for at in range(1, total + 1):
        fs, m = _run_all(tmp_path / f"{at}", version, at, comes_back)
        raced += bool(fs.removed)
        _check(fs, m)
    assert raced >= 2  # the race did happen, at more than one step


def test_v2_subtree_control_write_into_a_parent_made_again_is_not_a_missing_controller(tmp_path):
    # The case of the issue: the parent is removed between our mkdir of it and
    # our cgroup.subtree_control write, and is there again when we look: the
    # ENOENT used to be reported as "this host does not offer ... cgroup.subtree_control".
    probe, _ = _run_all(tmp_path / "probe", "v2", at=0)
    at = probe.paths.index(f"{tmp_path}/probe/cg/minicontainer/cgroup.subtree_control") + 1
    fs, m = _run_all(tmp_path / "race", "v2", at, comes_back=True)
    assert fs.removed == [f"{tmp_path}/race/cg/minicontainer"]
    _check(fs, m)


def test_an_enoent_that_stays_is_still_reported_as_a_missing_controller(tmp_path):
    # not a race: the file is missing for good (no swap accounting asked for by --memory-swap)
    fs = FakeCgroupFs()
    mount = fs.add_v2(tmp_path / "cg", ("cpuset", "cpu", "io", "memory", "pids"), swap=False)
    host = HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("cpuset", "cpu", "io", "memory", "pids")))
    m = manager_for("c1", parse_resources(memory="32m", memory_swap="64m"), host=host, fs=fs)
    with pytest.raises(CgroupError, match="memory.swap.max, which this host does not offer"):
        for step in m.steps():
            m.execute(step, pid=PID)


def test_a_parent_that_keeps_disappearing_is_an_error_after_a_few_tries(tmp_path):
    class AlwaysGone(FakeCgroupFs):
        tries = 0

        def mkdir(self, path):
            if path.endswith("/minicontainer/c1"):
                self.tries += 1
                parent = path.rsplit("/", 1)[0]
                if os.path.isdir(parent) and not self.subdirs(parent):
                    self.rmdir(parent)
            super().mkdir(path)

    fs = AlwaysGone()
    m = manager_for("c1", parse_resources(memory="32m"), host=_v2(tmp_path, fs), fs=fs)
    with pytest.raises(CgroupError, match="could not create .*/minicontainer/c1: .*/minicontainer kept disappearing"):
        for step in m.steps():
            m.execute(step, pid=PID)
    assert fs.tries == m.CREATE_ATTEMPTS


def test_a_create_write_that_keeps_failing_is_reported_as_the_missing_file(tmp_path):
    # a v2 level whose parent does not hand the controller down: the write of
    # "+memory" into cgroup.subtree_control keeps failing with ENOENT, and after
    # the retries it is reported as what it is
    class NoMemoryBelow(FakeCgroupFs):
        tries = 0

        def write(self, path, value):
            if path.endswith("/minicontainer/cgroup.subtree_control") and "memory" in value:
                self.tries += 1
                raise _err(path, value, errno.ENOENT)
            super().write(path, value)

    fs = NoMemoryBelow()
    m = manager_for("c1", parse_resources(memory="32m"), host=_v2(tmp_path, fs), fs=fs)
    with pytest.raises(SyscallError) as exc:
        for step in m.steps():
            m.execute(step, pid=PID)
    assert exc.value.errno == errno.ENOENT and "minicontainer/cgroup.subtree_control" in exc.value.message
    assert fs.tries == m.CREATE_ATTEMPTS
