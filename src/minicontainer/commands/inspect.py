"""``minicontainer inspect [--format TEMPLATE|json] NAME|IMAGE...`` — like docker inspect.

For a container: its state (state.json), the spec it was made with
(config.json, exactly as ``run`` built it), its mounts, where its layers
and cgroup are, and the inode numbers of its namespaces (what ``lsns``
and ``ls -l /proc/PID/ns`` show). A name that is no container is looked
up in the image store and shown as ``image inspect`` shows it.

The keys are Docker's where Docker has the same thing (``.State.Pid``,
``.State.OOMKilled``, ``.Config``, ``.Mounts``), so templates written for
``docker inspect`` work for those.
"""

from __future__ import annotations

import json

import click

from minicontainer.commands._each import for_each
from minicontainer.commands._format import format_option
from minicontainer.errors import ContainerError, MiniError


def container_info(store, st) -> dict:
    """Everything known about one container, as plain JSON values."""
    from minicontainer.cgroups.base import OOM_KILLED
    from minicontainer.commands.pause import paused
    from minicontainer.container.config import encode, load_spec
    from minicontainer.container.logs import rfc3339
    from minicontainer.container.state import LOG_FILE

    state_dir = store.containers / st.id
    try:
        spec = load_spec(state_dir)
    except ContainerError:
        spec = None  # an older container, or a config.json someone broke: show the rest
    is_paused = paused(st)

    def when(t: float) -> str:
        return rfc3339(t) if t else ""

    return {
        "Id": st.id,
        "Name": st.name,
        "Created": when(st.created),
        "Path": st.command[0] if st.command else "",
        "Args": st.command[1:],
        "State": {
            "Status": "paused" if is_paused else st.status,
            "Running": st.status == "running",
            "Paused": is_paused,
            "OOMKilled": OOM_KILLED in st.exit_reason,
            "Pid": st.pid if st.status == "running" else 0,
            "ExitCode": st.exit_code,
            "Error": st.exit_reason,
            "StartedAt": when(st.started),
            "FinishedAt": when(st.finished),
        },
        "Image": st.image,
        "ImageId": st.image_id,
        "Hostname": st.hostname,
        "Config": encode(spec) if spec is not None else None,
        "Mounts": _mounts(spec),
        "NetworkSettings": {"Ports": _ports(st)},
        "Storage": _storage(st),
        "Cgroup": _cgroup(st),
        "Namespaces": dict(st.namespaces),
        "Monitor": {"Detached": st.detached, "Pid": st.runtime_pid},
        "StateDir": str(state_dir),
        "LogPath": str(state_dir / LOG_FILE) if st.detached else "",
    }


def _ports(st) -> dict:
    """docker's NetworkSettings.Ports: {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}, while it runs."""
    from minicontainer.commands.port import published

    out: dict = {}
    for p in published(st):
        out.setdefault(f"{p['container_port']}/{p['proto']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
    return out


def _mounts(spec) -> list[dict]:
    """The user's mounts (-v, --tmpfs); the standard ones are in --dry-run."""
    if spec is None:
        return []
    out = [{"Type": "bind", "Source": v.source, "Destination": v.target, "RW": not v.readonly}
           for v in spec.volumes]
    out += [{"Type": "tmpfs", "Source": "", "Destination": t.target, "Options": t.options, "RW": True}
            for t in spec.tmpfs]
    return out


def _storage(st) -> dict:
    """Where the container's files are (rootfs.py's layout)."""
    from minicontainer.layers import container_layers

    try:
        layers = container_layers(st.layer_dir, None)
    except ContainerError:
        return {"LayerDir": st.layer_dir, "Kind": "missing"}
    return {"Kind": layers.kind, "LayerDir": st.layer_dir, "LowerDir": layers.lower,
            "UpperDir": layers.upper or "", "MergedDir": st.rootfs}


def _cgroup(st) -> dict:
    from minicontainer.cgroups import manager_of

    try:
        m = manager_of(st.id, st.cgroup or None)
    except MiniError as e:
        return {"Error": str(e)}
    return {"Version": m.version, "Parent": st.cgroup, "Paths": m.leaves(), "Exists": m.exists()}


def _image_info(name: str) -> dict:
    from minicontainer.commands.image import image_info

    return image_info(name)


def lookup(store, ref: str) -> dict:
    """A container by name, id or id prefix; failing that, an image."""
    try:
        return container_info(store, store.get(ref))
    except ContainerError as not_a_container:
        try:
            return _image_info(ref)
        except MiniError:
            raise ContainerError(f"no such container or image: {ref}",
                                 "list them with 'minicontainer ps -a' and 'minicontainer image ls'") from not_a_container


@click.command(short_help="Show a container's (or an image's) details.")
@click.argument("names", nargs=-1, required=True)
@format_option("{{.State.Pid}}", table=False, short="-f")
@click.option("--namespaces", is_flag=True,
              help="Of a running container: what 'minicontainer ns' shows (namespaces beside the host's, "
                   "uid/gid maps, cgroup and limits, capabilities, seccomp, mounts).")
def inspect(names, fmt, namespaces):
    """Print the state, the spec it was made with, mounts, layers, cgroup and
    namespaces of each container NAME (a name, id or unique id prefix);
    a NAME that is no container is looked up among the images.

    \b
    Examples:
      minicontainer inspect web
      minicontainer inspect --format '{{.State.Status}} {{.State.Pid}}' web
      minicontainer inspect --format '{{json .Config.resources}}' web
      minicontainer inspect mini
      minicontainer inspect --namespaces --format '{{json .capabilities.effective}}' web
    """
    from minicontainer.commands._format import render_template
    from minicontainer.container.state import StateStore

    store = StateStore()
    find = lookup
    if namespaces:
        from minicontainer.commands.ns import namespace_view as find
    if fmt == "json":
        # Like docker: one JSON list of every name that was found, and an
        # error line for each one that was not.
        found: list[dict] = []
        try:
            for_each(names, lambda ref: found.append(find(store, ref)), echo=False)
        finally:
            click.echo(json.dumps(found, indent=2))
        return 0
    for_each(names, lambda ref: click.echo(render_template(fmt, find(store, ref))), echo=False)
    return 0
