"""The container's process: the channels to it, starting it, waiting for it.

``Container.start`` hands the plan to the interpreter (interpreter.py), which
runs the runtime's steps, forks, and runs the child's; this module holds what
the two processes share (``Channels``) and what happens once the command
runs: signal forwarding, the pty copy loop, reaping. The shape::

    runtime ──unshare(CLONE_NEWPID)──fork──────────────────────────── wait ─▶ exit code
                                      │  ▲ sync pipe: "you are in your cgroup, go on"
                                      ▼  │ error pipe: closes on execve, or carries the error
                              child (PID 1 in the new PID namespace)
                              unshare, mounts (while the runtime writes the cgroups),
                              wait on the sync pipe, cgroup ns, pivot_root ... execve(command)

The runtime itself does the unshare(CLONE_NEWPID), so the child is PID 1 and
no intermediate process is left running. The child cannot outlive the
runtime: PR_SET_PDEATHSIG(SIGKILL) (prctl(2)) kills it if the runtime dies,
even by SIGKILL (reliability case F37).

Rootless mode adds one step in front: the runtime moves itself into a new
user namespace (userns.py explains why the runtime, and not the child), so
the PID namespace and everything the child creates belong to it. From there
on the path is the same; only the PID namespace cannot be left again.

Root's ``--userns`` (a subordinate range) keeps the runtime outside, as the
host's root: the child makes the user namespace, the runtime writes its maps
over a socket pair of the Channels, and PID 1 is the child's own child,
adopted by the runtime (steps.py draws the exchange).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import tty as ttymod
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer import safepath
from minicontainer.container import steps as S
from minicontainer.errors import MiniError, SyscallError
from minicontainer.container.interpreter import Interpreter

# Signals the runtime passes on to the container, like docker's --sig-proxy.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# A PID 1 without a handler ignores SIGTERM/SIGINT (pid_namespaces(7)); after
# this grace period (or a second Ctrl-C) the runtime sends SIGKILL.
STOP_GRACE_SECONDS = 10
# When nobody reads the output any more (a closed pipe), a shorter grace.
HANGUP_GRACE_SECONDS = 2


@dataclass
class Hooks:
    """What the runtime plugs in around the run (all optional)."""

    explain: object = None  # explain(index, step), before each step
    on_created: object = None  # on_created(child_pid): `create`, set up and waiting for `start`
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


CREATED = b"\x01"  # on the error pipe: `create` is done, the process waits for `start`
MOUNTED = b"\x02"  # on the error pipe: the mounts are made, the child waits for the runtime's hooks


class RuntimeProbe:
    """Is the runtime still there? In a new PID namespace getppid() is 0, so
    the child watches one end of a pipe whose other end only the runtime
    holds: either end reports the other's close (a read end POLLHUP, a write
    end POLLERR, poll(2)). The poll object is made before pivot_root."""

    def __init__(self, fd: int):
        self._poll = select.poll()
        self._poll.register(fd, select.POLLHUP | select.POLLERR)

    def alive(self) -> bool:
        return not any(ev & (select.POLLHUP | select.POLLERR) for _, ev in self._poll.poll(0))


class Channels:
    """The pipes and sockets between the runtime and its child.

    - sync pipe: the child waits on it, once it has made what needs no
      cgroup, until the runtime has put it in its cgroups (the ReleaseChild /
      AwaitRelease steps); a child that failed first has closed it (EPIPE),
      and its error is on the error pipe (reported_error);
    - error pipe: close-on-exec, so it reads EOF once the command runs, or
      the child's error (AwaitExec); the child also polls its end to notice a
      dead runtime (RearmParentDeath);
    - with -t, a socket pair: the child makes the pty in the container's own
      devpts (so `tty` names a device that exists inside, as with runc) and
      sends the master back (SCM_RIGHTS, unix(7));
    - without -i or -t, /dev/null for the container's stdin (as docker);
    - with ``handshake`` (--userns as root), a socket pair on which the child
      says it made its user namespace, the runtime that it wrote the maps, and
      the child who PID 1 is (steps.UnshareUser, WriteIdMaps, AdoptInit).
    """

    def __init__(self, *, tty: bool, interactive: bool, log: bool = False, start_fifo: str | None = None,
                 handshake: bool = False):
        self.tty = tty
        self.console = self.console_child = None
        self.winsize = None
        self.devnull = None
        self.master_fd: int | None = None
        self.sync_r = self.sync_w = self.err_r = self.err_w = None
        self.out_r = self.out_w = self.errout_r = self.errout_w = None
        self.in_r = self.in_w = None  # -di: the container's stdin, written by `attach` through the monitor
        self.start_fifo = None
        self.ctl = self.ctl_child = None
        self._probe = None
        try:
            if handshake:
                import socket  # here, in the runtime before the fork: a plain run needs none (~4.7 ms, issue 15)

                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # close-on-exec (PEP 446)
                self.ctl, self.ctl_child = a.detach(), b.detach()
            if start_fifo is not None:
                # O_PATH: opening it for writing now would block; the child
                # reopens it through /proc/self/fd once it is set up.
                self.start_fifo = os.open(start_fifo, safepath.O_PATH | os.O_CLOEXEC)
            if log and not tty:
                # A detached container's stdout and stderr go to the monitor,
                # which writes them to the log (docker's json-file driver).
                self.out_r, self.out_w = os.pipe()
                self.errout_r, self.errout_w = os.pipe()
                if interactive:
                    self.in_r, self.in_w = os.pipe()
            if tty:
                import socket

                self.console, self.console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                self.winsize = _get_winsize(0)
            if not interactive and not tty:
                # Above fd 2 even when our stdin is closed, or dup2 onto 0 would be a no-op.
                fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                self.devnull = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                os.close(fd)
            self.sync_r, self.sync_w = os.pipe()
            self.err_r, self.err_w = os.pipe()  # both close-on-exec (PEP 446)
        except BaseException:
            self.close()
            raise

    def _fds(self):
        return ("sync_r", "sync_w", "err_r", "err_w", "devnull", "out_r", "out_w", "errout_r", "errout_w",
                "in_r", "in_w", "start_fifo", "ctl", "ctl_child")

    def close(self) -> None:
        """Close whatever is still open (the error paths)."""
        for name in self._fds():
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        for name in ("console", "console_child"):
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)

    def _drop(self, *names: str) -> None:
        for name in names:
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    # -- the child's side ---------------------------------------------------------
    def in_child(self, keep=()) -> None:
        """``keep``: fds the plan still needs (exec: the namespaces to join)."""
        self._drop("sync_w", "err_r", "out_r", "errout_r", "in_w", "ctl")
        if self.console is not None:
            self.console.close()
            self.console = None
        # Close every fd our caller leaked to us now, not only at exec: an fd
        # open on a host directory would let `-w /proc/self/fd/N` put the
        # container's cwd outside its root (CVE-2024-21626).
        slave = self.console_child.fileno() if self.console_child is not None else None
        close_inherited_fds(keep=(self.sync_r, self.err_w, slave, self.devnull, self.out_w, self.errout_w,
                                  self.in_r, self.start_fifo, self.ctl_child, *keep))
        self._probe = RuntimeProbe(self.err_w)

    def close_sync(self) -> None:
        self._drop("sync_r", "sync_w")

    def close_ctl(self) -> None:
        self._drop("ctl", "ctl_child")

    def attach_stdio(self, root_fd: int, tty: bool) -> None:
        """After setsid: the pty as controlling terminal and stdio, or /dev/null as stdin."""
        if tty:
            slave_fd = open_console(root_fd, self.winsize, self.console_child)
            self.console_child = None
            fcntl.ioctl(slave_fd, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):
                os.dup2(slave_fd, target)
            os.close(slave_fd)
        else:
            if self.devnull is not None:
                os.dup2(self.devnull, 0)  # docker gives no stdin without -i
                self._drop("devnull")
            if self.out_w is not None:
                os.dup2(self.out_w, 1)
                os.dup2(self.errout_w, 2)
                self._drop("out_w", "errout_w")
            if self.in_r is not None:
                os.dup2(self.in_r, 0)
                self._drop("in_r")

    def report_created(self, sc) -> None:
        """``create``: tell the runtime the container is set up (a marker
        byte on the error pipe, which otherwise stays empty until exec)."""
        sc.write(self.err_w, CREATED)

    def runtime_alive(self) -> bool:
        return self._probe is None or self._probe.alive()

    def runtime_gone(self) -> None:
        os._exit(125)  # the runtime failed or died before releasing us: nothing to report to

    def child_failed(self, e: BaseException) -> None:
        """Report the error to the runtime and exit; never returns."""
        try:
            try:
                os.write(self.err_w, _encode_error(e))
            except BrokenPipeError:
                # Nobody reads the error pipe: minicontainer-runc's create has
                # handed the container to the engine and exited. The container's
                # stderr is the engine's, so say it there (runc's "exec failed").
                os.write(2, f"minicontainer: error: {_decode_error(_encode_error(e))}\n".encode(errors="replace"))
        finally:
            os._exit(e.exit_code if isinstance(e, MiniError) else 125)

    # -- the runtime's side --------------------------------------------------------
    def in_parent(self) -> None:
        self._drop("sync_r", "err_w", "devnull", "out_w", "errout_w", "in_r", "start_fifo", "ctl_child")
        if self.console_child is not None:
            self.console_child.close()
            self.console_child = None

    def report_mounted(self, sc) -> None:
        sc.write(self.err_w, MOUNTED)

    def await_mounted(self, sc) -> bytes:
        """The MOUNTED marker (b"" back), or the child's error (all of it)."""
        while True:
            try:
                first = sc.read(self.err_r, 1)
            except InterruptedError:
                continue
            if first == MOUNTED:
                return b""
            return first + self.read_errors(sc) if first else b"125\0the container's process ended while it was set up\0"

    def read_errors(self, sc, on_created=None) -> bytes:
        chunks = []
        while True:
            try:
                data = sc.read(self.err_r, 65536)
            except InterruptedError:
                continue
            if not data:
                break
            if not chunks and data.startswith(CREATED):
                data = data[len(CREATED):]
                if on_created is not None:
                    on_created()
                if not data:
                    continue
            chunks.append(data)
        self._drop("err_r")
        return b"".join(chunks)

    def decode_error(self, data: bytes) -> MiniError:
        return _decode_error(data)

    def reported_error(self) -> MiniError | None:
        """The child's error, if it has already failed and said why (the runtime
        failing at once, without waiting): its setup runs while the runtime
        writes the cgroups, and when it dies there, the runtime's next write to
        it fails too (the release: EPIPE). Its own error is the one that says
        what went wrong."""
        if self.err_r is None or not select.select([self.err_r], [], [], 0)[0]:
            return None  # still running (it holds the write end): nothing to say yet
        try:
            data = os.read(self.err_r, 65536)
        except OSError:
            return None
        if data.startswith(CREATED):
            data = data[len(CREATED):]
        return _decode_error(data) if data else None

    def receive_console(self) -> None:
        if self.console is not None:
            self.master_fd = _receive_console(self.console)
            self.console.close()
            self.console = None


class Container:
    """One run: the plan's steps up to exec (through the interpreter), then wait."""

    def __init__(self, plan: S.Plan, sc, *, tty: bool = False, interactive: bool = False, hooks: Hooks | None = None,
                 cgroup=None, log=None, start_fifo: str | None = None, relay: bool = False):
        self.plan = plan
        self.sc = sc
        self.tty = tty
        self.interactive = interactive
        self.hooks = hooks or Hooks()
        self.cgroup = cgroup
        self.log = log  # logs.LogWriter: a detached container's output goes there
        self.relay = relay  # foreground, no -t, a terminal on our side: pipes copied by us
        self.start_fifo = start_fifo
        self.interpreter: Interpreter | None = None
        self._outputs: dict[int, str] = {}
        self.stdin_w: int | None = None  # -di detached: the container's stdin, for attach
        self.pid = 0
        self.exit_code: int | None = None  # set once PID 1 is reaped
        self.master_fd: int | None = None
        self._stop_requested = 0
        self._previous_handlers: dict | None = None  # while ours forward signals to PID 1

    @property
    def cgroup_owned(self) -> bool:
        """Did the cgroup steps get past the check? Then the cgroup is ours to remove."""
        return self.interpreter is not None and self.interpreter.cgroup_owned

    # -- starting ---------------------------------------------------------
    def start(self) -> int:
        _ensure_std_fds()
        chan = Channels(tty=self.tty, interactive=self.interactive, log=self.log is not None or self.relay,
                        start_fifo=self.start_fifo,
                        handshake=any(isinstance(s, S.WriteIdMaps) for s in self.plan.steps))
        on_created = None
        if self.hooks.on_created is not None:
            on_created = lambda: self.hooks.on_created(interp.child_pid)  # noqa: E731
        interp = self.interpreter = Interpreter(self.sc, explain=self.hooks.explain, channels=chan,
                                                cgroup=self.cgroup, on_created=on_created)
        try:
            interp.run(self.plan.steps)  # the child execs, or reports and exits
            if interp.in_child:
                chan.child_failed(MiniError("internal error: the plan ended without an Exec step"))
        except BaseException:
            interp.abandon()
            self.pid = interp.child_pid
            if self.pid:
                self._kill_and_reap()
            chan.close()
            raise
        self.pid = interp.child_pid
        self.master_fd = chan.master_fd
        if chan.out_r is not None:
            # Kept past chan.close(): the log loop reads them until the command ends.
            self._outputs = {chan.out_r: "stdout", chan.errout_r: "stderr"}
            chan.out_r = chan.errout_r = None
        self.stdin_w, chan.in_w = chan.in_w, None
        chan.close()
        # From here the command runs: a Ctrl-C is its own, not the end of
        # our setup. Forwarding starts now, not when wait() is reached: in
        # between the state is saved, and a signal there would unwind this
        # runtime and kill the command (seen on a loaded CI machine).
        self._forward_signals()
        if self.hooks.on_started is not None:
            self.hooks.on_started(self.pid)
        return self.pid

    def _forward_signals(self) -> None:
        if self._previous_handlers is not None:
            return
        previous = {}
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, self._forward)
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._escalate)
        if self.master_fd is not None:
            previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._winch)
        self._previous_handlers = previous

    # -- waiting ----------------------------------------------------------
    def wait(self) -> int:
        """Wait for the container's PID 1, forwarding signals; return its exit code."""
        self._forward_signals()
        try:
            if self.relay:
                return self._relay_loop()
            if self.master_fd is not None:
                return self._pty_loop()
            return self._reap()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in (self._previous_handlers or {}).items():
                signal.signal(sig, handler)
            self._previous_handlers = None

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
                if self._stop_requested == 1 and ignored_by_init(self.pid, sig):
                    _say(f"the container's PID 1 ({_comm(self.pid)}) has no handler for {signal.Signals(sig).name}, "
                         "so the kernel ignores it (pid_namespaces(7)); "
                         + ("press Ctrl-C again to kill it now" if sig == signal.SIGINT else
                            f"it is killed in {STOP_GRACE_SECONDS} s")
                         + ". With --init, a real init forwards signals to your command.")

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

    def _relay_loop(self) -> int:
        """No -t, but our stdout or stderr is a terminal: the container wrote
        into pipes, and we copy them to the terminal (and, with -i, our input
        into its stdin pipe), so no process in the container ever holds our
        terminal: root inside could otherwise read what is typed on it
        (``cat <&1``) or change its settings. Docker and podman do the same."""
        outputs = {fd: 1 if stream == "stdout" else 2 for fd, stream in self._outputs.items()}
        reading = self.stdin_w is not None and _fd_open(0)
        try:
            while outputs:
                watched = list(outputs) + ([0] if reading else [])
                try:
                    ready, _, _ = select.select(watched, [], [], 0.5)
                except InterruptedError:
                    continue
                for fd in ready:
                    data = os.read(fd, 65536)
                    if fd == 0:
                        if not data or not _write_all(self.stdin_w, data):
                            reading = False
                            os.close(self.stdin_w)  # the container sees the end of its input
                            self.stdin_w = None
                    elif data:
                        _write_all(outputs[fd], data)
                    else:
                        os.close(fd)
                        del outputs[fd]
        finally:
            for fd in outputs:
                os.close(fd)
            if self.stdin_w is not None:
                os.close(self.stdin_w)
                self.stdin_w = None
        return self._reap()

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


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return {}


def ignored_by_init(pid: int, sig: int) -> bool:
    """Will ``sig`` do nothing to ``pid``? True when it is PID 1 of its own
    PID namespace and has no handler for it: the kernel then drops signals
    whose default action is to end the process (pid_namespaces(7))."""
    st = _status(pid)
    if st.get("NSpid", "").split()[-1:] != ["1"]:
        return False
    try:
        caught = int(st.get("SigCgt", "0"), 16)
    except ValueError:
        return False
    return not caught >> (sig - 1) & 1


def _comm(pid: int) -> str:
    return _status(pid).get("Name", "?")


def _say(message: str) -> None:
    try:
        os.write(2, f"\r\nminicontainer: {message}\r\n".encode())
    except OSError:
        pass


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
        # No import here, in the container's root: ``console`` is a socket.socket,
        # so the socket module is loaded already (Channels made it before the fork).
        sys.modules["socket"].send_fds(console, [b"c"], [master])
    finally:
        os.close(master)
    console.close()
    return slave


def _receive_console(console: socket.socket) -> int:
    """In the runtime: the pty master the child sent before it exec'd."""
    import socket  # loaded already: Channels made ``console`` with it
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
