"""``minicontainer rm [-f] CONTAINER...`` — remove state and writable layer."""

from __future__ import annotations

import os
import signal
import time

import click

from minicontainer.errors import ContainerError, MiniError


@click.command(short_help="Remove containers.")
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
def rm(containers, force):
    """Remove one or more containers (running ones only with -f)."""
    from minicontainer.state import StateStore

    store = StateStore()
    failed = None
    for ref in containers:
        try:
            st = store.get(ref)
            if st.status in ("running", "created"):  # "created": its runtime is alive, setting it up
                if not force:
                    raise ContainerError(
                        f"container {ref} is running", f"stop it first, or use 'minicontainer rm -f {ref}'"
                    )
                _kill(st)
                try:
                    st = store.get(st.id)
                except ContainerError:
                    # a --rm container: its runtime removed everything on the way out
                    click.echo(ref)
                    continue
            remove_cgroup(st)
            if st.layer_dir:
                from minicontainer.runtime import remove_layer_dir

                remove_layer_dir(st.layer_dir)
            store.remove(st)
            click.echo(ref)
        except MiniError as e:
            failed = e
            click.echo(f"minicontainer: error: {e}", err=True)
    if failed is not None:
        return failed.exit_code
    return 0


def remove_cgroup(st) -> None:
    """A runtime killed by SIGKILL could not remove the container's cgroup; do it now."""
    from minicontainer.cgroups import manager_for
    from minicontainer.cgroups.resources import Resources

    try:
        manager_for(st.id, Resources(cgroup_parent=st.cgroup or None)).destroy()
    except MiniError as e:
        click.echo(f"minicontainer: warning: {e}", err=True)


def _kill(st) -> None:
    """SIGKILL the container's PID 1; the runtime then cleans up and exits."""
    from minicontainer.commands.pause import thaw_if_paused
    from minicontainer.state import proc_start_time

    try:
        os.kill(st.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    thaw_if_paused(st)  # cgroup v1: a paused PID 1 dies only once thawed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc_start_time(st.runtime_pid) == st.runtime_start and st.runtime_pid:
        time.sleep(0.05)
