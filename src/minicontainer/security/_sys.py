"""The raw syscalls the security layer needs, bound once with ctypes.

Everything here is resolved when the module is imported, long before
pivot_root: ``enter()`` runs after the container's root became ``/`` and must
not load a single file (reliability lesson 3), so no symbol lookup, no
``ctypes.util.find_library`` and no lazy import may happen later.
``CDLL(None)`` is the running interpreter itself, which already links libc:
no library file is opened to get it.

Each wrapper raises ``OSError`` with the real errno, so callers can wrap it
with :func:`minicontainer.errors.wrap_oserror`.

Why ctypes and not python-prctl (a project dependency): python-prctl has no
call for the ambient set (PR_CAP_AMBIENT, Linux 4.3) and changes
capabilities one at a time through libcap; capset(2) with the version 3
header sets all three 64-bit sets in one call, which is both what the kernel
really does and easier to read.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# prctl(2) options (include/uapi/linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_MODE_FILTER = 2

# capget(2)/capset(2): version 3 carries 64-bit sets as two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# close_range(2) (Linux 5.11): the syscall number is the same on x86_64 and
# aarch64 (436 is in the unified part of the table).
_NR_CLOSE_RANGE = 436
CLOSE_RANGE_CLOEXEC = 1 << 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class SockFilter(ctypes.Structure):
    """struct sock_filter (linux/filter.h): one classic BPF instruction."""

    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class SockFprog(ctypes.Structure):
    """struct sock_fprog: the program handed to PR_SET_SECCOMP."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int

_capget = _libc.capget
_capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_capget.restype = ctypes.c_int

_capset = _libc.capset
_capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_capset.restype = ctypes.c_int

_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_mount.restype = ctypes.c_int

_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int

_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _fail() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _prctl(option, arg2, arg3, arg4, arg5)
    if ret < 0:
        raise _fail()
    return ret


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _capget(ctypes.byref(hdr), data) < 0:
        raise _fail()
    return (
        data[0].effective | (data[1].effective << 32),
        data[0].permitted | (data[1].permitted << 32),
        data[0].inheritable | (data[1].inheritable << 32),
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i, shift in enumerate((0, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _capset(ctypes.byref(hdr), data) < 0:
        raise _fail()


def set_seccomp_filter(prog: SockFprog) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog): see seccomp(2)."""
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec in one call (close_range(2))."""
    ret = _syscall(ctypes.c_long(_NR_CLOSE_RANGE), ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                   ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    if ret < 0:
        raise _fail()


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    if _mount(enc(source), enc(target), enc(fstype), flags, enc(data)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def umount2(target: str, flags: int) -> None:
    if _umount2(os.fsencode(target), flags) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def unshare(flags: int) -> None:
    if _unshare(flags) < 0:
        raise _fail()


def raw_syscall(nr: int, *args: int) -> int:
    """syscall(2) with integer arguments; returns -errno instead of raising.

    Used by tests to probe what the filter lets through (keyctl, reboot...)
    without needing a wrapper for each call.
    """
    ret = _syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret < 0:
        return -ctypes.get_errno()
    return ret
