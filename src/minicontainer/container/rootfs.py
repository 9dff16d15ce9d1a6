"""Where a container's root filesystem comes from, and its own directory.

- the image: a name in the store, a directory (used read-only as the lower
  layer) or a tarball (imported first), :func:`resolve_image`;
- the storage: overlayfs where the kernel allows it, otherwise a private
  copy bind-mounted (:func:`storage_mode`, like docker's vfs driver);
- the container's directory under ``$MINICONTAINER_HOME/containers/<id>``:
  ``lower`` (a link to the image; for a layered image to its top layer, and
  ``lower-1``, ``lower-2`` ... to the ones below), ``upper/``, ``work/`` and ``merged/``
  (where the root is mounted; with root's --userns on idmapped layers, also
  ``idmapped/0``, ``idmapped/1`` ... where those layers are attached), made by :func:`prepare_layer` and removed by
  :func:`remove_layer_dir`.
"""

from __future__ import annotations

import os
import sys
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

from minicontainer import paths
from minicontainer.errors import ImageError, UsageError

# typing only for annotations (strings here): importing it costs ~3 ms of each OCI verb (issue 15)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class ResolvedImage:
    name: str  # as the user wrote it
    image_id: str
    rootfs: str  # the lower layer (a layered image: its top layer)
    exists: bool = True  # False only in --dry-run for a not-yet-built 'mini'
    lower_stack: tuple[str, ...] = ()  # a layered image's other layers, top first
    config: Any = None  # a layered image's images.config.ImageConfig
    # An OCI bundle's root (oci/): the directory itself is the container's
    # root, bind-mounted and written in place, as runc does (no overlay, no copy).
    in_place: bool = False


def _resolved(ref: str, image) -> ResolvedImage:
    from minicontainer.images.config import parse_config

    if not image.layered:
        # A flat image may still have a config (mini's Cmd, in its meta.json).
        doc = image.config()
        return ResolvedImage(ref, image.id, str(image.rootfs), config=parse_config(doc) if doc else None)

    top, *below = (str(d) for d in image.stack)
    return ResolvedImage(ref, image.id, top, lower_stack=tuple(below), config=parse_config(image.config()))


def resolve_image(ref: str, *, build: bool = True) -> ResolvedImage:
    """An image name, a directory (used read-only as the lower layer) or a tarball."""
    from minicontainer.images.store import ImageStore

    store = ImageStore()
    # Like docker: something that looks like a path is a path; a bare word is
    # an image name first (a directory called "mini" in the current directory
    # does not shadow the image), and a file or directory only if no image has it.
    looks_like_path = "/" in ref or ref.startswith(".")
    if not looks_like_path and (store.exists(ref) or ref == "mini" or not os.path.exists(ref)):
        if not store.exists(ref) and ref == "mini":
            if not build:
                return ResolvedImage(ref, "(not built yet)", str(store.images_dir / "<id>" / "rootfs"), exists=False,
                                     config=_planned_mini_config())
            from minicontainer.images.mini import ensure_mini

            return _resolved(ref, ensure_mini(store))
        return _resolved(ref, store.get(ref))
    path = os.path.abspath(ref)
    if os.path.isdir(path):
        return ResolvedImage(ref, "dir:" + path, path)
    if os.path.isfile(path):
        return _import_tarball(store, path, build)
    raise ImageError(f"no such image directory or tarball: {ref}", "give an existing directory or file", exit_code=125)


def _planned_mini_config():
    """--dry-run before mini is built: the config the build would give it
    (its default shell), so the plan shows the command a real run execs."""
    from minicontainer.images.config import parse_config
    from minicontainer.images.mini import mini_config, plan_mini

    try:
        return parse_config(mini_config(plan_mini()))
    except ImageError:
        return None  # the real run will say why mini cannot be built


def _import_tarball(store, path: str, build: bool) -> ResolvedImage:
    from minicontainer.images import importer

    if not build:
        return ResolvedImage(path, "(imported at run time)", path, exists=False)
    image = importer.import_for_run(store, path)
    return ResolvedImage(path, image.id, str(image.rootfs))


OVERLAYFS_SUPER_MAGIC = 0x794C7630


def overlay_supported(layer_parent: Path) -> bool:
    """Can we mount an overlay with its upper layer under ``layer_parent``?

    The kernel must know overlayfs, and the upper directory must not itself
    sit on an overlay (inside a docker container it does: the kernel refuses
    overlayfs as an upper filesystem).
    """
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return False
    except OSError:
        return False
    probe = layer_parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    from minicontainer.syscalls.linux import fs_magic

    return fs_magic(str(probe)) != OVERLAYFS_SUPER_MAGIC


def storage_mode(layer_parent: Path) -> str:
    """"overlay" or "bind" (a private copy, bind-mounted): MINICONTAINER_STORAGE=copy
    forces the copy (like docker's vfs driver), otherwise overlay where it works."""
    wanted = os.environ.get("MINICONTAINER_STORAGE", "auto")
    if wanted not in ("auto", "overlay", "copy"):
        raise UsageError(f"MINICONTAINER_STORAGE={wanted!r} is not known", "use auto, overlay or copy")
    if wanted == "copy":
        return "bind"
    if wanted == "overlay" or overlay_supported(layer_parent):
        return "overlay"
    return "bind"


def needs_mountpoints(spec, rootfs: str) -> bool:
    """Must a --read-only root still get a layer, to hold mountpoints the
    image lacks (a -v or --tmpfs target, /tmp, /dev)? Docker makes them in a
    small layer of its own, then mounts the root read-only; so do we."""
    if spec.volumes or spec.tmpfs or spec.named_volumes:
        return True
    # /etc/hosts and /etc/resolv.conf are bound in with a network, --dns,
    # --add-host or another container's network (plan._etc_mounts)
    binds_etc = spec.network or spec.dns or spec.extra_hosts or "net" in dict(spec.share_with)
    if binds_etc and not all(os.path.isfile(os.path.join(rootfs, "etc", f)) and
                             not os.path.islink(os.path.join(rootfs, "etc", f)) for f in ("hosts", "resolv.conf")):
        return True
    return not all(os.path.isdir(os.path.join(rootfs, d)) and not os.path.islink(os.path.join(rootfs, d))
                   for d in ("tmp", "dev"))


def prepare_layer(layer: Path, rootfs, image_rootfs: str) -> None:
    """The container's own directory: lower (a link to the image), upper/
    and work/ for the overlay, merged/ where the root is mounted; without
    overlayfs, a private copy of the image."""
    paths.ensure_private_dir(layer.parent)
    layer.mkdir(mode=0o700)
    make_shifted(rootfs)
    os.mkdir(layer / "merged", 0o755)
    made = ["merged"]
    if rootfs.mode == "overlay":
        os.symlink(rootfs.lower, layer / "lower")
        for i, below in enumerate(rootfs.lower_stack, 1):
            os.symlink(below, layer / f"lower-{i}")
        if rootfs.idmapped:
            # --userns as root: the runtime's idmapped mounts of the layers are attached on these
            os.mkdir(layer / "idmapped", 0o755)
            made.append("idmapped")
            for i in range(1 + len(rootfs.lower_stack)):
                os.mkdir(layer / "idmapped" / str(i), 0o755)
                made.append(f"idmapped/{i}")
        if not rootfs.writable:
            os.mkdir(layer / "empty", 0o755)
            made.append("empty")
        else:
            os.mkdir(layer / "upper", 0o755)
            os.mkdir(layer / "work", 0o700)
            made += ["upper", "work"]
    elif rootfs.writable and rootfs.lower != image_rootfs:  # equal: an OCI bundle's root, used in place
        _copy_fallback(image_rootfs, rootfs.lower)
    if rootfs.remap is not None:
        # The container's root (uid 300000, say) mounts the overlay from inside
        # its user namespace: the directories it mounts from must be its own,
        # and upper's owner is the owner of / inside.
        uid, gid = rootfs.remap.uids[0].outside, rootfs.remap.gids[0].outside
        for name in [".", *made]:
            os.lchown(layer / name, uid, gid)


def make_shifted(rootfs) -> None:
    """--userns as root: the copies of the image in the container's range
    that are not there yet (idshift.py; a cached one is made once)."""
    if rootfs.shifts:
        from minicontainer.container import idshift

        for source, dest in rootfs.shifts:
            idshift.ensure(source, dest, rootfs.remap)


def _copy_fallback(source: str, copy: str) -> None:
    """No overlayfs (some nested setups): copy the image and say so."""
    from minicontainer.images.importer import copy_tree

    print("minicontainer: overlayfs is not available; copying the image instead (slower)", file=sys.stderr)
    os.mkdir(copy, 0o755)
    try:
        copy_tree(Path(source), Path(copy))  # keeps owners, modes and links, never follows a symlink
    except ImageError as e:
        e.exit_code = 125  # a failed run, not a failed image command
        raise


def remove_layer_dir(layer) -> None:
    """Remove a container's layer directory, whoever owns its files.

    As root, a plain recursive delete. Rootless, overlayfs leaves a mode-000
    work/work directory and the container's files belong to ids of its user
    namespace, which the caller cannot delete from outside: userns.remove_tree
    does it from inside a namespace with the same map.
    """
    if not os.path.isdir(layer):
        return
    if os.geteuid() != 0:
        from minicontainer.container.userns import remove_tree

        if remove_tree(str(layer)):
            return
    import shutil  # here: only a removal needs it (it imports zlib, bz2, lzma: ~2.5 ms)

    shutil.rmtree(layer, ignore_errors=True)
