"""Starting the container's process and waiting for it.

The shape (see runtime.py for the whole order)::

    runtime ──unshare(CLONE_NEWPID)──fork──────────────────────────── wait ─▶ exit code
                                      │  ▲ sync pipe: "you are in your cgroup, go on"
                                      ▼  │ error pipe: closes on execve, or carries the error
                              child (PID 1 in the new PID namespace)
                              unshare, mounts, pivot_root ... execve(command)

The runtime itself does the unshare(CLONE_NEWPID), so the child is PID 1 and
no intermediate process is left running. The child cannot outlive the
runtime: PR_SET_PDEATHSIG(SIGKILL) (prctl(2)) kills it if the runtime dies,
even by SIGKILL (reliability case F37).

Rootless mode adds one step in front: the runtime moves itself into a new
user namespace (userns.py explains why the runtime, and not the child), so
the PID namespace and everything the child creates belong to it. From there
on the path is the same; only the PID namespace cannot be left again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty as ttymod
from dataclasses import dataclass

from minicontainer import plan as P
from minicontainer import safepath
from minicontainer import userns
from minicontainer.apply import Applier
from minicontainer.errors import MiniError, SyscallError
from minicontainer.syscalls.flags import CLONE_NEWPID, PR_SET_PDEATHSIG

# Signals the runtime passes on to the container, like docker's --sig-proxy.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# A PID 1 without a handler ignores SIGTERM/SIGINT (pid_namespaces(7)); after
# this grace period (or a second Ctrl-C) the runtime sends SIGKILL.
STOP_GRACE_SECONDS = 10
# When nobody reads the output any more (a closed pipe), a shorter grace.
HANGUP_GRACE_SECONDS = 2


@dataclass
class Hooks:
    """What the runtime plugs in around the fork (all optional)."""

    explain: object = None  # explain(index, step)
    parent_step: object = None  # parent_step(step, child_pid) for CgroupStep
    security_prepare: object = None  # in the child, before pivot_root -> a callable run just before exec
    on_started: object = None  # on_started(child_pid), after the command is running
    after_kill: object = None  # after_kill(), right after a SIGKILL: thaw a paused (frozen) container


class ChildFailed(MiniError):
    """The child reported an error before exec; carries the child's message."""


def _encode_error(e: BaseException) -> bytes:
    if isinstance(e, MiniError):
        return f"{e.exit_code}\0{e.message}\0{e.hint or ''}".encode(errors="replace")
    return f"125\0internal error in the container setup: {type(e).__name__}: {e}\0run with --debug".encode(errors="replace")


def _decode_error(data: bytes) -> MiniError:
    code, message, hint = (data.decode(errors="replace").split("\0") + ["", ""])[:3]
    try:
        exit_code = int(code)
    except ValueError:
        exit_code = 125
    return ChildFailed(message, hint or None, exit_code=exit_code)


class Container:
    """One run: fork, set up, exec, wait."""

    def __init__(self, plan: P.Plan, sc, *, tty: bool = False, interactive: bool = False, hooks: Hooks | None = None):
        self.plan = plan
        self.sc = sc
        self.tty = tty
        self.interactive = interactive
        self.hooks = hooks or Hooks()
        self.pid = 0
        self.exit_code: int | None = None  # set once PID 1 is reaped
        self.master_fd: int | None = None
        self._stop_requested = 0

    # -- starting ---------------------------------------------------------
    def start(self) -> int:
        steps = self.plan.steps
        index = {id(s): i for i, s in enumerate(steps, 1)}
        fork_at = next(i for i, s in enumerate(steps) if isinstance(s, P.Fork))
        before, after = steps[: fork_at + 1], steps[fork_at + 1 :]
        parent_after = [s for s in after if s.phase == "parent"]
        child_steps = [s for s in after if s.phase == "child"]

        _ensure_std_fds()
        # With -t the child makes the pty in the container's own devpts (so
        # `tty` names a device that exists inside, as with runc) and hands the
        # master back over this socket (SCM_RIGHTS, unix(7)).
        console = console_child = None
        winsize = None
        if self.tty:
            console, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            winsize = _get_winsize(0)
        slave_fd = console_child.fileno() if console_child is not None else None
        devnull = None
        if not self.interactive and not self.tty:
            # Above fd 2 even when our stdin is closed, or dup2 onto 0 would be a no-op.
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            devnull = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
        sync_r, sync_w = os.pipe()
        err_r, err_w = os.pipe()  # both close-on-exec (PEP 446)
        own_pidns = None
        in_userns = False
        parent_pid = os.getpid()
        try:
            for s in before:
                self._explain(index, s)
                if isinstance(s, userns.UserNamespace):
                    userns.enter(s.mapping, self.sc)
                    in_userns = True
                elif isinstance(s, P.UnsharePid):
                    # To come back afterwards; not from a user namespace we
                    # entered: setns(2) into the host's PID namespace would
                    # need CAP_SYS_ADMIN over the host's user namespace.
                    if not in_userns:
                        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                    self.sc.unshare(CLONE_NEWPID)
            pid = os.fork()
        except BaseException:
            for fd in (sync_r, sync_w, err_r, err_w, devnull):
                if fd is not None:
                    os.close(fd)
            for sock in (console, console_child):
                if sock is not None:
                    sock.close()
            if own_pidns is not None:
                self._restore_pidns(own_pidns)
            raise
        if pid == 0:  # ---------------- the child --------------------------
            os.close(sync_w)
            os.close(err_r)
            if console is not None:
                console.close()
            # Close every fd our caller leaked to us now, not only at exec: an
            # fd open on a host directory would let `-w /proc/self/fd/N` put
            # the container's cwd outside its root (CVE-2024-21626).
            close_inherited_fds(keep=(sync_r, err_w, slave_fd, devnull))
            self._child(child_steps, index, parent_pid, sync_r, err_w, console_child, winsize, devnull)
            os._exit(125)  # not reached: _child execs or exits
        # -------------------------------- the runtime ---------------------
        self.pid = pid
        os.close(sync_r)
        os.close(err_w)
        if devnull is not None:
            os.close(devnull)
        if console_child is not None:
            console_child.close()
        if own_pidns is not None:
            # Our later children (none planned, but tests run many containers in
            # one process) must not land in the container's PID namespace.
            self._restore_pidns(own_pidns)
        try:
            for s in parent_after:
                self._explain(index, s)
                if self.hooks.parent_step is not None:
                    self.hooks.parent_step(s, pid)
            os.write(sync_w, b"1")
        except BaseException:
            self._kill_and_reap()
            os.close(sync_w)
            os.close(err_r)
            raise
        os.close(sync_w)
        data = _read_all(err_r)
        os.close(err_r)
        if console is not None:
            self.master_fd = None if data else _receive_console(console)
            console.close()
        if data:
            self._reap()
            raise _decode_error(data)
        if self.hooks.on_started is not None:
            self.hooks.on_started(pid)
        return pid

    def _restore_pidns(self, fd: int) -> None:
        try:
            self.sc.setns(fd, CLONE_NEWPID)
        finally:
            os.close(fd)

    def _explain(self, index, step) -> None:
        if self.hooks.explain is not None:
            self.hooks.explain(index[id(step)], step)

    def _child(self, steps, index, parent_pid, sync_r, err_w, console, winsize, devnull) -> None:
        try:
            # Die with the runtime: the kernel sends SIGKILL when it exits. If
            # it died before this line, the sync pipe below reads EOF instead
            # (getppid() can't tell: in a new PID namespace it is always 0).
            self.sc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.read(sync_r, 1) != b"1":
                os._exit(125)  # the runtime failed or died before releasing us
            os.close(sync_r)

            def on_new_session(tty: bool) -> None:
                if tty:
                    slave_fd = open_console(applier.root_fd, winsize, console)
                    fcntl.ioctl(slave_fd, termios.TIOCSCTTY, 0)
                    for target in (0, 1, 2):
                        os.dup2(slave_fd, target)
                    os.close(slave_fd)
                elif devnull is not None:
                    os.dup2(devnull, 0)  # docker gives no stdin without -i
                    os.close(devnull)

            applier = Applier(self.sc, explain=self._child_explain(index), on_new_session=on_new_session)
            # Resolve users, build the seccomp program ... while we may still
            # run Python freely (before pivot_root).
            pivot_at = next(
                (i for i, s in enumerate(steps) if isinstance(s, (P.PivotRoot, P.Chroot))), len(steps)
            )
            applier.run(steps[:pivot_at], start_index=index[id(steps[0])] if steps else 1)
            if self.hooks.security_prepare is not None:
                # err_w doubles as a "runtime still alive?" probe for the
                # security layer after it re-arms the parent-death signal.
                applier.security_enter = self.hooks.security_prepare(applier.root_fd, err_w)
            rest = steps[pivot_at:]
            if rest:
                applier.run(rest, start_index=index[id(rest[0])])
        except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
            try:
                os.write(err_w, _encode_error(e))
            finally:
                os._exit(e.exit_code if isinstance(e, MiniError) else 125)

    def _child_explain(self, index):
        if self.hooks.explain is None:
            return None
        return lambda i, step: self.hooks.explain(i, step)

    # -- waiting ----------------------------------------------------------
    def wait(self) -> int:
        """Wait for the container's PID 1, forwarding signals; return its exit code."""
        previous = {}
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, self._forward)
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._escalate)
        if self.master_fd is not None:
            previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._winch)
        try:
            if self.master_fd is not None:
                return self._pty_loop()
            return self._reap()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _forward(self, sig, frame) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        if sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._stop_requested += 1
            if self._stop_requested >= 2 and sig == signal.SIGINT:
                self._escalate(sig, frame)
            else:
                signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_SECONDS)

    def _escalate(self, sig, frame) -> None:
        self._sigkill()

    def _sigkill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        # A frozen (paused) process dies of SIGKILL only once thawed on cgroup
        # v1: without this, waiting for it would block forever.
        if self.hooks.after_kill is not None:
            self.hooks.after_kill()

    def _winch(self, sig, frame) -> None:
        if self.master_fd is not None:
            _copy_winsize(0, self.master_fd)

    def _reap(self) -> int:
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.exit_code = 125
                return 125
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                break
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = 128 - code if code < 0 else code
        return self.exit_code

    def ensure_dead(self) -> None:
        """After an error or a signal in the runtime: no container process may outlive it."""
        if self.pid and self.exit_code is None:
            self._kill_and_reap()

    def _kill_and_reap(self) -> None:
        self._sigkill()
        self._reap()

    def _pty_loop(self) -> int:
        """Copy between the user's terminal and the container's pty until it ends."""
        stdin, stdout = 0, 1  # the fds themselves: sys.stdin is None when fd 0 is closed
        saved = None
        if _fd_open(stdin) and os.isatty(stdin):
            saved = termios.tcgetattr(stdin)
            # Raw mode: every key, Ctrl-C included, goes to the container's pty,
            # whose line discipline turns it into SIGINT for the container.
            ttymod.setraw(stdin)
        reading_stdin = self.interactive and _fd_open(stdin)
        writing = True
        try:
            while True:
                fds = [self.master_fd] + ([stdin] if reading_stdin else [])
                try:
                    ready, _, _ = select.select(fds, [], [], 0.5)
                except InterruptedError:
                    continue
                if self.master_fd in ready:
                    try:
                        data = os.read(self.master_fd, 65536)
                    except OSError as e:
                        if e.errno != errno.EIO:
                            raise
                        data = b""  # EIO: every slave end is closed
                    if not data:
                        break
                    if writing and not _write_all(stdout, data):
                        # Our reader is gone (`run -t ... | head -1`): the output
                        # has nowhere to go. Hang up on the container like a
                        # closed terminal would, and kill it if it ignores that.
                        writing = False
                        self._hang_up()
                if reading_stdin and stdin in ready:
                    data = os.read(stdin, 65536)
                    if not data:
                        reading_stdin = False
                    else:
                        _write_all(self.master_fd, data)
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            os.close(self.master_fd)
            self.master_fd = None
        return self._reap()

    def _hang_up(self) -> None:
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError:
            return
        signal.setitimer(signal.ITIMER_REAL, HANGUP_GRACE_SECONDS)


# ioctl numbers from <asm-generic/ioctls.h> (Python's termios lacks them)
_TIOCSPTLCK = 0x40045431  # lock/unlock a pty's slave
_TIOCGPTPEER = 0x5441  # open the slave from the master, no path lookup (Linux 4.13)


def open_console(root_fd: int, winsize: bytes | None, console: socket.socket) -> int:
    """In the child: a pty from the container's own devpts instance (mounted
    at /dev/pts by the plan). The master goes to the runtime over ``console``;
    the slave fd is returned, to become the container's stdio.

    The slave is opened with TIOCGPTPEER, from the master itself, so no path
    is looked up for it (ioctl_tty(2)); ptmx is reached with open_beneath, in
    the devpts we just mounted."""
    master = safepath.open_beneath(root_fd, "/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        if winsize:
            fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
        socket.send_fds(console, [b"c"], [master])
    finally:
        os.close(master)
    console.close()
    return slave


def _receive_console(console: socket.socket) -> int:
    """In the runtime: the pty master the child sent before it exec'd."""
    console.setblocking(False)  # it is there already, or it never comes
    try:
        _, fds, _, _ = socket.recv_fds(console, 1, 1)
    except BlockingIOError:
        fds = []
    if not fds:
        raise MiniError("the container started without its terminal", "run again without -t, and report it")
    return fds[0]


def _get_winsize(fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return None


def _ensure_std_fds() -> None:
    """If our caller closed stdin/stdout/stderr, put /dev/null there: otherwise
    the next fd we open (a pipe, the root's fd) would take number 0, 1 or 2
    and be clobbered when the container's stdio is set up."""
    for fd in (0, 1, 2):
        if not _fd_open(fd):
            opened = os.open("/dev/null", os.O_RDWR)  # the lowest free number: this one
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def close_inherited_fds(keep) -> None:
    """Close every fd >= 3 but those in ``keep`` (listed from /proc/self/fd:
    a loop up to RLIMIT_NOFILE could mean a million close calls)."""
    keep = {fd for fd in keep if fd is not None}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= 3 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd, already gone


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False if the other end is gone (EPIPE, EIO, closed fd)."""
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return False
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF):
                return False
            raise
        data = data[n:]
    return True


def _copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


__all__ = ["Container", "Hooks", "ChildFailed", "SyscallError"]
