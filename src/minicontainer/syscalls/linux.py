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

from minicontainer.errors import SyscallError
from minicontainer.syscalls.flags import MS_BIND, MS_REMOUNT, mount_flag_names

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


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def _check(ret: int, op: str, path: str | None = None, hint: str | None = None) -> None:
    if ret == -1:
        raise SyscallError(op, ctypes.get_errno(), path, hint)


class Linux:
    """The real kernel. Methods mirror the syscalls one to one."""

    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(_libc.setns(fd, nstype), "setns")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
        ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
        if ret == -1:
            what = "remount" if flags & MS_REMOUNT else ("bind mount" if flags & MS_BIND else f"mount {fstype or ''}".strip())
            opts = ",".join(mount_flag_names(flags) + ([data] if data else []))
            raise SyscallError(f"{what} ({opts or 'defaults'}) of {source or 'none'} on", ctypes.get_errno(), target)

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
    def mkdir(self, path: str, mode: int = 0o755) -> None:
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except OSError as e:
            raise SyscallError("mkdir", e.errno, path) from None

    def mknod(self, path: str, mode: int, device: int) -> None:
        try:
            os.mknod(path, mode, device)
        except OSError as e:
            raise SyscallError("mknod", e.errno, path) from None

    def symlink(self, target: str, path: str) -> None:
        try:
            os.symlink(target, path)
        except OSError as e:
            raise SyscallError(f"symlink -> {target} at", e.errno, path) from None

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

    def chroot(self, path: str) -> None:
        try:
            os.chroot(path)
        except OSError as e:
            raise SyscallError("chroot", e.errno, path) from None

    def rmdir(self, path: str) -> None:
        try:
            os.rmdir(path)
        except OSError as e:
            raise SyscallError("rmdir", e.errno, path) from None
