"""``minicontainer container prune [-f]`` — remove every exited container.

Each goes the way ``rm`` removes one (its state, its writable layer, a
cgroup its runtime could not remove); running and created containers are
left alone. Like docker, it asks first unless ``-f`` is given, and prints
the ids it removed and the disk space that came free.
"""

from __future__ import annotations

import click

from minicontainer.units import format_size


@click.group(short_help="Manage containers.")
def container():
    """Manage containers: prune (the others are top-level commands: ps, rm, inspect ...)."""


@container.command(short_help="Remove all exited containers.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(force):
    """Remove every exited container: its state, its writable layer and any
    cgroup left of it. Running (and created) containers are kept.

    \b
    Example:
      minicontainer container prune -f
    """
    if not force:
        click.confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
                      abort=True)
    click.echo("Deleted Containers:")
    freed = [0]
    try:
        prune_containers(click.echo, freed)
    finally:
        click.echo(f"\nTotal reclaimed space: {format_size(freed[0])}")
    return 0


def prune_containers(removed, freed: list[int]) -> None:
    """Remove every exited container, calling ``removed(id)`` for each and
    adding the bytes freed to ``freed[0]`` as it goes (so a caller can print
    the total even when some failed: the failures are raised together at
    the end, after the others were removed)."""
    from pathlib import Path

    from minicontainer.commands._each import for_each
    from minicontainer.commands.rm import remove_container
    from minicontainer.container.state import StateStore
    from minicontainer.images.store import disk_usage

    store = StateStore()
    doomed = [st for st in store.list() if st.status == "exited"]

    def one(cid: str) -> None:
        st = store.get(cid)
        size = disk_usage(Path(st.layer_dir)) if st.layer_dir and Path(st.layer_dir).is_dir() else 0
        remove_container(store, st, force=False)
        freed[0] += size
        removed(cid)

    for_each([st.id for st in doomed], one, echo=False)
