"""Acting on a container from another process: signals, stop, wait, start.

The container's runtime (a foreground ``run``, or the monitor of a detached
one) reaps PID 1 and records how it ended; the commands here only send
signals and watch state.json. A pid is never signalled unless it is still
the container's PID 1: the process is pinned with a pidfd
(pidfd_open(2)) and its start time compared with the one recorded, so a pid
reused by another process is never hit, and pid 0 or 1 never (kill(2) with
0 would signal our own process group). When no PID 1 can be found but the
container's cgroup still holds processes, they are killed through the
cgroup.
"""

from __future__ import annotations

import os
import signal
import time

from minicontainer.container.state import START_FIFO, ContainerState, StateStore, pid_alive, proc_start_time
from minicontainer.errors import ContainerError

DEFAULT_STOP_TIMEOUT = 10  # seconds, as docker stop


def parse_signal(text: str) -> int:
    """``KILL``, ``SIGKILL`` or ``9``."""
    t = text.strip().upper()
    if t.isdigit() and 0 < int(t) < signal.NSIG:
        return int(t)
    name = t if t.startswith("SIG") else "SIG" + t
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ContainerError(f"invalid signal {text!r}", "use a name like TERM, KILL, HUP or a number") from None


def _pidfd(st: ContainerState) -> int | None:
    """A pidfd of the container's PID 1, or None if it is gone."""
    if st.pid <= 1 or not st.pid_start:
        return None
    try:
        fd = os.pidfd_open(st.pid)
    except OSError:
        return None
    # Checked after the pidfd pins the process: if the start time still
    # matches now, the fd names the container's PID 1 and no other.
    if proc_start_time(st.pid) != st.pid_start:
        os.close(fd)
        return None
    return fd


def send_signal(st: ContainerState, sig: int) -> bool:
    """Signal PID 1; False if it is not running."""
    fd = _pidfd(st)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def kill_through_cgroup(st: ContainerState) -> None:
    """No runtime left to do it: kill what is in the cgroup and remove it."""
    if os.geteuid() != 0:
        return
    from minicontainer.cgroups import manager_of
    from minicontainer.errors import MiniError

    try:
        manager_of(st.id, st.cgroup or None).destroy()
    except (MiniError, OSError):
        pass


def running(store: StateStore, st: ContainerState) -> bool:
    return store.get(st.id).status in ("running", "created", "restarting")


def _poll(store: StateStore, st: ContainerState, done, timeout: float | None) -> ContainerState | None:
    """Read the container's state until ``done(state)`` (that state), it is
    removed (``st``), or ``timeout`` seconds pass (None)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            now = store.get(st.id)
        except ContainerError:
            return st  # removed (--rm)
        if done(now):
            return now
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_exited(store: StateStore, st: ContainerState, timeout: float | None) -> ContainerState | None:
    """The state once exited (and its runtime done with it; removed counts), or None at the timeout."""
    return _poll(store, st, lambda now: now.status == "exited", timeout)


def stop(store: StateStore, st: ContainerState, timeout: float, sig: int = signal.SIGTERM) -> ContainerState:
    """docker stop: ``sig``, then SIGKILL after ``timeout`` seconds."""
    if st.status == "exited":
        return st
    if st.status == "created" and not pid_alive(st.pid, st.pid_start):
        return st
    mark_stopped(store, st)
    if st.status == "restarting":
        # Between two runs there is no PID 1 to signal: the monitor sees the request before it starts
        # again, or, if it was starting already, the signal goes to the new PID 1 once it is recorded.
        st = _settled(store, st)
        if st.status == "exited":
            return st
    send_signal(st, sig)
    done = wait_exited(store, st, timeout)
    if done is None:
        send_signal(st, signal.SIGKILL)
        done = wait_exited(store, st, 10)
    if done is None or not _runtime_alive(st):
        # The monitor was gone (SIGKILLed): nobody reaps or cleans up for us.
        kill_through_cgroup(st)
        done = store.get(st.id) if done is None else done
    return done


def _settled(store: StateStore, st: ContainerState, timeout: float = 10) -> ContainerState:
    """A restarting container's state once it is running again (its new PID 1
    recorded) or has exited; ``st`` itself if neither happens in time."""
    now = _poll(store, st, lambda now: now.status == "exited" or (
        now.status != "restarting" and pid_alive(now.pid, now.pid_start)), timeout)
    return st if now is None else now


def mark_stopped(store: StateStore, st: ContainerState) -> None:
    """The user ended it: its monitor must not apply a restart policy."""
    store.request_stop(st)


def _runtime_alive(st: ContainerState) -> bool:
    return pid_alive(st.runtime_pid, st.runtime_start)


def release_created(store: StateStore, st: ContainerState) -> None:
    """``start`` of a created container: open the start fifo its PID 1 waits on."""
    path = store.containers / st.id / START_FIFO
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerError(f"container {st.name} is not waiting to be started",
                             "it may have been started already; see minicontainer ps -a") from None
    try:
        # O_NONBLOCK: the open does not wait for a writer; PID 1 is already
        # blocked opening the other end, and now proceeds (fifo(7)).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.read(fd, 1):
                    break
            except BlockingIOError:
                pass
            time.sleep(0.005)
        else:
            raise ContainerError(f"container {st.name} did not answer its start fifo",
                                 "its monitor may be gone; remove it with minicontainer rm -f")
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
