"""``minicontainer volume ...``: create, ls, inspect, rm, prune. Thin: parse
flags, call minicontainer.volumes, print. A volume is a directory of the
store that containers mount with ``-v NAME:/path`` or ``--mount
type=volume,src=NAME,dst=/path``; docker's names and output."""

from __future__ import annotations

import json

import click

from minicontainer.commands._each import ExitOneGroup, for_each
from minicontainer.commands._format import format_option, print_listing


def _store():
    from minicontainer.volumes import VolumeStore

    return VolumeStore()


def complete_volumes(ctx, param, incomplete: str) -> list[str]:
    """Volume names, for the shell's tab completion (commands/completion.py)."""
    try:
        names = _store().names()
    except Exception:  # noqa: BLE001 - no store, no permission: nothing to offer
        return []
    return [n for n in names if n.startswith(incomplete)]


@click.group(cls=ExitOneGroup, short_help="Manage volumes.")
def volume():
    """Manage volumes: create, ls, inspect, rm, prune.

    A named volume is made on first use (run -v NAME:/path) or by `volume
    create`; a new one is filled from the image's files at its mount point.
    `-v /path` (or an image's VOLUME) makes an anonymous one, removed with
    its container by `rm -v` and `run --rm`.
    """


@volume.command("create", short_help="Create a volume.")
@click.argument("name", required=False)
def create(name):
    """Create volume NAME (a random name if none is given); prints its name."""
    from minicontainer.container.spec import anonymous_name

    info, _ = _store().create(name or anonymous_name())
    click.echo(info.name)


def _entry(store, name: str, users: dict) -> dict | None:
    from minicontainer.container.logs import rfc3339

    info = store.get(name)
    if info is None:
        return None
    return {
        "Name": info.name,
        "Driver": "local",
        "Mountpoint": store.path(info.name),
        "CreatedAt": rfc3339(info.created),
        "Labels": {"com.docker.volume.anonymous": ""} if info.anonymous else {},
        "Scope": "local",
        "Anonymous": info.anonymous,
        "UsedBy": users.get(info.name, []),
    }


def _filters(items) -> dict[str, set[str]]:
    from minicontainer.errors import UsageError

    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("dangling", "name") or (key == "dangling" and value not in ("true", "false")):
            raise UsageError(f"invalid --filter {item!r}", "use dangling=true|false or name=TEXT")
        out.setdefault(key, set()).add(value)
    return out


def _wanted(name: str, users: dict, filters: dict) -> bool:
    if "dangling" in filters and ("false" if users.get(name) else "true") not in filters["dangling"]:
        return False
    return "name" not in filters or any(v in name for v in filters["name"])


@volume.command("ls", short_help="List volumes.")
@click.option("--quiet", "-q", is_flag=True, help="Only names.")
@format_option("{{.Name}} {{.UsedBy}}")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true (no container uses it) or name=TEXT (repeatable).")
def ls(quiet, fmt, filters):
    """The volumes, when each was made, and the containers made with each.

    \b
    Example:
      minicontainer volume ls -q --filter dangling=true
      minicontainer volume ls --format '{{.Name}} {{.Mountpoint}}'
    """
    from minicontainer.units import ago

    wanted = _filters(filters)
    store = _store()
    users = store.users() if not quiet or wanted else {}
    names = [n for n in store.names() if _wanted(n, users, wanted)]
    if quiet:
        for name in names:
            click.echo(name)
        return
    entries = [e for e in (_entry(store, n, users) for n in names) if e is not None]  # (one removed meanwhile)

    def fields(e: dict) -> dict:
        info = store.get(e["Name"])
        return {**e, "Mountpoint": str(e["Mountpoint"]), "UsedBy": ", ".join(e["UsedBy"]) or "-",
                "Created": ago(info.created) if info is not None else ""}

    print_listing(fmt, entries, fields=fields, as_json=lambda e: {**e, "Mountpoint": str(e["Mountpoint"])},
                  columns=(("DRIVER", "Driver"), ("VOLUME NAME", "Name"), ("CREATED", "Created"),
                           ("CONTAINERS", "UsedBy")))


@volume.command("inspect", short_help="Show volumes as JSON.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_volumes)
def inspect(names):
    store = _store()
    users = store.users()
    out = []
    for name in names:
        store.require(name)
        entry = _entry(store, name, users)
        if entry is not None:
            out.append(entry)
    click.echo(json.dumps(out, indent=2))


@volume.command("rm", short_help="Remove volumes (refused while a container uses one).")
@click.option("--force", "-f", is_flag=True, help="No error for a volume that does not exist (one in use is still kept).")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_volumes)
def rm(force, names):
    """Remove volumes and their files. A volume any container (running or
    not) was made with is kept, as docker keeps it: remove the container first."""
    store = _store()

    def one(name: str) -> None:
        if store.remove(name, missing_ok=force):
            click.echo(name)  # a missing one that -f forgave is not echoed (docker)

    for_each(names, one, echo=False)


@volume.command("prune", short_help="Remove unused anonymous volumes (-a: every unused one).")
@click.option("--all", "-a", "all_volumes", is_flag=True, help="Unused named volumes too.")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
def prune(all_volumes, force):
    """Remove every volume no container uses: the anonymous ones, and with
    -a the named ones too (docker volume prune since Docker 23)."""
    from minicontainer.units import format_size

    if not force:
        what = "all volumes" if all_volumes else "all anonymous volumes"
        click.confirm(f"WARNING! This will remove {what} not used by at least one container.\n"
                      "Are you sure you want to continue?", abort=True)
    gone = _store().prune(all_volumes=all_volumes)
    click.echo("Deleted Volumes:")
    for name, _ in gone:
        click.echo(name)
    click.echo(f"\nTotal reclaimed space: {format_size(sum(size for _, size in gone))}")
