"""``minicontainer rm [-f] CONTAINER...`` — remove state and writable layer."""

from __future__ import annotations

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
              help="Accepted for docker's sake: there are no anonymous volumes to remove (a -v HOST:PATH is yours).")
def rm(containers, force, volumes):
    """Remove one or more containers (running ones only with -f).

    -v removes nothing more: docker's anonymous volumes do not exist here,
    and the host directories given to -v HOST:PATH are never removed.

    \b
    Example:
      minicontainer rm -f web
    """
    from minicontainer.container.state import StateStore

    store = StateStore()
    for_each(containers, lambda ref: remove_container(store, store.get(ref), force))


def remove_container(store, st, force: bool) -> None:
    """``rm``'s work for one container (``container prune`` too)."""
    ref = st.name
    if st.status in ("running", "created"):  # "created": its runtime is alive, setting it up
        if not force:
            raise ContainerError(f"container {ref} is running", f"stop it first, or use 'minicontainer rm -f {ref}'")
        _kill(st)
        try:
            st = store.get(st.id)
        except ContainerError:
            # a --rm container: its runtime removed everything on the way out
            return
    remove_cgroup(st)
    if st.layer_dir:
        from minicontainer.container.runtime import remove_layer_dir

        remove_layer_dir(st.layer_dir)
    store.remove(st)


def remove_cgroup(st) -> None:
    """A runtime killed by SIGKILL could not remove the container's cgroup; do it now."""
    from minicontainer.cgroups import manager_for
    from minicontainer.cgroups.resources import Resources

    try:
        manager_for(st.id, Resources(cgroup_parent=st.cgroup or None)).destroy()
    except MiniError as e:
        warn(str(e))


def _kill(st) -> None:
    """SIGKILL the container's PID 1; the runtime then cleans up and exits."""
    from minicontainer.commands.pause import thaw_if_paused
    from minicontainer.container.state import proc_start_time

    try:
        os.kill(st.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    thaw_if_paused(st)  # cgroup v1: a paused PID 1 dies only once thawed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc_start_time(st.runtime_pid) == st.runtime_start and st.runtime_pid:
        time.sleep(0.05)
