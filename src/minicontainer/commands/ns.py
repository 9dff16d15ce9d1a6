"""``minicontainer ns CONTAINER`` (and ``inspect --namespaces``): a running
container as the kernel sees it, beside the host (nsview.py): namespaces
new or shared, uid/gid maps, cgroup and limits, capabilities, seccomp, and
its mounts marked against the host's."""

from __future__ import annotations

import click

from minicontainer.commands._format import format_option
from minicontainer.commands.completion import complete_containers
from minicontainer.errors import ContainerError, wrap_oserror


def namespace_view(store, ref: str) -> dict:
    """nsview.read_view of running container ``ref``, or a one-line error."""
    from minicontainer import nsview
    from minicontainer.procfs import proc_start_time

    st = store.get(ref)
    if st.status != "running" or not st.pid or (st.pid_start and proc_start_time(st.pid) != st.pid_start):
        raise ContainerError(f"container {ref} is not running (status: {st.status})",
                             "only a running container has namespaces to show; start it, or run one with -d")
    manager = None
    try:
        from minicontainer.cgroups import manager_of

        manager = manager_of(st.id, st.cgroup or None)
        if not manager.exists():
            manager = None
    except Exception:  # noqa: BLE001 - no cgroup on this host: the view says (none)
        manager = None
    try:
        return nsview.read_view(st, manager)
    except OSError as e:
        hint = "reading another user's /proc/PID/ns and mountinfo needs root" if e.errno == 13 else None
        raise wrap_oserror(f"reading container {ref}'s /proc", e, hint=hint) from None


@click.command(short_help="Show a running container's namespaces, ids, caps and mounts.")
@click.argument("container", shell_complete=complete_containers)
@format_option("{{json .namespaces}}")
def ns(container, fmt):
    """Show what the kernel says about running CONTAINER, beside the host:

    \b
    - each namespace's inode, the container's and the host's (this shell's): new or shared
    - its uid/gid maps, its cgroup and the limits in force now
    - its capability sets (decoded from /proc/PID/status), seccomp, no_new_privs
    - its mounts: + only the container has that filesystem, = the host's
      (bound in), - a host mount hidden from it

    --format json (or a template) gives the same as 'inspect --namespaces'.
    """
    import json

    from minicontainer import nsview
    from minicontainer.commands._format import is_template, render_template
    from minicontainer.container.state import StateStore

    view = namespace_view(StateStore(), container)
    if fmt == "json":
        click.echo(json.dumps(view, indent=2))
    elif is_template(fmt):
        click.echo(render_template(fmt, view))
    else:
        click.echo(nsview.render(view))
    return 0
