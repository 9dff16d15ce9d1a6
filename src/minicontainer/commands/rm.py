"""``minicontainer rm [-f] CONTAINER...`` — remove state and writable layer."""

from __future__ import annotations

import errno
import os
import signal
import time

import click

from minicontainer.commands._each import for_each
from minicontainer.commands.completion import complete_containers
from minicontainer.errors import ContainerError, MiniError, warn


@click.command(short_help="Remove containers.")
@click.argument("containers", nargs=-1, required=True, shell_complete=complete_containers)
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True,
              help="Remove the container's anonymous volumes too (named volumes and host paths are kept).")
def rm(containers, force, volumes):
    """Remove one or more containers (running ones only with -f).

    -v also removes the container's anonymous volumes (-v /path, an image's
    VOLUME), as docker does; named volumes and the host directories given
    to -v HOST:PATH are never removed.

    \b
    Example:
      minicontainer rm -f web
    """
    from minicontainer.container.state import StateStore

    store = StateStore()
    for_each(containers, lambda ref: remove_container(store, store.get(ref), force, volumes=volumes))


def remove_container(store, st, force: bool, *, volumes: bool = False) -> None:
    """``rm``'s work for one container (``container prune`` too)."""
    ref = st.name
    if st.status in ("running", "created"):  # "created": its runtime is alive, setting it up
        if not force:
            raise ContainerError(f"container {ref} is running", f"stop it first, or use 'minicontainer rm -f {ref}'")
        _kill(store, st)
        try:
            st = store.get(st.id)
        except ContainerError:
            # a --rm container: its runtime removed everything on the way out
            return
    remove_cgroup(st)
    if st.layer_dir:
        from minicontainer.container.runtime import remove_layer_dir

        remove_layer_dir(st.layer_dir)
    from minicontainer.container.runtime import release_volumes, volumes_of

    vols = [v for v in volumes_of(store, st) if v[1]] if volumes else []  # (name, anonymous): only anonymous ones
    store.remove(st)
    release_volumes(vols, st.id, half_made=False)


def remove_cgroup(st) -> None:
    """A runtime killed by SIGKILL could not remove the container's cgroup; do it now."""
    from minicontainer.cgroups import manager_of

    try:
        manager_of(st.id, st.cgroup or None).destroy()
    except MiniError as e:
        warn(str(e))


def _kill(store, st) -> None:
    """Kill the container; its runtime then cleans up and exits.

    Never by a bare pid from state.json: a container still being set up
    ("created") has pid 0, and kill(0, SIGKILL) would kill our own process
    group (kill(2)); a pid read from a file may have been reused. So, until
    the runtime is gone (10 s at most): SIGKILL everything in the container's
    cgroup (cgroup.kill, or freeze + kill + thaw), and its PID 1 through a
    pidfd opened on the pid and checked against the start time recorded when
    it started. When neither reaches anything (no cgroup, no PID 1 yet), the
    runtime itself (checked the same way) gets SIGTERM: it stops the setup
    and cleans up, or passes the signal on to PID 1.
    """
    from minicontainer.commands.pause import thaw_if_paused
    from minicontainer.container.state import proc_start_time

    deadline = time.monotonic() + 10
    reached = asked_runtime = False
    while st.runtime_pid and proc_start_time(st.runtime_pid) == st.runtime_start:
        reached = _kill_cgroup(st) | signal_checked(st.pid, st.pid_start, signal.SIGKILL) | reached
        if not reached and not asked_runtime:
            asked_runtime = signal_checked(st.runtime_pid, st.runtime_start, signal.SIGTERM)
        thaw_if_paused(st)  # cgroup v1: a paused PID 1 dies only once thawed
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
        try:
            st = store.get(st.id)
        except ContainerError:
            return  # a --rm container, already removed by its runtime


def _kill_cgroup(st) -> bool:
    """SIGKILL every process in the container's cgroup; False if it has none (or no cgroup)."""
    try:
        from minicontainer.cgroups import manager_of

        m = manager_of(st.id, st.cgroup)
        if not m.exists() or not m.procs():
            return False
        m.kill()
        return True
    except (MiniError, OSError):
        return False


def signal_checked(pid: int, start: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that had start
    time ``start`` (/proc/<pid>/stat field 22). Through a pidfd
    (pidfd_open(2), Linux 5.3): the fd stands for the process it was opened
    on, even if that one exits and its pid is reused (the signal then fails
    with ESRCH), so the check and the signal are about the same process. A
    pid of 0 or 1 (or an unknown start time) is never signalled."""
    from minicontainer.container.state import proc_start_time

    if pid <= 1 or not start:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            return False  # gone
        fd = None  # a kernel before 5.3: check, then signal (a tiny window for reuse)
    try:
        if proc_start_time(pid) != start:
            return False  # that pid is another process now
        if fd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)
