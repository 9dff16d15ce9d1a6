"""syscalls/linux.py imports python-prctl and socket lazily (issue 15), so it
must load them before any call that takes a process away from the host's
files: after that, an import could read a module planted in the container's
root (the security rules in README: nothing imported after entering the
container's root)."""

from __future__ import annotations

import pytest

from minicontainer.syscalls import linux
from minicontainer.syscalls.flags import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS

pytestmark = pytest.mark.unit


@pytest.fixture
def unloaded(monkeypatch):
    """linux.py as a fresh runtime has it (prctl not loaded), with the kernel calls stubbed out."""
    monkeypatch.setattr(linux, "_late", {})
    calls = []
    monkeypatch.setattr(linux, "_unshare", lambda flags: calls.append(("unshare", flags)) or 0)
    monkeypatch.setattr(linux, "_setns", lambda fd, nstype: calls.append(("setns", nstype)) or 0)
    monkeypatch.setattr(linux, "_syscall", lambda nr, *a: calls.append(("syscall", nr)) or 0)
    monkeypatch.setattr(linux.os, "chroot", lambda path: calls.append(("chroot", path)))
    return calls


@pytest.mark.parametrize("leave", [
    lambda sc: sc.unshare(CLONE_NEWNS | CLONE_NEWUTS),
    lambda sc: sc.setns(3, CLONE_NEWNS),
    lambda sc: sc.setns(3, 0),  # nstype 0: whatever namespace fd is, a mount namespace included
    lambda sc: sc.pivot_root("/new", "/new/old"),
    lambda sc: sc.chroot("/new"),
], ids=["unshare-mnt", "setns-mnt", "setns-any", "pivot_root", "chroot"])
def test_prctl_is_loaded_before_the_process_leaves_the_hosts_files(unloaded, leave):
    leave(linux.Linux())
    assert unloaded  # the (stubbed) kernel call was made
    assert sorted(m.__name__ for m in linux._late.values()) == ["prctl", "socket"]


def test_namespaces_that_keep_the_hosts_files_do_not_load_it(unloaded):
    # the runtime's own unshare of a PID namespace (before the fork) and a network namespace
    sc = linux.Linux()
    sc.unshare(CLONE_NEWPID)
    sc.setns(3, CLONE_NEWNET)
    assert unloaded == [("unshare", CLONE_NEWPID), ("setns", CLONE_NEWNET)]
    assert linux._late == {}


def test_a_forked_child_loads_them_at_once(unloaded):
    import os

    pid = linux.Linux().fork()
    if pid == 0:  # the child: exit 0 when both are loaded, 1 if not
        os._exit(0 if sorted(linux._late) == ["prctl", "socket"] else 1)
    assert linux._late == {}  # the parent (the runtime) did not load them
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_child_that_cannot_load_them_exits_at_once_and_never_unwinds_as_the_runtime(unloaded, monkeypatch):
    import os

    def broken(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(linux, "_late_module", broken)
    r, w = os.pipe()
    pid = linux.Linux().fork()
    if pid == 0:  # reached only if fork() returned in the child: the failure went unnoticed
        os.write(w, b"returned")
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 125 and os.read(r, 10) == b""
    os.close(r)
