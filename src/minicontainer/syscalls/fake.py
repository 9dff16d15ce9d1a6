"""A recording syscall layer for unit tests: no root, no kernel changes.

Every call is appended to ``calls`` as a tuple (name, args...). Paths are
kept as the container paths the interpreter asked for, so a test can assert
"proc was mounted on /proc with nosuid,nodev,noexec" without any mount.
``fail`` maps a call name to an errno to inject a failure (like
``strace -e inject=mount:error=EIO``), to test cleanup paths.
"""

from __future__ import annotations

import os

from minicontainer.errors import SyscallError


class Recorder:
    def __init__(self, fail: dict[str, int] | None = None):
        self.calls: list[tuple] = []
        self.fail = dict(fail or {})
        self._fds: dict[int, str] = {}
        self._next_fd = 100

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

    def mount(self, source, target, fstype, flags=0, data=None, *, shown=None):
        self._rec("mount", self._show(source), shown or self._show(target), fstype, flags, data)

    def mount_flags_of(self, path):
        return 0

    def umount2(self, target, flags=0):
        self._rec("umount2", target, flags)

    def pivot_root(self, new_root, put_old):
        self._rec("pivot_root", new_root, put_old)

    def sethostname(self, name):
        self._rec("sethostname", name)

    def prctl(self, option, *args):
        self._rec("prctl", option, *args)

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

    def cloexec_from(self, first):
        self._rec("cloexec_from", first)

    def execve(self, path, argv, env):
        self._rec("execve", path, argv, env)
        raise FileNotFoundError(2, "fake: not executed")
