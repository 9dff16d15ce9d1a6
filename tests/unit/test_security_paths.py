"""Masked and read-only paths: the data, and the interpreter's MaskPath steps on a
real directory tree with only mount(2) recorded (every path is opened for real,
without following symlinks)."""

from __future__ import annotations

import errno
import os

import pytest

from minicontainer.errors import SyscallError
from minicontainer.security import parse_security
from minicontainer.security import paths as sp
from minicontainer.syscalls.flags import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT
from minicontainer.syscalls.linux import Linux

from helpers import apply_masks

pytestmark = pytest.mark.unit


def test_default_ops_cover_runc_defaults():
    ops = sp.masked_path_ops(parse_security())
    by_path = {op.path: op for op in ops}
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"):
        assert by_path[p].kind == "mask_file"
    for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"):
        assert by_path[p].kind == "mask_dir"
    for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"):
        assert by_path[p].kind == "readonly"
    # /sys/fs/cgroup is the plan's: the container's own cgroup, mounted read-only there (plan.cgroup_mounts)
    assert "/sys/fs/cgroup" not in by_path
    assert all(op.why and op.path.startswith("/") for op in ops)
    # Masks come before the read-only remounts.
    kinds = [op.kind for op in ops]
    assert kinds.index("readonly") > max(i for i, k in enumerate(kinds) if k != "readonly")
    assert "mount --bind /dev/null /proc/kcore" == by_path["/proc/kcore"].shell()


def test_privileged_and_systempaths_unconfined_have_no_ops():
    assert sp.masked_path_ops(parse_security(privileged=True)) == []
    assert sp.masked_path_ops(parse_security(security_opt=["systempaths=unconfined"])) == []


class RecordingMount(Linux):
    """The real syscall layer, but mount(2) is recorded: where each
    /proc/self/fd/N pointed at call time."""

    def __init__(self, fail: int | None = None):
        self.calls = []
        self.fail = fail

    def mount(self, source, target, fstype, flags=0, data=None, *, shown=None):
        def resolve(p):
            return os.readlink(p) if p and p.startswith("/proc/self/fd/") else p

        if self.fail:
            raise SyscallError("mount", self.fail, shown)
        self.calls.append((resolve(source), resolve(target), fstype, flags, data))


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "root"
    for d in ("proc/acpi", "proc/sys/kernel", "sys/firmware"):
        (root / d).mkdir(parents=True)
    for f in ("proc/kcore", "proc/sysrq-trigger"):
        (root / f).write_text("")
    return root


def test_apply_mask_ops_mounts_on_the_opened_paths(fake_root):
    mount = RecordingMount()
    ops = sp.masked_path_ops(parse_security())
    apply_masks(fake_root, ops, mount)
    r = str(fake_root)
    calls = {c[1]: c for c in mount.calls if c[3] & MS_REMOUNT == 0}
    assert f"{r}/proc/kcore" in calls
    assert f"{r}/proc/keys" not in calls  # not present: skipped
    # mask_file: /dev/null bound over the file
    src, _, fstype, flags, _ = calls[f"{r}/proc/kcore"]
    assert src == "/dev/null" and fstype is None and flags == MS_BIND
    # mask_dir: a read-only empty tmpfs
    _, _, fstype, flags, data = calls[f"{r}/proc/acpi"]
    assert fstype == "tmpfs" and flags & MS_RDONLY and flags & MS_NOSUID and flags & MS_NODEV
    assert calls[f"{r}/sys/firmware"][2] == "tmpfs"
    # readonly: bind onto itself, then remount read-only
    for path in ("/proc/sys", "/proc/sysrq-trigger"):
        seq = [c for c in mount.calls if c[1] == f"{r}{path}"]
        assert len(seq) == 2, seq
        assert seq[0][0] == f"{r}{path}" and seq[0][3] & MS_BIND
        assert seq[1][0] is None
        assert seq[1][3] & (MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) == (
            MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        )
    # Nothing was mounted on a path that does not exist.
    assert not any("timer_list" in c[1] for c in mount.calls)


def test_real_type_wins_over_the_expected_kind(fake_root):
    (fake_root / "proc" / "kcore").unlink()
    (fake_root / "proc" / "kcore").mkdir()
    mount = RecordingMount()
    apply_masks(fake_root, [sp.MaskOp("mask_file", "/proc/kcore", "x")], mount)
    assert mount.calls[0][2] == "tmpfs"


@pytest.mark.parametrize("planted", ["proc", "proc/kcore", "proc/sys"])
def test_planted_symlink_is_never_followed(fake_root, tmp_path, planted):
    victim = tmp_path / "host-victim"
    victim.mkdir()
    target = fake_root / planted
    if target.is_dir():
        os.rename(target, tmp_path / "moved")
    else:
        target.unlink()
    target.symlink_to(victim)
    mount = RecordingMount()
    with pytest.raises(SyscallError) as exc:
        apply_masks(fake_root, sp.masked_path_ops(parse_security()), mount)
    assert exc.value.errno == errno.ELOOP
    assert not any(str(victim) in (c[1] or "") for c in mount.calls)


def test_dotdot_paths_refused(fake_root):
    with pytest.raises(SyscallError, match="may not contain '..'"):
        apply_masks(fake_root, [sp.MaskOp("mask_file", "/proc/../etc/shadow", "x")], RecordingMount())


def test_mount_failure_is_wrapped_with_the_path(fake_root):
    with pytest.raises(SyscallError, match="/proc/kcore") as exc:
        apply_masks(fake_root, [sp.MaskOp("mask_file", "/proc/kcore", "x")], RecordingMount(fail=errno.EPERM))
    assert exc.value.errno == errno.EPERM


def test_no_fd_leak(fake_root):
    before = set(os.listdir("/proc/self/fd"))
    apply_masks(fake_root, sp.masked_path_ops(parse_security()), RecordingMount())
    assert set(os.listdir("/proc/self/fd")) == before
