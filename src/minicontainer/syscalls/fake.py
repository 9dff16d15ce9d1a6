"""A recording syscall layer for unit tests: no root, no kernel changes.

Every call is appended to ``calls`` as a tuple (name, args...). Paths are
kept as the container paths the interpreter asked for, so a test can assert
"proc was mounted on /proc with nosuid,nodev,noexec" without any mount.
``fail`` maps a call name to an errno to inject a failure (like
``strace -e inject=mount:error=EIO``), to test cleanup paths.
"""

from __future__ import annotations

import os
import stat

from minicontainer.errors import SyscallError


class Recorder:
    """``fork_returns``: what fork() gives, 0 to play the child's side of a
    plan, a pid to play the runtime's (a list: one value per fork). ``files`` maps paths opened with
    open_path to the (mode, rdev) fstat reports (the host's /dev/null by
    default); everything opened beneath the root is a directory unless its
    path is in ``files``. ``submounts`` maps a path to the mount points
    ``submounts()`` reports below it (none by default)."""

    def __init__(self, fail: dict[str, int] | None = None, *, fork_returns: int = 4242, files=None,
                 submounts=None):
        self.calls: list[tuple] = []
        self.fail = dict(fail or {})
        self.fork_returns = fork_returns
        self.files = {"/dev/null": (stat.S_IFCHR | 0o666, os.makedev(1, 3))} if files is None else dict(files)
        self.caps = (0, 0, 0)
        self.submount_table = dict(submounts or {})
        self._fds: dict[int, str] = {}
        self._next_fd = 100
        self.replies: dict[str, list[bytes]] = {}  # what read() of a named fd gives, in order (then EOF)

    def _rec(self, name: str, *args) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise SyscallError(name, self.fail[name], str(args[0]) if args else None)

    def _fd(self, path: str) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = path
        return fd

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    # namespaces and mounts
    def unshare(self, flags):
        self._rec("unshare", flags)

    def setns(self, fd, nstype=0):
        self._rec("setns", fd, nstype)

    def link_up(self, name):
        self._rec("link_up", name)

    def new_netns(self):
        self._rec("new_netns")
        return self._fd("netns")

    def net_bridge(self, name, address, prefixlen):
        self._rec("net_bridge", name, address, prefixlen)

    def net_veth(self, host, peer, bridge, netns_fd):
        self._rec("net_veth", host, peer, bridge, netns_fd)

    def net_configure(self, netns_fd, peer, ifname, address, prefixlen, gateway):
        self._rec("net_configure", netns_fd, peer, ifname, address, prefixlen, gateway)

    def write_file(self, path, content):
        self._rec("write_file", path, content)

    def net_delete_link(self, name):
        self._rec("net_delete_link", name)
        return True

    def bind_port(self, proto, host_ip, port):
        self._rec("bind_port", proto, host_ip, port)
        return self._fd(f"socket:{host_ip}:{port}/{proto}"), port or 32768

    def spawn_proxy(self, config, fds):
        self._rec("spawn_proxy", config, tuple(fds))
        return 4343, 1

    def stop_process(self, pid, start, *, grace=2.0, then_kill=False):
        self._rec("stop_process", pid, start)

    def nft(self, commands):
        self._rec("nft", tuple(commands))

    def host_sysctl(self, key, value):
        self._rec("host_sysctl", key, value)

    def mount(self, source, target, fstype, flags=0, data=None, *, shown=None):
        self._rec("mount", self._show(source), shown or self._show(target), fstype, flags, data)

    def fill_volume(self, root_fd, target, volume_dir):
        self._rec("fill_volume", target, volume_dir)
        return 0

    def mount_flags_of(self, path):
        return 0

    def mount_setattr(self, fd, attr_set, attr_clr=0, *, recursive=True, shown=None, userns_fd=0):
        self._rec("mount_setattr", shown or self._fds.get(fd, fd), attr_set, attr_clr, recursive)

    def open_tree(self, path):
        self._rec("open_tree", path)
        return self._fd(f"tree:{path}")

    def move_mount(self, fd, target, *, shown=None):
        self._rec("move_mount", self._fds.get(fd, fd), shown or target)

    def send_fds(self, sock_fd, data, fds):
        self._rec("send_fds", self._fds.get(sock_fd, sock_fd), data, len(fds))

    def recv_fds(self, sock_fd, count):
        self._rec("recv_fds", self._fds.get(sock_fd, sock_fd))
        return b"L", [self._fd(f"received:{i}") for i in range(count)]

    def submounts(self, fd):
        return list(self.submount_table.get(self._fds.get(fd, fd), []))

    def umount2(self, target, flags=0):
        self._rec("umount2", target, flags)

    def pivot_root(self, new_root, put_old):
        self._rec("pivot_root", new_root, put_old)

    def sethostname(self, name):
        self._rec("sethostname", name)

    # processes and pipes
    def fork(self):
        self._rec("fork")
        if isinstance(self.fork_returns, list):  # one value per fork, in order
            return self.fork_returns.pop(0)
        return self.fork_returns

    def pipe(self):
        self._rec("pipe")
        return self._fd("pipe:r"), self._fd("pipe:w")

    def waitpid(self, pid):
        self._rec("waitpid", pid)
        return 0  # exited with 0

    def read(self, fd, n):
        name = self._fds.get(fd, fd)
        self._rec("read", name)
        if self.replies.get(name):
            return self.replies[name].pop(0)
        return b"1" if name == "sync" else b""

    def write_file(self, path, data):
        self._rec("write_file", path, data)

    def write(self, fd, data):
        self._rec("write", self._fds.get(fd, fd), data)

    def getppid(self):
        return 0

    def open_namespaces(self, pid, start, types):
        self._rec("open_namespaces", pid, tuple(types))
        return {ns: self._fd(f"ns:{ns}") for ns in types}

    def open_ns_path(self, path):
        self._rec("open_ns_path", path)
        return self._fd(f"nspath:{path}")

    def open_ns(self, name):
        self._rec("open_ns", name)
        return self._fd(f"ns:{name}")

    # fds and paths
    def open_dir(self, path):
        self._rec("open_dir", path)
        return self._fd(path)

    def open_path(self, path):
        self._rec("open_path", path)
        return self._fd(path)

    def open_beneath(self, root_fd, path, *, directory=False, create_dirs=False, create_file=False):
        self._rec("open_beneath", path, create_dirs, create_file)
        return self._fd(path)

    def fstat(self, fd):
        mode, rdev = self.files.get(self._fds.get(fd), (stat.S_IFDIR | 0o755, 0))
        return _Stat(mode, rdev)

    def open_fd_path(self, fd, flags):
        self._rec("open_fd_path", self._fds.get(fd, fd), flags)
        return self._fd(f"reopened:{fd}")

    def fd_path(self, fd):
        return f"/proc/self/fd/{fd}"

    def _show(self, p):
        """Turn /proc/self/fd/N[/name] back into the path it stands for."""
        if isinstance(p, str) and p.startswith("/proc/self/fd/"):
            rest = p[len("/proc/self/fd/"):]
            num, _, tail = rest.partition("/")
            if num.isdigit() and int(num) in self._fds:
                base = self._fds[int(num)]
                return f"{base.rstrip('/')}/{tail}" if tail else base
        return p

    def close(self, fd):
        self._fds.pop(fd, None)

    def mknod(self, path, mode, device, *, shown=None):
        self._rec("mknod", shown or self._show(path), mode, os.major(device), os.minor(device))

    def symlink(self, target, path, *, shown=None):
        self._rec("symlink", target, shown or self._show(path))

    def chmod(self, path, mode):
        self._rec("chmod", self._show(path), mode)

    def chdir(self, path):
        self._rec("chdir", path)

    def fchdir(self, fd):
        self._rec("fchdir", self._fds.get(fd, fd))

    def chroot(self, path):
        self._rec("chroot", path)

    def setsid(self):
        self._rec("setsid")

    def makedirs(self, path):
        self._rec("makedirs", path)

    def getcwd(self):
        return "/"

    def cloexec_from(self, first):
        self._rec("cloexec_from", first)

    def reset_signals(self):
        self._rec("reset_signals")

    # privileges
    def set_pdeathsig(self, sig):
        self._rec("set_pdeathsig", sig)

    def set_child_subreaper(self):
        self._rec("set_child_subreaper")

    def set_dumpable(self, flag):
        self._rec("set_dumpable", flag)

    def set_no_new_privs(self):
        self._rec("set_no_new_privs")

    def capbset_drop(self, cap):
        self._rec("capbset_drop", cap)

    def clear_ambient(self):
        self._rec("clear_ambient")

    def capset(self, keep):
        self._rec("capset", keep)
        self.caps = (keep, keep, 0)

    def capget(self):
        return self.caps

    def setrlimit(self, res, soft, hard):
        self._rec("setrlimit", res, soft, hard)

    def setgroups(self, groups):
        self._rec("setgroups", tuple(groups))

    def setresgid(self, gid):
        self._rec("setresgid", gid)

    def setresuid(self, uid):
        self._rec("setresuid", uid)

    def install_seccomp(self, fprog):
        self._rec("install_seccomp")

    def execve(self, path, argv, env):
        self._rec("execve", path, argv, env)
        raise FileNotFoundError(2, "fake: not executed")

    hook_results: dict = {}  # a hook's path -> (exit code or None for a timeout, output); default (0, b"")

    def run_hook(self, path, argv, env, stdin, timeout):
        self._rec("run_hook", path, tuple(argv), tuple(env), stdin, timeout)
        return self.hook_results.get(path, (0, b""))

    def host_pid(self):
        self._rec("host_pid")
        return 4242



class _Stat:
    """What the interpreter reads of fstat(2): the type and the device number."""

    def __init__(self, mode: int, rdev: int):
        self.st_mode = mode
        self.st_rdev = rdev


class FakeChannels:
    """process.Channels for a plan run against the Recorder: the pipe ends
    are names the Recorder understands ("sync" reads the go byte, "errors"
    reads EOF: the command "runs"), and a child's failure is raised instead
    of exiting the test process."""

    sync_r = sync_w = "sync"
    err_r = "errors"
    master_fd = None

    def __init__(self, sc: Recorder):
        self.sc = sc
        sc.replies.setdefault("ctl-runtime", [b"U", b"4244\n"])
        sc.replies.setdefault("ctl-child", [b"M", b"A"])

    def in_child(self, keep=()):
        self.sc.calls.append(("close_inherited_fds",))

    def in_parent(self):
        pass

    def close_sync(self):
        pass

    # --userns as root: the child says "U" (unshared), the runtime "M" (mapped), the child PID 1's pid
    ctl, ctl_child = "ctl-runtime", "ctl-child"

    def close_ctl(self):
        pass

    def attach_stdio(self, root_fd, tty):
        self.sc.calls.append(("attach_stdio", tty))

    def runtime_alive(self):
        return True

    def runtime_gone(self):
        raise RuntimeError("fake: the runtime is gone")

    def child_failed(self, e):
        raise e

    start_fifo = "start-fifo"

    def report_created(self, sc):
        sc.write(self.err_w, b"created")

    err_w = "errors"

    def read_errors(self, sc, on_created=None):
        return sc.read(self.err_r, 65536)

    def report_mounted(self, sc):
        sc.write(self.err_w, b"mounted")

    def await_mounted(self, sc):
        sc.read(self.err_r, 1)
        return b""

    def decode_error(self, data):
        raise AssertionError("fake: no error expected")

    reported = None  # the error a test's child "already reported" when a runtime step fails

    def reported_error(self):
        return self.reported

    def receive_console(self):
        pass
