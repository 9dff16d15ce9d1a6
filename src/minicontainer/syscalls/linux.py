"""The real syscalls, through ctypes on libc.

Python 3.11 has no os.unshare/os.setns (they arrive in 3.12) and no mount,
pivot_root or umount2 at all, so we call libc ourselves. Every call checks
for -1 and raises SyscallError with errno, what we were doing and the path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource  # the close_range fallback runs after pivot_root: import it now

from minicontainer.errors import SyscallError
from minicontainer import safepath
from minicontainer.syscalls.flags import (
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RELATIME,
    MS_REMOUNT,
    mount_flag_names,
)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long

# glibc has no pivot_root() wrapper: call it by number (asm/unistd.h).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "i686": 217, "armv7l": 218}.get(platform.machine(), 155)
# close_range(2) has one number on every architecture (since Linux 5.9).
_SYS_CLOSE_RANGE = 436
_CLOSE_RANGE_CLOEXEC = 4


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def shown_source(source) -> str:
    if source is None:
        return "none"
    s = os.fsdecode(source)
    return "the opened path" if s.startswith("/proc/self/fd/") else s


def _check(ret: int, op: str, path: str | None = None, hint: str | None = None) -> None:
    if ret == -1:
        raise SyscallError(op, ctypes.get_errno(), path, hint)


class Linux:
    """The real kernel. Methods mirror the syscalls one to one."""

    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(_libc.setns(fd, nstype), "setns")

    def mount(self, source, target, fstype, flags=0, data=None, *, shown=None) -> None:
        """mount(2). ``shown`` is the path to name in errors (the container path,
        when ``target`` is a /proc/self/fd/N magic link)."""
        ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
        if ret == -1:
            what = "remount" if flags & MS_REMOUNT else ("bind mount" if flags & MS_BIND else f"mount {fstype or ''}".strip())
            opts = ",".join(mount_flag_names(flags) + ([data] if data else []))
            src = shown_source(source)
            raise SyscallError(f"{what} ({opts or 'defaults'}) of {src} on", ctypes.get_errno(), shown or target)

    def mount_flags_of(self, path: str) -> int:
        """The per-mount flags to keep on a remount (statvfs(3) f_flag)."""
        f = os.statvfs(path).f_flag
        out = 0
        for st_bit, ms_bit in ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
                               (2048, MS_NODIRATIME), (4096, MS_RELATIME)):
            if f & st_bit:
                out |= ms_bit
        return out

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_libc.umount2(_b(target), flags), "umount", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        ret = _libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old))
        _check(ret, "pivot_root to", new_root)

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(_libc.sethostname(raw, len(raw)), "sethostname")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> None:
        _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")

    # Plain filesystem calls go through the same object so the fake can record them.
    # -- fds and paths --------------------------------------------------
    def open_dir(self, path: str) -> int:
        try:
            return os.open(path, safepath.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise SyscallError("opening", e.errno, path) from None

    def open_path(self, path: str) -> int:
        """An O_PATH fd for a host path the user named (a -v source)."""
        try:
            return os.open(path, safepath.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            raise SyscallError("opening", e.errno, path) from None

    def open_beneath(self, root_fd: int, path: str, *, directory: bool = False, create_dirs: bool = False,
                     create_file: bool = False) -> int:
        flags = safepath.O_PATH | (os.O_DIRECTORY if directory else 0)
        return safepath.open_beneath(root_fd, path, flags, create_dirs=create_dirs, create_file=create_file)

    def fd_path(self, fd: int) -> str:
        return safepath.fd_path(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def mknod(self, path: str, mode: int, device: int, *, shown=None) -> None:
        try:
            os.mknod(path, mode, device)
        except OSError as e:
            raise SyscallError("mknod", e.errno, shown or path) from None

    def symlink(self, target: str, path: str, *, shown=None) -> None:
        try:
            os.symlink(target, path)
        except OSError as e:
            raise SyscallError(f"symlink -> {target} at", e.errno, shown or path) from None

    def chmod(self, path: str, mode: int) -> None:
        try:
            os.chmod(path, mode)
        except OSError as e:
            raise SyscallError("chmod", e.errno, path) from None

    def chdir(self, path: str) -> None:
        try:
            os.chdir(path)
        except OSError as e:
            raise SyscallError("chdir", e.errno, path) from None

    def fchdir(self, fd: int) -> None:
        try:
            os.fchdir(fd)
        except OSError as e:
            raise SyscallError("fchdir", e.errno) from None

    def chroot(self, path: str) -> None:
        try:
            os.chroot(path)
        except OSError as e:
            raise SyscallError("chroot", e.errno, path) from None

    def setsid(self) -> None:
        try:
            os.setsid()
        except OSError as e:
            raise SyscallError("setsid", e.errno) from None

    def cloexec_from(self, first: int) -> None:
        """Mark every fd >= first close-on-exec (close_range(2) with
        CLOSE_RANGE_CLOEXEC), so fds the caller leaked to us never reach the
        container (CVE-2024-21626). Falls back to a loop on old kernels."""
        ret = _libc.syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(_CLOSE_RANGE_CLOEXEC))
        if ret == 0:
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        for fd in range(first, min(soft, 1 << 20)):
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass

    def execve(self, path: bytes, argv: list[bytes], env: dict[bytes, bytes]) -> None:
        os.execve(path, argv, env)
