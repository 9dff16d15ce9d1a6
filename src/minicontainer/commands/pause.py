"""``minicontainer pause CONTAINER...`` / ``unpause CONTAINER...`` — the freezer.

Pausing does not send a signal (a process could catch or ignore one): the
kernel's freezer takes every process of the container's cgroup off the CPU
wherever it is, and it is not told. On cgroup v2 that is ``echo 1 >
cgroup.freeze`` and ``frozen 1`` appearing in cgroup.events; on v1 it is
``echo FROZEN > freezer.state`` until the file reads FROZEN instead of
FREEZING (cgroup-v2 docs "cgroup.freeze", cgroup-v1/freezer-subsystem.rst).
The cgroup managers do the writing and the waiting; this module only finds
the container and checks that pausing makes sense.

Paused is not a separate status in state.json: the freezer file is the
truth, read live by :func:`paused` (``ps`` shows "Up ... (Paused)" with it).
A paused container still counts as running, so ``rm`` without ``-f``
refuses it, as docker does.
"""

from __future__ import annotations

import click

from minicontainer.commands._each import for_each
from minicontainer.commands.completion import complete_containers
from minicontainer.errors import ContainerError, MiniError


def paused(st) -> bool:
    """Is this container's cgroup frozen right now? False when it has none.

    Cheap enough for ``ps`` (one mountinfo read, one small file); never raises.
    """
    if st.status != "running":
        return False
    try:
        from minicontainer.cgroups import manager_of

        m = manager_of(st.id, st.cgroup)
        return m.exists() and m.is_frozen()
    except (MiniError, OSError):
        return False


def thaw_if_paused(st) -> None:
    """Let a SIGKILL just sent to a paused container take effect (``rm -f``).

    cgroup v1 holds even a dying task in the freezer: a frozen process with
    SIGKILL pending dies only once thawed (v2 lets fatal signals through;
    cgroup-v2 docs, "cgroup.freeze"). Errors are ignored: the cgroup's
    destroy() later kills and thaws anyway.
    """
    if not paused(st):
        return
    try:
        from minicontainer.cgroups import manager_of

        manager_of(st.id, st.cgroup).thaw()
    except (MiniError, OSError):
        pass


def running_cgroup(store, ref: str, verb: str):
    """The state and cgroup manager of running container ``ref``, or a ContainerError."""
    from minicontainer.cgroups import manager_of

    st = store.get(ref)
    if st.status != "running":
        raise ContainerError(
            f"container {ref} is not running (status: {st.status})",
            f"only a running container can be {verb}; see 'minicontainer ps -a'",
        )
    m = manager_of(st.id, st.cgroup)
    if not m.exists():
        raise ContainerError(
            f"container {ref} has no cgroup (the host could not give it one when it started)",
            f"a container can be {verb} only through its cgroup; run it on a host with cgroups",
        )
    return st, m


def _each(containers: tuple[str, ...], action) -> None:
    """Run ``action(store, ref)`` for each container, going on past failures."""
    from minicontainer.container.state import StateStore

    store = StateStore()
    for_each(containers, lambda ref: action(store, ref))


def _pause(store, ref: str) -> None:
    _, m = running_cgroup(store, ref, "paused")
    if m.is_frozen():
        raise ContainerError(f"container {ref} is already paused", f"resume it with 'minicontainer unpause {ref}'")
    m.freeze()


def _unpause(store, ref: str) -> None:
    _, m = running_cgroup(store, ref, "unpaused")
    if not m.is_frozen():
        raise ContainerError(f"container {ref} is not paused", f"pause it with 'minicontainer pause {ref}'")
    m.thaw()


@click.command(short_help="Freeze all processes of a container.")
@click.argument("containers", nargs=-1, required=True, shell_complete=complete_containers)
def pause(containers):
    """Freeze every process of each running CONTAINER (the cgroup freezer).

    The processes stay in memory and keep their state; they are not
    signalled and do not notice. 'minicontainer unpause' lets them go on.
    """
    _each(containers, _pause)


@click.command(short_help="Thaw a paused container.")
@click.argument("containers", nargs=-1, required=True, shell_complete=complete_containers)
def unpause(containers):
    """Thaw each paused CONTAINER: its processes run again where they stopped."""
    _each(containers, _unpause)
