"""Reading and writing cgroupfs files: the only module here that does I/O.

The managers call an instance of :class:`CgroupFs`; unit tests pass
:class:`~minicontainer.cgroups.fakefs.FakeCgroupFs`, which lays out a cgroup
tree in a temp dir and mimics the kernel's side effects (files appearing on
mkdir, rmdir of a cgroup with interface files in it, cgroup.kill...).

Cgroup interface files are written with one ``write(2)`` of the whole value
and without ``O_CREAT``: a missing file means a missing controller (ENOENT),
which the managers turn into an error naming it, instead of a stray regular
file. Nothing here follows a symlink (cgroupfs has none; a symlink means
someone is playing tricks).

``read``/``write`` raise :class:`~minicontainer.errors.SyscallError` (with a
cgroup-specific hint); ``mkdir``/``rmdir`` raise the plain ``OSError``, because
the managers branch on EEXIST, ENOENT and EBUSY there.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from minicontainer.errors import SyscallError, wrap_oserror


class CgroupFs:
    """Real cgroupfs access. Every method takes absolute paths."""

    def read(self, path: str) -> str:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise wrap_oserror("reading", e, path) from None
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode()
        except OSError as e:
            raise wrap_oserror("reading", e, path) from None
        finally:
            os.close(fd)

    def write(self, path: str, value: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise wrap_oserror(f"writing {value!r} to", e, path, write_hint(path, e.errno)) from None
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise wrap_oserror(f"writing {value!r} to", e, path, write_hint(path, e.errno)) from None
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path) and not os.path.islink(path)

    def mkdir(self, path: str) -> None:
        """Create one cgroup; the kernel fills it with interface files."""
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        """Remove one empty cgroup (interface files do not count, see cgroups(7))."""
        os.rmdir(path)

    def subdirs(self, path: str) -> list[str]:
        try:
            with os.scandir(path) as it:
                return sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def attach_device_filter(self, path: str, program: bytes) -> None:
        """Attach the eBPF device program to the cgroup v2 directory ``path``
        (bpf(2), through the syscall layer: the only module that binds libc)."""
        from minicontainer.syscalls.linux import attach_device_filter

        attach_device_filter(path, program)

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # already gone: that is what we wanted

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


def write_hint(path: str, err: int | None) -> str | None:
    """Explain the errnos cgroup files give (cgroups(7), cgroup-v2 docs)."""
    name = os.path.basename(path)
    if err == errno.ENOENT:
        return f"{name} does not exist: the kernel lacks this controller or feature here"
    if err == errno.EBUSY and name == "cgroup.subtree_control":
        return ("the 'no internal processes' rule: a cgroup that holds processes cannot enable "
                "controllers for its children; move the processes into a leaf first")
    if err == errno.EBUSY:
        return "the cgroup is busy (it still has processes or children)"
    if err == errno.EINVAL and name.startswith("cpuset."):
        return "the CPUs or memory nodes must be a subset of the parent cgroup's"
    if err == errno.EINVAL and name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        return "v1 needs memory.memsw.limit_in_bytes >= memory.limit_in_bytes"
    if err == errno.EINVAL and name in ("io.max", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
        return "I/O limits need a whole disk (e.g. /dev/sda, /dev/loop0), not a partition"
    if err == errno.ENODEV:
        return "the kernel has no such device for this limit; use a whole disk, not a partition"
    if err == errno.ENOSPC and name in ("cgroup.procs", "tasks"):
        return "a v1 cpuset cgroup with empty cpuset.cpus or cpuset.mems cannot take processes"
    if err == errno.EOPNOTSUPP and name == "cgroup.subtree_control":
        return "this controller cannot be enabled here (threaded cgroup or a controller in use by v1)"
    if err in (errno.EROFS, errno.EACCES):
        return "the cgroup filesystem is read-only here (inside an unprivileged container?)"
    if err == errno.ESRCH:
        return "the process exited before it could be moved"
    return None


def read_int(fs: CgroupFs, path: str) -> int | None:
    """A file holding one number; ``max`` (v2) is returned as None."""
    text = fs.read(path).strip()
    if text == "max" or text == "":
        return None
    return int(text.split()[0])


def read_keyed(fs: CgroupFs, path: str) -> dict[str, int]:
    """A "flat keyed" file (cgroup-v2 docs, "Interface Files"): ``key value`` per line."""
    out: dict[str, int] = {}
    for line in fs.read(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def read_pids(fs: CgroupFs, path: str) -> list[int]:
    """cgroup.procs / tasks: one pid per line."""
    try:
        text = fs.read(path)
    except SyscallError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return []  # the cgroup went away meanwhile
        raise
    return [int(x) for x in text.split()]


def walk_bottom_up(fs: CgroupFs, path: str) -> list[str]:
    """``path`` and every cgroup below it, children before parents (the rmdir order)."""
    out: list[str] = []
    for sub in fs.subdirs(path):
        out.extend(walk_bottom_up(fs, sub))
    out.append(path)
    return out


def join(base: str | os.PathLike, *parts: str) -> str:
    return str(Path(base, *parts))
