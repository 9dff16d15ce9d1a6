"""``minicontainer system df`` and ``system prune [-a] [-f] [--volumes]`` — as docker has them.

``df`` sums what the store holds, as docker's table does (TYPE, TOTAL,
ACTIVE, SIZE, RECLAIMABLE), with docker's decimal sizes (``16.43MB``):

- Images: every stored image; active = used by a container (running or
  not: its writable layer is stacked on it). Size counts a layer shared by
  several images once; reclaimable is what removing every inactive image
  would free (the layers no active image has).
- Containers: their writable (upper) layers; active = running; reclaimable
  = the layers of the others.
- Local Volumes: the directories under MINICONTAINER_HOME/volumes, if there
  are any; active = bound into a container.
- Build Cache: the entries of ``build``'s layer cache; its size is the
  layers only the cache keeps (the layers images have are counted there).

``prune`` removes what docker's does: stopped containers, networks no
container uses, images no name points to (with ``-a``: every image no
container uses), the build cache entries whose layer is gone (with ``-a``:
the whole cache) and, with ``--volumes``, volumes no container uses. It
asks first unless ``-f``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from minicontainer.commands._format import format_option, print_listing
from minicontainer.errors import Failures, MiniError

BUILD_CACHE = "build-cache.json"  # images/builder.py's _CACHE


def docker_size(n: int) -> str:
    """Sizes as docker prints them (go-units HumanSize): decimal units, four
    significant digits: 212 -> ``212B``, 16430000 -> ``16.43MB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            break
        value /= 1000
    return f"{value:.4g}{unit}"


@dataclass
class Usage:
    """One row of ``df``."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int

    def fields(self) -> dict:
        pct = f" ({self.reclaimable * 100 // self.size}%)" if self.size else ""
        return {"Type": self.type, "TotalCount": str(self.total), "Active": str(self.active),
                "Size": docker_size(self.size), "Reclaimable": docker_size(self.reclaimable) + pct}


# --- reading the store --------------------------------------------------------------


def _containers():
    from minicontainer.container.state import StateStore

    return StateStore().list()


def _upper_size(st) -> int:
    from minicontainer.images.store import disk_usage

    if not st.layer_dir:
        return 0
    upper = Path(st.layer_dir) / "upper"
    where = upper if upper.is_dir() else Path(st.layer_dir)  # a copy-mode container: its whole tree
    return disk_usage(where) if where.is_dir() else 0


def _image_parts(store, img) -> dict[str, int]:
    """What an image is on disk: its layers (a layer shared by images is one
    part) or, for a flat image, its one tree; part -> bytes."""
    layers = img.meta.get("layers") or []
    if layers:
        return {f"layer:{d}": int(store.layer_meta(d).get("size", 0) or 0) for d in layers}
    return {f"image:{img.id}": int(img.meta.get("size", 0) or 0)}


def _in_use(containers) -> set[str]:
    return {st.image_id for st in containers if st.image_id} | {st.image for st in containers if not st.image_id}


def _volumes(home: Path) -> list[tuple[Path, bool]]:
    """(volume directory, used by a container) for each volume; "used" is
    VolumeStore.users(), as for volume rm and volume prune."""
    from minicontainer.volumes import VolumeStore

    store = VolumeStore(home / "volumes")
    users = store.users()
    return [(store.root / name, bool(users.get(name))) for name in store.names()]


def _build_cache(home: Path) -> dict[str, str]:
    try:
        data = json.loads((home / BUILD_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def disk_usage_rows() -> list[Usage]:
    from minicontainer.images.store import ImageStore, disk_usage

    store = ImageStore()
    containers = _containers()
    used = _in_use(containers)

    images = store.list()
    parts: dict[str, int] = {}
    active_parts: set[str] = set()
    active_images = 0
    for img in images:
        mine = _image_parts(store, img)
        parts.update(mine)
        if img.id in used or img.name in used:
            active_images += 1
            active_parts.update(mine)
    image_size = sum(parts.values())
    rows = [Usage("Images", len(images), active_images, image_size,
                  sum(v for k, v in parts.items() if k not in active_parts))]

    sizes = [(st, _upper_size(st)) for st in containers]
    rows.append(Usage("Containers", len(containers), sum(1 for st in containers if st.status == "running"),
                      sum(n for _, n in sizes), sum(n for st, n in sizes if st.status != "running")))

    vols = [(d, in_use, disk_usage(d)) for d, in_use in _volumes(store.home)]
    rows.append(Usage("Local Volumes", len(vols), sum(1 for _, u, _ in vols if u), sum(n for *_, n in vols),
                      sum(n for _, u, n in vols if not u)))

    cache = _build_cache(store.home)
    image_layers = {k.split(":", 1)[1] for k in parts if k.startswith("layer:")}
    cached = {d for d in cache.values() if store.has_layer(d)}
    only_cache = sum(int(store.layer_meta(d).get("size", 0) or 0) for d in cached - image_layers)
    rows.append(Usage("Build Cache", len(cache), sum(1 for d in cache.values() if d in image_layers),
                      only_cache, only_cache))
    return rows


# --- the commands ---------------------------------------------------------------------


@click.group(short_help="Manage minicontainer's data: df, prune.")
def system():
    """Manage minicontainer's data: df (disk usage), prune (remove what is unused)."""


DF_COLUMNS = (("TYPE", "Type"), ("TOTAL", "TotalCount"), ("ACTIVE", "Active"), ("SIZE", "Size"),
              ("RECLAIMABLE", "Reclaimable"))


@system.command("df", short_help="Show the disk space images, containers, volumes and the build cache use.")
@format_option("{{.Type}} {{.Size}}")
def df(fmt):
    """Show the disk space used by images, containers, local volumes and the
    build cache, and how much of it 'system prune -a' could free.

    \b
    Template fields: .Type .TotalCount .Active .Size .Reclaimable
    """
    from dataclasses import asdict

    print_listing(fmt, disk_usage_rows(), fields=Usage.fields, columns=DF_COLUMNS, as_json=asdict)


@system.command("prune", short_help="Remove stopped containers, unused networks, dangling images and cache.")
@click.option("-a", "--all", "everything", is_flag=True,
              help="Remove every image no container uses (not only unnamed ones), and the whole build cache.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--volumes", is_flag=True, help="Remove volumes no container uses, too.")
def prune(everything, force, volumes):
    """Remove stopped containers, networks no container uses, images no name
    points to (-a: every image no container uses), the build cache (-a: all
    of it) and, with --volumes, volumes no container uses.

    \b
    Example:
      minicontainer system prune -af
    """
    if not force:
        what = ["all stopped containers", "all networks not used by at least one container"]
        if volumes:
            what.append("all volumes not used by at least one container")
        what += (["all images without at least one container associated to them", "all build cache"] if everything
                 else ["all dangling images", "all dangling build cache"])
        # "no" leaves as container prune's does: click's Abort, 130, nothing removed
        click.confirm("WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
                      + "\nAre you sure you want to continue?", abort=True)
    failures: list[MiniError] = []

    def step(fn) -> None:
        try:
            fn()
        except Failures as e:
            failures.extend(e.errors)
        except MiniError as e:
            failures.append(e)

    freed = [0]
    step(lambda: _prune_containers(freed))
    step(_prune_networks)
    if volumes:
        step(lambda: _prune_volumes(freed))
    step(lambda: _prune_images(everything, freed))
    step(lambda: _prune_cache(everything))
    click.echo(f"Total reclaimed space: {docker_size(freed[0])}")
    if failures:
        raise Failures(failures)
    return 0


class _Section:
    """``Deleted Containers:`` printed before the first item only, as docker does."""

    def __init__(self, title: str):
        self.title = title
        self.started = False

    def __call__(self, item: str) -> None:
        if not self.started:
            click.echo(f"{self.title}:")
            self.started = True
        click.echo(item)

    def end(self) -> None:
        if self.started:
            click.echo("")


def _prune_containers(freed: list[int]) -> None:
    from minicontainer.commands.container import prune_containers

    section = _Section("Deleted Containers")
    try:
        prune_containers(section, freed)
    finally:
        section.end()


def _prune_networks() -> None:
    from minicontainer.commands.network import _store, prune_networks

    section = _Section("Deleted Networks")
    try:
        prune_networks(_store(), section)
    finally:
        section.end()


def _prune_volumes(freed: list[int]) -> None:
    from minicontainer.volumes import VolumeStore

    section = _Section("Deleted Volumes")
    try:
        # every volume no container uses, named ones too (docker 20.10's system prune --volumes)
        for name, size in VolumeStore().prune(all_volumes=True):
            freed[0] += size
            section(name)
    finally:
        section.end()


def _prune_images(everything: bool, freed: list[int]) -> None:
    from minicontainer.commands._each import for_each
    from minicontainer.images.store import ImageStore, containers_using

    store = ImageStore()
    section = _Section("Deleted Images")
    try:
        if everything:
            before = {img.id: img for img in store.list()}
            doomed = [img.name for img in before.values() if not containers_using(img, store.state_root)]

            def untag(name: str) -> None:
                store.remove(name)
                section(f"untagged: {name}")

            try:
                for_each(doomed, untag, echo=False)
            finally:
                gone = set(before) - {img.id for img in store.list()}
                for image_id in sorted(gone):
                    freed[0] += int(before[image_id].meta.get("size", 0) or 0)
                    section(f"deleted: sha256:{image_id}")
        for img in store.prune():
            freed[0] += int(img.meta.get("size", 0) or 0)
            section(f"deleted: sha256:{img.id}")
    finally:
        section.end()


def _prune_cache(everything: bool) -> None:
    """The build cache: its entries whose layer is gone (-a: all of them).
    The layers only the cache kept went with the image prune before."""
    from minicontainer.images.store import ImageStore

    store = ImageStore()
    path = store.home / BUILD_CACHE
    if not path.exists():
        return
    with store.lock():
        cache = _build_cache(store.home)
        keep = {} if everything else {k: v for k, v in cache.items() if store.has_layer(v)}
        if keep == cache:
            return
        if keep:
            tmp = store.home / f".{BUILD_CACHE}.{os.getpid()}"
            tmp.write_text(json.dumps(keep))
            os.replace(tmp, path)
        else:
            path.unlink()
    click.echo(f"Deleted Build Cache: {len(cache) - len(keep)} entr{'y' if len(cache) - len(keep) == 1 else 'ies'}\n")
