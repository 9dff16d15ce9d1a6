"""``minicontainer update [limit flags] CONTAINER...`` — change limits live.

The new limits are the container's own (from config.json) with the given
flags replacing some, checked by the same rules as ``run``'s
(cgroups/resources.py), so a bad value is refused before anything changes.
For a running container the cgroup manager writes the files that change
(``CgroupManager.update``), on v1 and v2 alike; the kernel decides what
happens to what is already there: a memory limit below the current usage
makes cgroup v2 reclaim and then OOM-kill (memory.max), while v1 refuses
the write when it cannot reclaim enough (EBUSY). Then config.json is
rewritten, so ``inspect``, ``restart`` and ``start`` use the new limits; an
exited container only gets the new config.json.
"""

from __future__ import annotations

import dataclasses

import click

from minicontainer.commands._each import for_each
from minicontainer.errors import ContainerError, UsageError

# flag -> Resources field, in the order docker's `update --help` lists them.
FLAGS = {
    "--cpu-shares": "cpu_shares",
    "--cpus": "cpus",
    "--cpuset-cpus": "cpuset_cpus",
    "--cpuset-mems": "cpuset_mems",
    "--memory": "memory",
    "--memory-reservation": "memory_reservation",
    "--memory-swap": "memory_swap",
    "--pids-limit": "pids_limit",
}


def merged_resources(old, changes: dict[str, str]):
    """``old`` (a Resources, or None) with ``changes`` (field -> what the user
    typed) applied, validated as ``run`` validates its flags."""
    from minicontainer import units
    from minicontainer.cgroups.resources import Resources, parse_resources

    old = old if old is not None else Resources()
    values = {f.name: getattr(old, f.name) for f in dataclasses.fields(old)}
    for name in ("cpuset_cpus", "cpuset_mems"):  # parse_resources reads these as text
        if values[name] is not None:
            values[name] = units.format_cpuset(values[name])
    values.update(changes)
    return parse_resources(**values)


def update_one(store, ref: str, changes: dict[str, str]) -> None:
    from minicontainer.cgroups import manager_for
    from minicontainer.container.config import load_spec, save_spec

    st = store.get(ref)
    state_dir = store.containers / st.id
    spec = load_spec(state_dir)
    new = merged_resources(spec.resources, changes)
    if st.status in ("running", "created"):
        m = manager_for(st.id, spec.resources)
        if not m.exists():
            raise ContainerError(
                f"container {ref} has no cgroup (rootless, or the host gave it none when it started)",
                "its limits cannot change while it runs; stop it, update, and start it again",
            )
        m.update(new)
    save_spec(state_dir, dataclasses.replace(spec, resources=new))


def _limit_options(f):
    # Options are applied bottom-up: reversed, so --help lists them in FLAGS' order.
    helps = {
        "--cpu-shares": "Relative CPU weight (2-262144, default 1024).",
        "--cpus": "Number of CPUs, e.g. 0.5.",
        "--cpuset-cpus": "CPUs the container may use, e.g. 0-1.",
        "--cpuset-mems": "Memory nodes it may use, e.g. 0.",
        "--memory": "Memory limit, e.g. 64m.",
        "--memory-reservation": "Soft memory limit.",
        "--memory-swap": "Memory plus swap; -1 for unlimited swap.",
        "--pids-limit": "Most processes at once; -1 for unlimited.",
    }
    short = {"--cpu-shares": "-c", "--memory": "-m"}
    for flag in reversed(FLAGS):
        names = [flag] + ([short[flag]] if flag in short else [])
        f = click.option(*names, FLAGS[flag], default=None, metavar="VALUE", help=helps[flag])(f)
    return f


@click.command(short_help="Change the limits of containers, live.")
@click.argument("containers", nargs=-1, required=True)
@_limit_options
def update(containers, **given):
    """Change the resource limits of each CONTAINER. A running container gets
    them at once, in its cgroup; every container keeps them for its next
    start. Flags not given keep their values.

    \b
    Examples:
      minicontainer update --memory 256m --cpus 1.5 web
      minicontainer update --pids-limit 100 web worker
    """
    from minicontainer.container.state import StateStore

    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        raise UsageError("update needs at least one flag", "e.g. minicontainer update --memory 256m NAME; see --help")
    store = StateStore()
    for_each(containers, lambda ref: update_one(store, ref, changes))
    return 0
