"""The interpreter: carries out the plan's steps, one by one, through a
syscall layer (syscalls.linux.Linux for real, syscalls.fake.Recorder in unit
tests).

Every path inside the container is reached with safepath.open_beneath from
a directory fd of the new root, and the kernel is handed the magic link
``/proc/self/fd/N``; a string like ``rootfs + "/proc"`` is never resolved the
host way (reliability lesson 1).

After pivot_root no Python module may be imported (lesson 3): everything
this module needs is imported at the top, and the Exec step only calls
functions of already-loaded modules.
"""

from __future__ import annotations

import errno
import os
import signal
import stat

from minicontainer import plan as P
from minicontainer import safepath
from minicontainer.errors import CommandError, MiniError, SyscallError
from minicontainer.syscalls.flags import MNT_DETACH, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT

# Flags a read-only remount must keep: the kernel refuses (EPERM) to drop
# locked flags like nosuid/nodev when remounting (mount(2), "locked" mounts).
_KEEP_ON_REMOUNT = ("nosuid", "nodev", "noexec")


class Applier:
    """Applies child-phase steps in the forked child.

    ``explain`` is called with each step before it is carried out (or None).
    Parent-phase steps are carried out by process.py, which owns the fork.
    """

    def __init__(self, sc, explain=None, on_new_session=None, security_enter=None):
        self.sc = sc
        self.explain = explain
        self.root_path: str | None = None
        self.root_fd: int | None = None
        self.on_new_session = on_new_session  # process.py: set up stdio / the pty
        self.security_enter = security_enter  # security layer: last thing before exec
        self._handlers = {
            P.Unshare: self._unshare,
            P.MakeMountsPrivate: self._make_private,
            P.MountRootfs: self._mount_rootfs,
            P.Mount: self._mount,
            P.RemountReadonly: self._remount_ro,
            P.MakeDevice: self._mknod,
            P.Symlink: self._symlink,
            P.MaskPath: self._mask,
            P.SetHostname: self._sethostname,
            P.NewSession: self._new_session,
            P.PivotRoot: self._pivot_root,
            P.Chroot: self._chroot,
            P.Exec: self._exec,
            P.Note: lambda step: None,
        }

    def run(self, steps, start_index: int = 1) -> None:
        for i, step in enumerate(steps, start_index):
            if self.explain is not None:
                self.explain(i, step)
            self.apply(step)

    def apply(self, step) -> None:
        handler = self._handlers.get(type(step))
        if handler is None:
            raise MiniError(f"internal error: no handler for step {type(step).__name__}")
        handler(step)

    # -- namespaces and mounts --------------------------------------------
    def _unshare(self, step: P.Unshare) -> None:
        if step.flags:
            self.sc.unshare(step.flags)

    def _make_private(self, step) -> None:
        self.sc.mount(None, "/", None, MS_REC | MS_PRIVATE)

    def _mount_rootfs(self, step: P.MountRootfs) -> None:
        if step.mode == "overlay":
            self.sc.chdir(step.layer)  # the options name lower/upper/work relative to it
            self.sc.mount("overlay", step.target, "overlay", 0 if step.writable else MS_RDONLY, step.overlay_options)
        else:
            self.sc.mount(step.lower, step.target, None, MS_BIND | MS_REC)
            if not step.writable:
                self.sc.mount(None, step.target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        self.root_path = step.target
        self.root_fd = self.sc.open_dir(step.target)

    def _target(self, path: str, create: str):
        """An fd for a mountpoint inside the root, made if asked, never through a symlink."""
        if create == "file":
            return self.sc.open_beneath(self.root_fd, path, create_file=True)
        return self.sc.open_beneath(self.root_fd, path, directory=True, create_dirs=(create == "dir"))

    def _mount(self, step: P.Mount) -> None:
        if step.host_source and step.flags & MS_BIND:
            # The source is a host path chosen by the user (-v); open it
            # first so what we bind is what was checked.
            src_fd = self.sc.open_path(step.source)
            try:
                self._mount_on(step, self.sc.fd_path(src_fd))
            finally:
                self.sc.close(src_fd)
        else:
            self._mount_on(step, step.source)

    def _mount_on(self, step: P.Mount, source: str) -> None:
        fd = self._target(step.target, step.create)
        try:
            self.sc.mount(source, self.sc.fd_path(fd), step.fstype, step.flags, step.data, shown=step.target)
        finally:
            self.sc.close(fd)

    def _remount_ro(self, step: P.RemountReadonly) -> None:
        fd = self.root_fd if not step.target else self.sc.open_beneath(self.root_fd, step.target)  # file or dir
        try:
            keep = self.sc.mount_flags_of(self.sc.fd_path(fd))
            self.sc.mount(None, self.sc.fd_path(fd), None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, None,
                          shown=step.target or "/")
        finally:
            if fd != self.root_fd:
                self.sc.close(fd)

    def _in_dev(self, path: str) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        return self._target(parent or "/", "no"), name

    def _mknod(self, step: P.MakeDevice) -> None:
        # /dev is our own fresh tmpfs at this point, so a name inside it is ours.
        dfd, name = self._in_dev(step.path)
        try:
            self.sc.mknod(f"{self.sc.fd_path(dfd)}/{name}", stat.S_IFCHR | step.mode, os.makedev(step.major, step.minor),
                          shown=step.path)
            self.sc.chmod(f"{self.sc.fd_path(dfd)}/{name}", step.mode)  # umask would have masked it
        finally:
            self.sc.close(dfd)

    def _symlink(self, step: P.Symlink) -> None:
        dfd, name = self._in_dev(step.path)
        try:
            self.sc.symlink(step.target, f"{self.sc.fd_path(dfd)}/{name}", shown=step.path)
        finally:
            self.sc.close(dfd)

    def _mask(self, step: P.MaskPath) -> None:
        try:
            fd = self.sc.open_beneath(self.root_fd, step.path, directory=(step.kind == "mask_dir"))
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return  # nothing to hide on this kernel
            raise
        try:
            target = self.sc.fd_path(fd)
            if step.kind == "mask_file":
                self.sc.mount("/dev/null", target, None, MS_BIND, None, shown=step.path)
            elif step.kind == "mask_dir":
                self.sc.mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0", shown=step.path)
            else:
                self.sc.mount(target, target, None, MS_BIND | MS_REC, None, shown=step.path)
        finally:
            self.sc.close(fd)
        if step.kind == "readonly":
            # The fd still names the mount underneath; open the path again to
            # reach the new bind mount on top, then make that one read-only.
            self._remount_ro(P.RemountReadonly(target=step.path))

    # -- identity, session, root ------------------------------------------
    def _sethostname(self, step: P.SetHostname) -> None:
        self.sc.sethostname(step.hostname)

    def _new_session(self, step: P.NewSession) -> None:
        self.sc.setsid()
        if self.on_new_session is not None:
            self.on_new_session(step.tty)

    def _pivot_root(self, step: P.PivotRoot) -> None:
        # pivot_root(".", ".") stacks the old root on top of the new one at
        # the same place; unmounting "." with MNT_DETACH then drops the old
        # root. No directory inside the image is needed or written (this is
        # how runc does it), so it works with --read-only too.
        self.sc.fchdir(self.root_fd)
        self.sc.pivot_root(".", ".")
        self.sc.umount2(".", MNT_DETACH)
        self.sc.chdir("/")
        self._drop_root_fd()

    def _chroot(self, step: P.Chroot) -> None:
        self.sc.fchdir(self.root_fd)
        self.sc.chroot(".")
        self.sc.chdir("/")
        self._drop_root_fd()

    def _drop_root_fd(self) -> None:
        if self.root_fd is not None:
            self.sc.close(self.root_fd)
            self.root_fd = None

    # -- exec -----------------------------------------------------------
    def _exec(self, step: P.Exec) -> None:
        env = {k.encode(): v.encode() for k, v in step.env}
        argv = [a.encode() for a in step.argv]
        path = env.get(b"PATH", b"/usr/bin:/bin")
        try:
            self.sc.chdir(step.workdir)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            # docker creates a missing working directory
            try:
                os.makedirs(step.workdir, 0o755, exist_ok=True)
            except OSError as e2:
                raise SyscallError("creating working directory", e2.errno, step.workdir) from None
            self.sc.chdir(step.workdir)
        # The cwd must be inside the new root: a workdir reached through a
        # leaked fd (/proc/self/fd/N) would point at the host (CVE-2024-21626).
        # getcwd(3) fails (or says "(unreachable)") for a directory outside it.
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "(unreachable)"
        if not cwd.startswith("/"):
            raise SyscallError("the working directory is outside the container:", errno.EPERM, step.workdir,
                               "give a path inside the container's root filesystem")
        if self.security_enter is not None:
            self.security_enter()  # resets signals and marks fds close-on-exec in its own order
        else:
            reset_signals()
            self.sc.cloexec_from(3)
        execvpe(self.sc, argv, env, path)


def reset_signals() -> None:
    """Default dispositions and an empty mask for the command.

    Python ignores SIGPIPE and SIGXFSZ and keeps that across execve, so a
    shell pipeline in the container would behave strangely (reliability
    case F39); handlers set by the runtime must not stay either.
    """
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass  # signals glibc reserves for threads (32, 33)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def execvpe(sc, argv: list[bytes], env: dict[bytes, bytes], path: bytes) -> None:
    """execvp(3) by hand, inside the container: no Python code is loaded."""
    name = argv[0]
    if b"/" in name:
        candidates = [name]
    else:
        candidates = [(d or b".") + b"/" + name for d in path.split(b":")]
    denied = None
    for cand in candidates:
        try:
            sc.execve(cand, argv, env)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if e.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
                denied = (cand, e.errno)
                continue
            raise CommandError(f"exec {name.decode(errors='replace')}: {os.strerror(e.errno)}", None, exit_code=126)
    shown = name.decode(errors="replace")
    if denied is not None:
        raise CommandError(
            f"exec {denied[0].decode(errors='replace')}: {os.strerror(denied[1])}",
            "the file is not an executable program (check its mode and format)",
            exit_code=126,
        )
    if b"/" in name:
        if _exists(name):
            # execve said ENOENT for a file that is there: its #! interpreter
            # (or ELF loader) is what is missing (reliability case F41).
            raise CommandError(f"exec {shown}: no such file or directory",
                               "the file exists, but the interpreter on its #! line (or its loader) does not",
                               exit_code=127)
        raise CommandError(f"exec {shown}: no such file or directory", "check the path inside the container", exit_code=127)
    raise CommandError(
        f"exec {shown}: executable file not found in $PATH",
        "check the command name, or give its full path inside the container",
        exit_code=127,
    )


def _exists(path: bytes) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False
