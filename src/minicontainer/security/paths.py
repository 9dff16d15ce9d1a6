"""Masked and read-only paths under /proc and /sys, as data plus a reference applier.

A fresh procfs or sysfs in the container still shows host-wide things:
/proc/kcore is the host's memory, /proc/sys/kernel/core_pattern names a
program the *host* kernel runs as root when anything crashes, writing ``b``
to /proc/sysrq-trigger reboots the machine. Namespaces do not hide them, and
root in the container may open them. Like runc (its default spec's
``maskedPaths`` and ``readonlyPaths``), we cover them right after /proc and
/sys are mounted in the new root, before pivot_root:

- ``mask_file``: bind-mount /dev/null over the file: it reads as empty;
- ``mask_dir``: mount an empty read-only tmpfs over the directory;
- ``readonly``: bind-mount the path onto itself, then remount that bind
  read-only (and nosuid, nodev, noexec). A bind mount's flags are its own
  (mount(2), "Creating a bind mount"), so the original mount stays as it is.

A missing path is skipped (not every kernel has /proc/timer_stats). Every
mount targets ``/proc/self/fd/N`` of an ``O_PATH`` descriptor opened without
following any symlink, so nothing planted in the image can redirect a mount
(reliability lesson 1; runc CVE-2019-19921, CVE-2025-31133).

``--privileged`` and ``--security-opt systempaths=unconfined`` turn both
lists off, as in Docker.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from minicontainer.errors import SyscallError, wrap_oserror
from minicontainer.security import _sys

if TYPE_CHECKING:
    from minicontainer.security.config import SecurityConfig

# mount(2) flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# (path, kind, why). Kinds are what the path is on current kernels; the
# applier checks the real type and uses that.
DEFAULT_MASKED: tuple[tuple[str, str, str], ...] = (
    ("/proc/asound", "mask_dir", "the host's sound cards"),
    ("/proc/acpi", "mask_dir", "ACPI state and controls of the host machine"),
    ("/proc/kcore", "mask_file", "the host's physical memory, as an ELF core file"),
    ("/proc/keys", "mask_file", "keys in the kernel keyring, which is not namespaced"),
    ("/proc/latency_stats", "mask_file", "latency records of every process on the host"),
    ("/proc/timer_list", "mask_file", "host timers with the names and pids of their tasks"),
    ("/proc/timer_stats", "mask_file", "timer usage of every process on the host (old kernels)"),
    ("/proc/sched_debug", "mask_file", "scheduler state of every process on the host"),
    ("/proc/scsi", "mask_dir", "the host's SCSI devices, with a write interface to add and remove them"),
    ("/sys/firmware", "mask_dir", "firmware tables of the host: ACPI, DMI, EFI variables"),
    ("/sys/devices/virtual/powercap", "mask_dir", "CPU energy counters, a side channel (CVE-2020-8694)"),
)
DEFAULT_READONLY: tuple[tuple[str, str], ...] = (
    ("/proc/bus", "PCI and USB configuration of the host's devices"),
    ("/proc/fs", "filesystem tunables that are host-wide"),
    ("/proc/irq", "interrupt routing of the host's CPUs"),
    ("/proc/sys", "sysctls, mostly host-wide: kernel/core_pattern runs a program as host root on any crash"),
    ("/proc/sysrq-trigger", "writing b reboots the host, c crashes it"),
    ("/sys/fs/cgroup", "the cgroup tree: a container must not raise its own limits"),
)
DEFAULT_MASKED_PATHS: tuple[str, ...] = tuple(p for p, _, _ in DEFAULT_MASKED)
DEFAULT_READONLY_PATHS: tuple[str, ...] = tuple(p for p, _ in DEFAULT_READONLY)

_KIND = {p: k for p, k, _ in DEFAULT_MASKED}
_WHY = {**{p: w for p, _, w in DEFAULT_MASKED}, **dict(DEFAULT_READONLY)}


@dataclass(frozen=True)
class MaskOp:
    kind: str  # "mask_file" | "mask_dir" | "readonly"
    path: str  # absolute, inside the container
    why: str

    def shell(self) -> str:
        """The command a person would type (for --explain)."""
        if self.kind == "mask_file":
            return f"mount --bind /dev/null {self.path}"
        if self.kind == "mask_dir":
            return f"mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=0555 tmpfs {self.path}"
        return f"mount --bind {self.path} {self.path} && mount -o remount,bind,ro,nosuid,nodev,noexec {self.path}"


def masked_path_ops(config: "SecurityConfig") -> list[MaskOp]:
    """The mount steps for ``config``: masks first, then read-only paths."""
    ops = [MaskOp(_KIND.get(p, "mask_file"), p, _WHY.get(p, "masked by request")) for p in config.masked_paths]
    ops += [MaskOp("readonly", p, _WHY.get(p, "read-only by request")) for p in config.readonly_paths]
    return ops


# -- applying (syscalls) ------------------------------------------------------


def _components(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        raise SyscallError("resolving masked path", _errno.EINVAL, path,
                           "masked and read-only paths must be absolute, without . or ..")
    return parts


def open_path_nofollow(root_fd: int, path: str) -> int | None:
    """An O_PATH fd for ``path`` under ``root_fd``, or None if it does not exist.

    Walks one component at a time with O_NOFOLLOW; a symlink anywhere is an
    ELOOP error, never followed (the path is data we chose, so a symlink
    there means something is wrong).
    """
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        for comp in _components(path):
            try:
                nfd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return None
            except NotADirectoryError:
                return None
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SyscallError("opening masked path", _errno.ELOOP, path)
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def _host_dev_null() -> int:
    fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise SyscallError("checking /dev/null", _errno.EINVAL, "/dev/null",
                           "the host's /dev/null is not the null device (char 1:3)")
    return fd


def _atime_flags(fd: int) -> int:
    """Keep the mount's atime mode on remount (it may be locked in a user namespace)."""
    f = os.fstatvfs(fd).f_flag
    out = 0
    if f & os.ST_NOATIME:
        out |= MS_NOATIME
    if f & os.ST_NODIRATIME:
        out |= MS_NODIRATIME
    if f & os.ST_RELATIME:
        out |= MS_RELATIME
    return out


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def apply_mask_ops(
    root: int | str,
    ops: Iterable[MaskOp],
    *,
    mount: Callable[[str | None, str, str | None, int, str | None], None] = _sys.mount,
) -> list[str]:
    """Apply ``ops`` under ``root`` (the new root, /proc and /sys already mounted).

    Returns one line per op: ``applied`` or ``skipped`` (missing). ``mount``
    is injectable so unit tests can record the calls.
    """
    root_fd = root if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    null_fd = -1
    report: list[str] = []
    try:
        for op in ops:
            fd = open_path_nofollow(root_fd, op.path)
            if fd is None:
                report.append(f"skipped {op.kind} {op.path}: not present")
                continue
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                target = _proc_fd(fd)
                if op.kind == "readonly":
                    mount(target, target, None, MS_BIND | MS_REC, None)
                    # Re-open: the new bind mount now sits on top of the path,
                    # and the remount must name that mount, not the one below.
                    top = open_path_nofollow(root_fd, op.path)
                    if top is None:
                        raise SyscallError("re-opening read-only path", _errno.ENOENT, op.path)
                    try:
                        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
                        mount(None, _proc_fd(top), None, flags | _atime_flags(top), None)
                    finally:
                        os.close(top)
                elif is_dir:
                    mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555")
                else:
                    if null_fd < 0:
                        null_fd = _host_dev_null()
                    mount(_proc_fd(null_fd), target, None, MS_BIND, None)
                report.append(f"applied {op.kind} {op.path}")
            except OSError as e:
                raise wrap_oserror(f"{op.kind} (mount)", e, op.path) from None
            finally:
                os.close(fd)
    finally:
        if null_fd >= 0:
            os.close(null_fd)
        if not isinstance(root, int):
            os.close(root_fd)
    return report
