"""The real kernel: every call the runtime makes to set a container up.

This is the only module that binds libc. Python 3.11 has no os.unshare or
os.setns (they arrive in 3.12) and no mount, pivot_root, umount2, capget,
seccomp or bpf at all, so those go through ctypes here (bpf(2) loads and
attaches the cgroup v2 device program that cgroups/devices.py writes);
prctl(2) options that python-prctl covers (the bounding set, capability sets, no_new_privs, the
parent-death signal, dumpable) go through python-prctl, the project's chosen
binding. Two prctl options it lacks are called through ctypes: the ambient
set (PR_CAP_AMBIENT, Linux 4.3) and PR_SET_SECCOMP with a filter program
(python-prctl only knows the old strict mode). mount_setattr(2) (Linux 5.12),
which makes a whole mount tree read-only in one call, has no glibc wrapper
either: it is called by number with its ``struct mount_attr``.

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
import fcntl
import os
import re
import resource  # setrlimit and the close_range fallback run after pivot_root
import select
import signal
import struct
import sys
import time

from minicontainer import safepath
from minicontainer.errors import ContainerError, SyscallError
from minicontainer.procfs import proc_start_time
from minicontainer.syscalls.flags import (
    AT_EMPTY_PATH,
    AT_RECURSIVE,
    CLONE_NEWNET,
    CLONE_NEWNS,
    MOVE_MOUNT_F_EMPTY_PATH,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
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

# netdevice(7): struct ifreq is the name (IFNAMSIZ 16) and a union of 24 bytes; ifr_flags is a short.
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


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
# Two modules are imported on first use, not with this module: python-prctl
# and socket. A run's runtime calls neither (together ~9 ms of every start and
# ~1.5 MB of its memory, issue 15). The container's process needs both: a
# forked child loads them at once, which for it happens while the runtime is
# still writing its cgroups, so they cost the start nothing. And every call
# that takes a process away from the host's filesystem (unshare of a mount
# namespace, setns, pivot_root, chroot) loads them before it goes: no process
# can import them from a container's files.
_late: dict = {}


def _late_module(name: str):
    module = _late.get(name)
    if module is None:
        module = _late[name] = __import__(name)
    return module


def _pr():
    """python-prctl (``import prctl``)."""
    return _late_module("prctl")


def _sock():
    """The socket module."""
    return _late_module("socket")


def _leaving_host() -> None:
    """Load the late modules now: this process may not see the host's files afterwards."""
    _pr()
    _sock()


_prctl5 = _bind("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])
_statfs = _bind("statfs", [_c_str, ctypes.c_void_p])
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# glibc has no pivot_root() wrapper: call it by number (asm/unistd.h).
# os.uname().machine is what platform.machine() returns; the platform module costs ~3 ms to import.
_MACHINE = os.uname().machine
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "i686": 217, "armv7l": 218}.get(_MACHINE, 155)
# bpf(2) has no glibc wrapper either.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "i686": 357, "armv7l": 386}.get(_MACHINE, 321)
# close_range(2) and mount_setattr(2) have one number on every architecture
# (the syscall table is shared since Linux 5.1).
_SYS_CLOSE_RANGE = 436
_SYS_MOUNT_SETATTR = 442
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_AT_FDCWD = -100
_CLOSE_RANGE_CLOEXEC = 1 << 2

# capget(2): version 3 carries 64-bit sets as two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_capget = _bind("capget", [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)])


class MountAttr(ctypes.Structure):
    """struct mount_attr (linux/mount.h), MOUNT_ATTR_SIZE_VER0: 32 bytes."""

    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


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


# -- bpf(2): the cgroup v2 device filter (cgroups/devices.py writes the program) --

BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_QUERY = 5, 8, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # the attach type
BPF_F_ALLOW_MULTI = 2  # other programs (systemd's, a parent's) keep running too; each must allow


class _ProgLoadAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type (Linux 4.17)."""

    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32)]


class _ProgAttachAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_ATTACH."""

    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


class _ProgQueryAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_QUERY."""

    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32), ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    ret = _syscall(ctypes.c_long(_SYS_BPF), ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_long(ctypes.sizeof(attr)))
    return -ctypes.get_errno() if ret < 0 else ret


def _bpf_hint(err: int) -> str | None:
    if err == errno.EPERM:
        return "loading and attaching eBPF programs needs CAP_SYS_ADMIN (inside a container: --privileged)"
    if err in (errno.ENOSYS, errno.EINVAL):
        return ("the kernel lacks eBPF device filters for cgroup v2 (CONFIG_CGROUP_BPF, Linux 4.15+); "
                "--privileged runs without one")
    return None


def load_device_filter(program: bytes, name: str = "mc_devices") -> int:
    """bpf(BPF_PROG_LOAD) of a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd.
    If the verifier refuses it, the load is repeated with the verifier's log,
    whose last line goes into the error."""
    n = len(program) // 8
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"MIT")  # no GPL-only helper is called, so any license loads
    attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=n,
                         insns=ctypes.addressof(insns), license=ctypes.addressof(license),
                         prog_name=name.encode()[:15])
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    err = -fd
    hint = _bpf_hint(err)
    if err in (errno.EINVAL, errno.EACCES):
        log = ctypes.create_string_buffer(1 << 16)
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        again = _bpf(BPF_PROG_LOAD, attr)
        if again >= 0:
            return again
        # The log ends with statistics ("processed N insns ..."); the reason comes before them.
        stats = ("processed ", "verification time", "stack depth")
        lines = [ln for ln in log.value.decode(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith(stats)]
        if lines:
            hint = f"the verifier said: {lines[-1].strip()}"
    raise SyscallError("loading the device filter (bpf BPF_PROG_LOAD)", err, None, hint)


def attach_device_filter(cgroup_dir: str, program: bytes) -> None:
    """Load ``program`` and attach it to the cgroup v2 directory with
    bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI). The cgroup
    keeps the program: it runs until the cgroup is removed, so both fds
    are closed here."""
    prog = load_device_filter(program)
    try:
        try:
            dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise _oserror("opening the cgroup", e, cgroup_dir) from None
        try:
            attr = _ProgAttachAttr(target_fd=dirfd, attach_bpf_fd=prog, attach_type=BPF_CGROUP_DEVICE,
                                   attach_flags=BPF_F_ALLOW_MULTI)
            ret = _bpf(BPF_PROG_ATTACH, attr)
            if ret < 0:
                hint = _bpf_hint(-ret)
                if -ret == errno.EPERM:
                    hint = ("a parent cgroup has a device program attached without BPF_F_ALLOW_MULTI, or "
                            + (hint or "the runtime lacks CAP_SYS_ADMIN"))
                raise SyscallError("attaching the device filter (bpf BPF_PROG_ATTACH) to", -ret, cgroup_dir, hint)
        finally:
            os.close(dirfd)
    finally:
        os.close(prog)


def device_filters(cgroup_dir: str) -> list[int]:
    """The ids of the device programs attached to this cgroup itself
    (bpf(BPF_PROG_QUERY)); for tests and for a learner's curiosity
    (``bpftool cgroup show DIR`` prints the same)."""
    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ids = (ctypes.c_uint32 * 64)()
        attr = _ProgQueryAttr(target_fd=dirfd, attach_type=BPF_CGROUP_DEVICE, prog_ids=ctypes.addressof(ids),
                              prog_cnt=64)
        ret = _bpf(BPF_PROG_QUERY, attr)
        if ret < 0:
            raise SyscallError("querying the device filters (bpf BPF_PROG_QUERY) of", -ret, cgroup_dir)
        return list(ids[:attr.prog_cnt])
    finally:
        os.close(dirfd)


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


def submounts_of(mnt_id: int, mountinfo: list[str]) -> list[str]:
    """Every mount below mount ``mnt_id`` in mountinfo lines (proc(5): the
    first two fields are the mount's id and its parent's, the fifth its
    mount point), as paths relative to that mount ("/proc", "/sys/fs/cgroup"),
    in table order."""
    children: dict[int, list[tuple[int, str]]] = {}
    top = None
    for line in mountinfo:
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            children.setdefault(int(fields[1]), []).append((int(fields[0]), point))
            if int(fields[0]) == mnt_id:
                top = point
    out: list[str] = []
    todo = [mnt_id]
    seen = {mnt_id}
    while todo:
        for child, point in children.get(todo.pop(0), []):
            if child not in seen:  # the root mount is its own parent in some namespaces
                seen.add(child)
                if top is not None and top != "/" and point.startswith(top + "/"):
                    point = point[len(top):]
                out.append(point)
                todo.append(child)
    return out


def get_dumpable() -> int:
    return _pr().get_dumpable()


def raw_syscall(nr: int, *args: int) -> int:
    """syscall(2) with integer arguments; returns -errno instead of raising.
    Tests use it to probe what a seccomp filter lets through."""
    ret = _syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def _in_thread(fn, netns_fd: int | None):
    """``fn()`` in a thread of its own network namespace: a new one
    (``netns_fd`` None) or the one ``netns_fd`` names (setns(2))."""
    out: dict = {}

    def body():
        try:
            if netns_fd is None:
                _check(_unshare(CLONE_NEWNET), "unshare of a network namespace")
            else:
                _check(_setns(netns_fd, CLONE_NEWNET), "joining the container's network namespace")
            out["value"] = fn()
        except BaseException as e:  # re-raised in the caller
            out["error"] = e

    # Imported here, unlike the rest of this module: only the runtime calls this, never a process that
    # has entered a container's root, and a run without networks does not pay ~1.3 ms for threading.
    import threading

    t = threading.Thread(target=body, name="netns")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


class Linux:
    """The real kernel. Methods mirror the syscalls one to one."""

    # -- processes ---------------------------------------------------------
    def fork(self) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                _leaving_host()  # the container's process, or a helper of its setup (see _late)
            except BaseException as e:  # noqa: BLE001 - a broken install: the child must not unwind as the runtime
                try:
                    os.write(2, f"minicontainer: error: the container's process cannot load python-prctl and socket "
                                f"({e}), so nothing runs (hint: reinstall with ./scripts/setup)\n".encode())
                finally:
                    os._exit(125)
        return pid

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

    def write_file(self, path: str, data: str) -> None:
        """One write(2) of ``data`` (a uid_map takes the whole map from a single write, user_namespaces(7))."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise _oserror("writing", e, path) from None

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
        if flags & CLONE_NEWNS:
            _leaving_host()  # mounts may change what this process sees
        _check(_unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        if nstype in (0, CLONE_NEWNS):
            _leaving_host()  # a mount namespace's root is not the host's
        _check(_setns(fd, nstype), "setns")

    def link_up(self, name: str) -> None:
        """Set IFF_UP on an interface of our network namespace: SIOCGIFFLAGS,
        then SIOCSIFFLAGS on any socket (netdevice(7)). An ioctl, not
        netlink: a container with --network none must not pay pyroute2's import."""
        try:
            socket = _sock()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                req = struct.pack("16sh14x", name.encode(), 0)
                flags = struct.unpack("16sh14x", fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
                fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh14x", name.encode(), flags | _IFF_UP))
        except OSError as e:
            raise _oserror(f"bringing up the interface {name}", e, None) from None

    # -- bridge networks (network/netlink.py, imported on first use) --------------
    def new_netns(self) -> int:
        """A new network namespace, held by the fd returned. A thread makes it
        (unshare(2) of a thread's namespace leaves the rest of the process
        where it is) and opens it before it ends."""
        return _in_thread(lambda: os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC), None)

    def net_bridge(self, name: str, address: str, prefixlen: int) -> None:
        from minicontainer.network import netlink

        netlink.ensure_bridge(name, address, prefixlen)

    def net_veth(self, host: str, peer: str, bridge: str, netns_fd: int) -> None:
        from minicontainer.network import netlink

        netlink.add_veth(host, peer, bridge, netns_fd)

    def net_configure(self, netns_fd: int, peer: str, ifname: str, address: str, prefixlen: int,
                      gateway: str | None) -> None:
        from minicontainer.network import netlink

        _in_thread(lambda: netlink.configure_inside(peer, ifname, address, prefixlen, gateway), netns_fd)

    def write_file(self, path: str, content: str) -> None:
        """Write a file of the container's state directory in place (a bind
        mount of it follows the inode), never through a symlink (O_NOFOLLOW)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _oserror("writing", e, path) from None
        try:
            os.ftruncate(fd, 0)
            data = memoryview(content.encode())
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def net_delete_link(self, name: str) -> bool:
        from minicontainer.network import netlink

        return netlink.delete_link(name)

    # -- published ports and outbound NAT (network/ports.py, proxy.py, nat.py) ----
    def bind_port(self, proto: str, host_ip: str, port: int) -> tuple[int, int]:
        """A listening socket on host_ip:port (socket(7), bind(2), listen(2));
        returns its fd and the port (the kernel's choice for port 0, ip(7)).
        SO_REUSEADDR only for tcp: it lets a port in TIME_WAIT be bound again
        (as docker-proxy, Go's default), never one that is listened on; for
        udp it would let two sockets share the port."""
        socket = _sock()
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
        try:
            if proto == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host_ip, port))
            if proto == "tcp":
                sock.listen(128)
            chosen = sock.getsockname()[1]
        except OSError as e:
            sock.close()
            where = f"{host_ip}:{port}/{proto}"
            if e.errno == errno.EADDRINUSE:
                raise ContainerError(f"host port {where} is already in use",
                                     f"choose another host port with -p, or find what holds it with: "
                                     f"ss -l{'t' if proto == 'tcp' else 'u'}np 'sport = :{port}'") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise ContainerError(f"cannot publish on {host_ip}: it is not an address of this host",
                                     "give one of the host's addresses, or none for all of them") from None
            raise _oserror("binding the published port", e, where) from None
        return sock.detach(), chosen

    def spawn_proxy(self, config: dict, fds) -> tuple[int, int]:
        """The port proxy (network/proxy.py) with the listening sockets ``fds``;
        (pid, start time). Its own session (the terminal's ^C is for the
        container, not for it); it gets SIGTERM if we die first
        (PR_SET_PDEATHSIG, set between fork and exec, and checked against a
        parent that died before that)."""
        import json
        import subprocess

        parent = os.getpid()

        def lifeline():
            _pr().set_pdeathsig(signal.SIGTERM)
            if os.getppid() != parent:
                os._exit(0)

        try:
            proc = subprocess.Popen([sys.executable, "-m", "minicontainer.network.proxy", json.dumps(config)],
                                    pass_fds=tuple(fds), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=lifeline)
        except OSError as e:
            raise _oserror("starting the port proxy", e, sys.executable) from None
        return proc.pid, proc_start_time(proc.pid)

    def stop_process(self, pid: int, start: int, *, grace: float = 2.0, then_kill: bool = False) -> None:
        """SIGTERM to ``pid`` if it is still the process that started at
        ``start``, and wait until it is gone: our own child (the port proxy,
        which exits on SIGTERM) until it is reaped; another process at most
        ``grace`` seconds, and with ``then_kill`` SIGKILL after that and 2 s
        more."""
        import time

        if pid <= 1 or not start or proc_start_time(pid) != start:
            return
        steps = [(signal.SIGTERM, grace)] + ([(signal.SIGKILL, 2.0)] if then_kill else [])
        for sig, wait in steps:
            try:
                os.kill(pid, sig)  # checked just now to be that process (pid and start time)
            except ProcessLookupError:
                return
            try:
                os.waitpid(pid, 0)
                return
            except ChildProcessError:
                pass  # not ours (a sweep of a dead runtime's proxy, another command's create): wait for it to go
            end = time.monotonic() + wait
            while time.monotonic() < end:
                if proc_start_time(pid) != start:
                    return
                time.sleep(0.01)

    def nft(self, commands) -> None:
        """nft(8) -f -: the commands as one transaction (all or nothing)."""
        import subprocess

        try:
            proc = subprocess.run(["nft", "-f", "-"], input="\n".join(commands) + "\n", capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ContainerError(f"nft could not be run: {e}", "check that nftables is installed") from None
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
            raise ContainerError(f"nft refused the network's rules: {first}",
                                 "the kernel may lack nf_tables (modprobe nf_tables nft_masq)")

    def host_sysctl(self, key: str, value: str) -> None:
        """Write /proc/sys/KEY of the runtime's own namespaces (sysctl(8))."""
        path = "/proc/sys/" + key
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise _oserror("setting", e, path) from None
    def fill_volume(self, root_fd: int, target: str, volume_dir: str) -> int:
        """Copy the image's ``target`` (beneath ``root_fd``) into a new volume, once (volumes.fill)."""
        from minicontainer import volumes

        try:
            return volumes.fill(root_fd, target, volume_dir)
        except OSError as e:
            raise _oserror(f"filling the volume at {volume_dir} from", e, target) from None

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

    def mount_setattr(self, fd: int, attr_set: int, attr_clr: int = 0, *, recursive: bool = True,
                      shown=None, userns_fd: int = 0) -> None:
        """mount_setattr(2) on the mount ``fd`` was opened on (AT_EMPTY_PATH),
        with AT_RECURSIVE on every mount below it too, in one call: the
        kernel applies all or none. ENOSYS before Linux 5.12. ``userns_fd``:
        the user namespace of MOUNT_ATTR_IDMAP."""
        attr = MountAttr(attr_set, attr_clr, 0, userns_fd)
        flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
        ret = _syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(fd), b"", ctypes.c_uint(flags),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        if ret == -1:
            err = ctypes.get_errno()
            hint = "mount_setattr(2) needs Linux 5.12 or later" if err == errno.ENOSYS else None
            raise SyscallError("mount_setattr" + (" (recursive)" if recursive else "") + " of", err,
                               shown or self.fd_path(fd), hint)

    def open_tree(self, path: str) -> int:
        """open_tree(2) OPEN_TREE_CLONE: a detached bind mount of ``path`` (not of what is mounted below it)."""
        fd = _syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(_AT_FDCWD), _b(path),
                      ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
        if fd == -1:
            raise SyscallError("open_tree (a detached bind mount) of", ctypes.get_errno(), path)
        return fd

    def move_mount(self, fd: int, target: str, *, shown=None) -> None:
        """move_mount(2): attach the detached mount ``fd`` at ``target``."""
        ret = _syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(fd), b"", ctypes.c_int(_AT_FDCWD), _b(target),
                       ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
        if ret == -1:
            raise SyscallError("move_mount (attaching a detached mount) on", ctypes.get_errno(), shown or target)

    def send_fds(self, sock_fd: int, data: bytes, fds: list[int]) -> None:
        """Pass ``fds`` over the unix socket ``sock_fd`` (SCM_RIGHTS, unix(7))."""
        socket = _sock()
        sock = socket.socket(fileno=sock_fd)
        try:
            socket.send_fds(sock, [data], fds)
        finally:
            sock.detach()

    def recv_fds(self, sock_fd: int, count: int) -> tuple[bytes, list[int]]:
        """The message and the fds (close-on-exec) sent with :meth:`send_fds`."""
        socket = _sock()
        sock = socket.socket(fileno=sock_fd)
        try:
            data, fds, _, _ = socket.recv_fds(sock, 64, count)
        finally:
            sock.detach()
        return data, fds

    def submounts(self, fd: int) -> list[str]:
        """The mount points of every mount below the one ``fd`` is on
        (its mount id from /proc/self/fdinfo, the tree from mountinfo)."""
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                mnt_id = next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))
            with open("/proc/self/mountinfo") as f:
                lines = f.read().splitlines()
        except (OSError, StopIteration, ValueError, IndexError) as e:
            raise SyscallError("reading the mount table for", getattr(e, "errno", None) or errno.EIO,
                               self.fd_path(fd)) from None
        return submounts_of(mnt_id, lines)

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_umount2(_b(target), flags), "umount", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        _leaving_host()
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
        _leaving_host()
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
            _pr().set_pdeathsig(sig)
        except OSError as e:
            raise _oserror("setting the parent-death signal (PR_SET_PDEATHSIG)", e) from None

    def set_child_subreaper(self) -> None:
        """Orphaned descendants are reparented to us, not to init (prctl(2))."""
        try:
            _pr().set_child_subreaper(1)
        except OSError as e:
            raise _oserror("becoming a child subreaper (PR_SET_CHILD_SUBREAPER)", e) from None

    def set_dumpable(self, flag: bool) -> None:
        try:
            _pr().set_dumpable(flag)
        except OSError as e:
            raise _oserror("setting the dumpable flag (PR_SET_DUMPABLE)", e) from None

    def set_no_new_privs(self) -> None:
        try:
            _pr().set_no_new_privs(1)
        except OSError as e:
            raise _oserror("setting no_new_privs (PR_SET_NO_NEW_PRIVS)", e) from None

    def capbset_drop(self, cap: int) -> None:
        try:
            _pr().capbset_drop(cap)
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
        pr = _pr()
        wanted = [c for c in pr.ALL_CAPS if keep >> c & 1]
        dropped = [c for c in pr.ALL_CAPS if not keep >> c & 1]
        ep = [pr.CAP_EFFECTIVE, pr.CAP_PERMITTED]
        try:
            pr.set_caps((wanted, ep, True), (dropped, ep, False), (list(pr.ALL_CAPS), pr.CAP_INHERITABLE, False))
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

    def wait_exit_or_memory_event(self, pid: int, events_file: str | None, *, v1: bool) -> bool:
        """Block until the memory cgroup whose ``events_file`` is given has
        news (True) or the process ``pid`` exits (False; pidfd_open(2): the
        pidfd is readable once it exited, before its parent reaps it). v1: an eventfd
        registered on memory.oom_control through cgroup.event_control
        (cgroup-v1/memory.rst, "OOM Control"): it counts OOM events; v2:
        poll(2) POLLPRI on memory.events, which the kernel wakes on every
        change (cgroup-v2.rst: "a file modified event")."""
        pidfd = os.pidfd_open(pid)
        fds = [pidfd]
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if events_file is None:
                pass
            elif v1:
                ctl = os.open(events_file, os.O_RDONLY | os.O_CLOEXEC)
                efd = os.eventfd(0, os.EFD_CLOEXEC)
                fds += [ctl, efd]
                control = os.open(os.path.join(os.path.dirname(events_file), "cgroup.event_control"),
                                  os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(control, f"{efd} {ctl}".encode())
                finally:
                    os.close(control)
                poller.register(efd, select.POLLIN)
            else:
                efd = os.open(events_file, os.O_RDONLY | os.O_CLOEXEC)
                fds.append(efd)
                os.read(efd, 4096)  # read once: the next change wakes poll
                poller.register(efd, select.POLLPRI)
            while True:
                for fd, _ in poller.poll():
                    if fd == pidfd:
                        return False
                    return True
        finally:
            for fd in fds:
                os.close(fd)

    def host_pid(self) -> int:
        """Our pid in the PID namespace of the procfs at /proc (before
        pivot_root: the host's), where getpid() says 1."""
        return int(os.readlink("/proc/self"))

    def run_hook(self, path: str, argv: list[str], env: list[str], stdin: bytes,
                 timeout: float | None) -> tuple[int | None, bytes]:
        """An OCI hook: fork, execve ``path`` with only ``env``, ``stdin`` on
        its stdin, stdout and stderr collected (the last 4 KiB). (exit code,
        output); None instead of the code when it ran past ``timeout`` and
        was killed. Only system calls: it also runs after pivot_root."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the hook
            try:
                os.dup2(in_r, 0)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                os.closerange(3, 1 << 16)  # none of the runtime's pipes may outlive it in the hook
                os.execve(path, argv or [path], dict(e.split("=", 1) for e in env if "=" in e))
            except OSError as e:
                os.write(2, f"exec {path}: {os.strerror(e.errno or 0)}".encode())
            os._exit(127)
        os.close(in_r)
        os.close(out_w)
        try:
            try:
                os.write(in_w, stdin)  # the state is small: the pipe's buffer holds it
            except BrokenPipeError:
                pass
            os.close(in_w)
            deadline = None if not timeout else time.monotonic() + timeout
            poller = select.poll()
            poller.register(out_r, select.POLLIN | select.POLLHUP)
            output = b""
            while True:
                if deadline is None:
                    poller.poll()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        return None, output
                    if not poller.poll(left * 1000):
                        continue
                data = os.read(out_r, 65536)
                if not data:
                    break
                output = (output + data)[-4096:]
            while True:  # stdout closed: wait for its end, still within the timeout
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status), output
                if deadline is not None and time.monotonic() >= deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return None, output
                time.sleep(0.01)
        except BaseException:
            # Interrupted (SIGTERM while creating: delete --force): the hook
            # must not outlive the create that ran it.
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            raise
        finally:
            os.close(out_r)
