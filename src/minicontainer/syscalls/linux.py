"""The real kernel: every call the runtime makes to set a container up.

This is the only module that binds libc. Python 3.11 has no os.unshare or
os.setns (they arrive in 3.12) and no mount, pivot_root, umount2, capget or
seccomp at all, so those go through ctypes here; prctl(2) options that
python-prctl covers (the bounding set, capability sets, no_new_privs, the
parent-death signal, dumpable) go through python-prctl, the project's chosen
binding. Two prctl options it lacks are called through ctypes: the ambient
set (PR_CAP_AMBIENT, Linux 4.3) and PR_SET_SECCOMP with a filter program
(python-prctl only knows the old strict mode).

Every method raises :class:`SyscallError` with errno, what was being done
and on which path. Everything is bound when the module is imported: the
steps after pivot_root run with the container's files as ``/`` and must not
look up a symbol, open a library or import a module (reliability lesson 3).
``CDLL(None)`` is the running interpreter, which already links libc, so no
library file is opened to get it.

``syscalls.fake.Recorder`` has the same methods and records the calls, so
the interpreter runs in unit tests without root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource  # setrlimit and the close_range fallback run after pivot_root
import signal
import sys

import prctl as _prctl  # python-prctl

from minicontainer import safepath
from minicontainer.errors import ContainerError, SyscallError
from minicontainer.procfs import proc_start_time
from minicontainer.syscalls.flags import (
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RELATIME,
    MS_REMOUNT,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_SET_SECCOMP,
    SECCOMP_MODE_FILTER,
    mount_flag_names,
)

_libc = ctypes.CDLL(None, use_errno=True)


def _bind(name: str, argtypes, restype=ctypes.c_int):
    fn = getattr(_libc, name)
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


_c_str = ctypes.c_char_p
_mount = _bind("mount", [_c_str, _c_str, _c_str, ctypes.c_ulong, _c_str])
_umount2 = _bind("umount2", [_c_str, ctypes.c_int])
_unshare = _bind("unshare", [ctypes.c_int])
_setns = _bind("setns", [ctypes.c_int, ctypes.c_int])
_sethostname = _bind("sethostname", [_c_str, ctypes.c_size_t])
_prctl5 = _bind("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])
_statfs = _bind("statfs", [_c_str, ctypes.c_void_p])
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# glibc has no pivot_root() wrapper: call it by number (asm/unistd.h).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "i686": 217, "armv7l": 218}.get(platform.machine(), 155)
# close_range(2) has one number on every architecture (Linux 5.9).
_SYS_CLOSE_RANGE = 436
_CLOSE_RANGE_CLOEXEC = 1 << 2

# capget(2): version 3 carries 64-bit sets as two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_capget = _bind("capget", [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)])


class SockFilter(ctypes.Structure):
    """struct sock_filter (linux/filter.h): one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    """struct sock_fprog: the program handed to PR_SET_SECCOMP."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def load_filter(program: bytes) -> SockFprog:
    """Copy a BPF program into the C structures the kernel reads (done before
    pivot_root, so installing it later is a single prctl call). The array
    stays alive as an attribute of the returned struct."""
    n = len(program) // ctypes.sizeof(SockFilter)
    insns = (SockFilter * n).from_buffer_copy(program)
    fprog = SockFprog(n, ctypes.cast(insns, ctypes.POINTER(SockFilter)))
    fprog._keep = insns  # noqa: SLF001 - the pointer above does not keep it alive
    return fprog


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


def _oserror(op: str, e: OSError, path: str | None = None, hint: str | None = None) -> SyscallError:
    return SyscallError(op, e.errno if e.errno is not None else errno.EIO, path, hint)


# -- queries that are not setup (used while planning, and by tests) -----------


def fs_magic(path: str) -> int | None:
    """statfs(2) f_type (Python's os.statvfs does not expose it)."""
    buf = ctypes.create_string_buffer(128)  # struct statfs is 120 bytes on x86_64
    if _statfs(os.fsencode(path), buf) != 0:
        return None
    return int.from_bytes(buf.raw[:8], sys.byteorder) & 0xFFFFFFFF


def capbset_read(cap: int) -> bool:
    return bool(_prctl.capbset_read(cap))


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _capget(ctypes.byref(hdr), data) < 0:
        raise SyscallError("reading capabilities (capget)", ctypes.get_errno())
    return (
        data[0].effective | (data[1].effective << 32),
        data[0].permitted | (data[1].permitted << 32),
        data[0].inheritable | (data[1].inheritable << 32),
    )


def get_dumpable() -> int:
    return _prctl.get_dumpable()


def raw_syscall(nr: int, *args: int) -> int:
    """syscall(2) with integer arguments; returns -errno instead of raising.
    Tests use it to probe what a seccomp filter lets through."""
    ret = _syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret < 0:
        return -ctypes.get_errno()
    return ret


class Linux:
    """The real kernel. Methods mirror the syscalls one to one."""

    # -- processes ---------------------------------------------------------
    def fork(self) -> int:
        return os.fork()

    def pipe(self) -> tuple[int, int]:
        return os.pipe()  # both ends close-on-exec (PEP 446)

    def waitpid(self, pid: int) -> int:
        """The exit code (os.waitstatus_to_exitcode) of the child ``pid``."""
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def write(self, fd: int, data: bytes) -> None:
        os.write(fd, data)

    def getppid(self) -> int:
        return os.getppid()

    def open_namespaces(self, pid: int, start: int, types) -> dict[str, int]:
        """fds of ``pid``'s namespaces, checked to belong to the process that
        started at ``start``: the pid is pinned with a pidfd first, and the
        start time compared after every namespace is open (pidfd_open(2))."""
        gone = ContainerError(f"process {pid} is not the container's PID 1 any more", "the container has exited")
        if pid <= 1:
            raise gone
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise gone from None
        fds: dict[str, int] = {}
        try:
            for ns in types:
                try:
                    fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise _oserror("opening the namespace", e, f"/proc/{pid}/ns/{ns}") from None
            if proc_start_time(pid) != start:
                raise gone
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        finally:
            os.close(pidfd)
        return fds

    def open_ns_path(self, path: str) -> int:
        """An fd for a namespace file an OCI bundle names (/run/netns/X,
        /proc/PID/ns/net); setns(2) with the type checks that it is one."""
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _oserror("opening the namespace", e, path) from None

    def open_ns(self, name: str) -> int:
        """An fd for one of our own namespaces, for setns(2) later."""
        try:
            return os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _oserror("opening", e, f"/proc/self/ns/{name}") from None

    # -- namespaces and mounts ---------------------------------------------
    def unshare(self, flags: int) -> None:
        _check(_unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(_setns(fd, nstype), "setns")

    def mount(self, source, target, fstype, flags=0, data=None, *, shown=None) -> None:
        """mount(2). ``shown`` is the path to name in errors (the container path,
        when ``target`` is a /proc/self/fd/N magic link)."""
        if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) == -1:
            what = "remount" if flags & MS_REMOUNT else ("bind mount" if flags & MS_BIND else f"mount {fstype or ''}".strip())
            opts = ",".join(mount_flag_names(flags) + ([data] if data else []))
            raise SyscallError(f"{what} ({opts or 'defaults'}) of {shown_source(source)} on", ctypes.get_errno(),
                               shown or target)

    def mount_flags_of(self, path: str) -> int:
        """The per-mount flags a remount must keep (statvfs(3) f_flag): the
        kernel refuses to drop locked ones (mount(2), EPERM)."""
        f = os.statvfs(path).f_flag
        out = 0
        for st_bit, ms_bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                               (os.ST_RELATIME, MS_RELATIME)):
            if f & st_bit:
                out |= ms_bit
        return out

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_umount2(_b(target), flags), "umount", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        _check(_syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root to", new_root)

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(_sethostname(raw, len(raw)), "sethostname")

    # -- fds and paths -----------------------------------------------------
    def open_dir(self, path: str) -> int:
        try:
            return os.open(path, safepath.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise _oserror("opening", e, path) from None

    def open_path(self, path: str) -> int:
        """An O_PATH fd for a host path (a -v source, the host's /dev/null)."""
        try:
            return os.open(path, safepath.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            raise _oserror("opening", e, path) from None

    def open_beneath(self, root_fd: int, path: str, *, directory: bool = False, create_dirs: bool = False,
                     create_file: bool = False) -> int:
        flags = safepath.O_PATH | (os.O_DIRECTORY if directory else 0)
        return safepath.open_beneath(root_fd, path, flags, create_dirs=create_dirs, create_file=create_file)

    def open_fd_path(self, fd: int, flags: int) -> int:
        """Open again, with ``flags``, what the O_PATH ``fd`` names, through
        /proc/self/fd/N: no path of the container's files is looked up."""
        try:
            return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
        except OSError as e:
            raise _oserror("reopening", e, f"/proc/self/fd/{fd}") from None

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def fd_path(self, fd: int) -> str:
        return safepath.fd_path(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def mknod(self, path: str, mode: int, device: int, *, shown=None) -> None:
        try:
            os.mknod(path, mode, device)
        except OSError as e:
            raise _oserror("mknod", e, shown or path) from None

    def symlink(self, target: str, path: str, *, shown=None) -> None:
        try:
            os.symlink(target, path)
        except OSError as e:
            raise _oserror(f"symlink -> {target} at", e, shown or path) from None

    def chmod(self, path: str, mode: int) -> None:
        try:
            os.chmod(path, mode)
        except OSError as e:
            raise _oserror("chmod", e, path) from None

    def chdir(self, path: str) -> None:
        try:
            os.chdir(path)
        except OSError as e:
            raise _oserror("chdir", e, path) from None

    def makedirs(self, path: str) -> None:
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        except OSError as e:
            raise _oserror("creating working directory", e, path) from None

    def getcwd(self) -> str:
        """The cwd, or "(unreachable)": getcwd(3) fails (or prefixes that
        word) for a directory outside the process's root."""
        try:
            return os.getcwd()
        except OSError:
            return "(unreachable)"

    def fchdir(self, fd: int) -> None:
        try:
            os.fchdir(fd)
        except OSError as e:
            raise _oserror("fchdir", e) from None

    def chroot(self, path: str) -> None:
        try:
            os.chroot(path)
        except OSError as e:
            raise _oserror("chroot", e, path) from None

    def setsid(self) -> None:
        try:
            os.setsid()
        except OSError as e:
            raise _oserror("setsid", e) from None

    def cloexec_from(self, first: int) -> None:
        """Mark every fd >= first close-on-exec (close_range(2) with
        CLOSE_RANGE_CLOEXEC), so fds the caller leaked to us never reach the
        container (CVE-2024-21626). One fcntl per fd on kernels before 5.11."""
        ret = _syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                       ctypes.c_uint(_CLOSE_RANGE_CLOEXEC))
        if ret == 0:
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        for fd in range(first, min(soft, 1 << 20)):
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass

    def set_inheritable(self, fd: int) -> None:
        os.set_inheritable(fd, True)

    # -- signals -------------------------------------------------------------
    def reset_signals(self) -> None:
        """Default dispositions and an empty mask.

        Python ignores SIGPIPE and SIGXFSZ and execve keeps "ignored", so a
        shell pipeline in the container would behave strangely (reliability
        case F39); handlers the runtime set must not stay either.
        """
        for sig in range(1, signal.NSIG):
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass  # signals glibc reserves for threads (32, 33)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    # -- privileges (prctl(2), capabilities(7)) ------------------------------
    def set_pdeathsig(self, sig: int) -> None:
        try:
            _prctl.set_pdeathsig(sig)
        except OSError as e:
            raise _oserror("setting the parent-death signal (PR_SET_PDEATHSIG)", e) from None

    def set_child_subreaper(self) -> None:
        """Orphaned descendants are reparented to us, not to init (prctl(2))."""
        try:
            _prctl.set_child_subreaper(1)
        except OSError as e:
            raise _oserror("becoming a child subreaper (PR_SET_CHILD_SUBREAPER)", e) from None

    def set_dumpable(self, flag: bool) -> None:
        try:
            _prctl.set_dumpable(flag)
        except OSError as e:
            raise _oserror("setting the dumpable flag (PR_SET_DUMPABLE)", e) from None

    def set_no_new_privs(self) -> None:
        try:
            _prctl.set_no_new_privs(1)
        except OSError as e:
            raise _oserror("setting no_new_privs (PR_SET_NO_NEW_PRIVS)", e) from None

    def capbset_drop(self, cap: int) -> None:
        try:
            _prctl.capbset_drop(cap)
        except OSError as e:
            raise _oserror(f"dropping capability {cap} from the bounding set", e) from None

    def clear_ambient(self) -> None:
        """Empty the ambient set; kernels before 4.3 have none (EINVAL), which is fine."""
        if _prctl5(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1:
            err = ctypes.get_errno()
            if err != errno.EINVAL:
                raise SyscallError("clearing the ambient capability set", err)

    def capset(self, keep: int) -> None:
        """Effective = permitted = the capabilities in the mask ``keep``,
        every other one cleared, inheritable empty: one cap_set_proc(3),
        which is one capset(2). python-prctl applies its "set" list before
        its "clear" list, so each capability goes in exactly one of them."""
        wanted = [c for c in _prctl.ALL_CAPS if keep >> c & 1]
        dropped = [c for c in _prctl.ALL_CAPS if not keep >> c & 1]
        ep = [_prctl.CAP_EFFECTIVE, _prctl.CAP_PERMITTED]
        try:
            _prctl.set_caps((wanted, ep, True), (dropped, ep, False), (list(_prctl.ALL_CAPS), _prctl.CAP_INHERITABLE, False))
        except OSError as e:
            raise _oserror("setting capabilities (capset)", e) from None

    def capget(self) -> tuple[int, int, int]:
        return capget()

    def setrlimit(self, res: int, soft: int, hard: int) -> None:
        resource.setrlimit(res, (soft, hard))  # OSError/ValueError: the caller names the limit

    def setgroups(self, groups: list[int]) -> None:
        os.setgroups(groups)

    def setresgid(self, gid: int) -> None:
        os.setresgid(gid, gid, gid)

    def setresuid(self, uid: int) -> None:
        os.setresuid(uid, uid, uid)

    def install_seccomp(self, fprog: SockFprog) -> None:
        """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) (seccomp(2)): the
        filter is inherited by every child and survives execve. Needs
        no_new_privs or CAP_SYS_ADMIN, otherwise EACCES."""
        if _prctl5(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) == -1:
            err = ctypes.get_errno()
            hint = None
            if err == errno.EACCES:
                hint = "installing a filter needs no_new_privs or CAP_SYS_ADMIN"
            elif err == errno.EINVAL:
                hint = "the kernel rejected the BPF program or lacks CONFIG_SECCOMP_FILTER"
            raise SyscallError("installing the seccomp filter", err, None, hint)

    def execve(self, path: bytes, argv: list[bytes], env: dict[bytes, bytes]) -> None:
        os.execve(path, argv, env)
