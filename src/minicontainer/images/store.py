"""The image store: named, read-only root filesystems under MINICONTAINER_HOME.

Layout (see paths.py)::

    images/<id>/rootfs/      a flat image (``image import``): its root filesystem
                             (never modified by a run)
    images/<id>/meta.json    {"id", "created", "source", "size", ...}; a layered
                             image's also lists its "layers" (diff_ids, bottom first)
    images/<id>/config.json  a layered image's config (OCI image spec, config.md);
                             its id is the sha256 of these bytes, as docker's
    layers/<hex>/diff/       one layer, unpacked once under its diff_id (the sha256
                             of its uncompressed tar) and shared by every image that
                             has it; its whiteouts are overlayfs whiteouts
    layers/<hex>/meta.json   {"diff_id", "size", ...}
    leases/<pid>-*.json      layers a running ``build`` uses before any image
                             has them (containerd's "leases"): kept while that pid lives
    refs/<name>              a file holding the image id a name points to
    tmp/new-<pid>-*/         work directories; a finished image is renamed
                             from here into images/, so a crash or an error
                             never leaves a half-made image behind
    tmp/old-<pid>-*/         an image being deleted (renamed out of images/
                             first, so a half-deleted tree is never an image)
    store.lock               flock(2) for changes to refs/ and images/
    locks/<name>             flock(2) held while image <name> is being built

Several names may point to one id (importing the same content twice shares
it: a tarball's id is the sha256 of its uncompressed stream). Every directory
here is 0700 and root-owned: images hold setuid binaries that other host
users must not reach (reliability case A10). An image goes when nothing uses
it any more: no name points to it and no container runs on it (its lower
layer); ``image prune`` sweeps up any that were kept for a container. A
layer goes with the last image that has it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

from minicontainer import paths
from minicontainer.errors import ImageError, UsageError
from minicontainer.names import check_name, is_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of every run, issue 15)
if TYPE_CHECKING:
    from typing import Callable, Iterator


def validate_image_name(name: str) -> str:
    # Like docker's repository names, without registries: names.py's rule, then an optional ``:tag``.
    return check_name(name, "image name", "use letters, digits and _.- (at most 64), optionally :tag", tag=True)


def _is_image_name(name: str) -> bool:
    return is_name(name, tag=True)


def _is_image_id(image_id: str) -> bool:
    # an id is a directory name under images/: never a path
    return is_name(image_id, max_len=128)


def _mkdtemp(prefix: str, parent) -> Path:
    """``tempfile.mkdtemp``, imported here: tempfile pulls in random (~3 ms),
    and ``run`` only reads the store."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


@dataclass(frozen=True)
class Image:
    name: str
    id: str
    rootfs: Path
    meta: dict
    lowers: tuple[Path, ...] = ()  # a layered image's layer directories, top first (overlay's order)

    @property
    def short_id(self) -> str:
        return self.id.split(":")[-1][:12]

    @property
    def layered(self) -> bool:
        return bool(self.lowers)

    @property
    def stack(self) -> tuple[Path, ...]:
        """The directories of the image's root, top first: one for a flat image."""
        return self.lowers or (self.rootfs,)

    def config(self) -> dict:
        """The image config (OCI image spec, config.md). A flat image has
        none ({}), unless it was made with one (mini's default command is
        in its meta.json: a flat image has no config.json)."""
        if not self.layered:
            cfg = self.meta.get("config")
            return cfg if isinstance(cfg, dict) else {}
        try:
            return json.loads((self.rootfs.parent / "config.json").read_bytes())
        except (OSError, ValueError):
            raise ImageError(f"image {self.name} is damaged: its config.json is missing or unreadable",
                             f"remove it with 'minicontainer image rm {self.name}' and load it again") from None


@dataclass(frozen=True)
class NewLayer:
    """A layer unpacked into a work directory (``work``/diff), to be
    installed under ``diff_id`` by :meth:`ImageStore.create_layered`."""

    diff_id: str  # "sha256:<hex>"
    work: Path | None  # None: the store already has it


@dataclass(frozen=True)
class Populated:
    """What a ``populate`` callback may return instead of a bare id: the
    content id (None: a random one) and extra fields for meta.json."""

    id: str | None
    meta: dict = field(default_factory=dict)


PopulateResult = "str | Populated | None"  # for annotations only (they are strings here)


# Locks held by this process: (pid, lock file) -> [fd, depth]. flock(2) locks
# belong to an open file description, so opening the file a second time in
# the same process and locking it again would wait for ourselves forever;
# nested ``lock()`` calls reuse the first fd instead. The pid is part of the
# key because a forked child must take its own locks. Not thread-safe: the
# CLI is single-threaded.
_HELD: dict[tuple[int, str], list[int]] = {}


class ImageStore:
    """Images on disk, with two kinds of locks (see :meth:`lock`).

    Readers (get, list, ``run`` looking up its image) take no lock: a ref is
    replaced with rename(2) and an image appears in images/ with rename(2),
    so a reader sees the old state or the new one, never half of either.
    """

    def __init__(self, home: Path | None = None, state_root: Path | None = None):
        self.home = Path(home) if home is not None else paths.home()
        self.images_dir = self.home / "images"
        self.refs_dir = self.home / "refs"
        self.tmp_dir = self.home / "tmp"
        self.locks_dir = self.home / "locks"
        self.layers_dir = self.home / "layers"
        # where containers_using() looks for containers (None: paths.state_root())
        self.state_root = Path(state_root) if state_root is not None else None

    # for paths.on_store: how to explain an OSError on this store
    store_kind = paths.StoreKind("the image store", "MINICONTAINER_HOME", "HOME (or XDG_DATA_HOME)", top="home")

    # -- setup -------------------------------------------------------------
    @paths.on_store
    def ensure(self) -> None:
        paths.ensure_private_dir(self.home)
        for d in (self.images_dir, self.refs_dir, self.tmp_dir, self.locks_dir, self.layers_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)

    @contextlib.contextmanager
    def lock(self, name: str | None = None) -> Iterator[None]:
        """Hold a store lock (flock(2), exclusive) for the ``with`` block.

        - ``lock()``: the whole store, for short changes to refs/ and images/
          (point a name, install or delete an image). Check-then-change is
          atomic under it: no import can point a name at an image that a
          concurrent ``rm`` or ``prune`` is deleting.
        - ``lock(name)``: building image ``name``, for as long as the build
          takes. A second builder of the same name waits, then finds the image
          made (``ensure_mini``: two first ``run mini`` build it once). Builds
          of other names go on in parallel.

        Order: a name lock is taken before the store lock, never while
        holding it. Nested calls in one process are free. The kernel drops a
        lock when its holder dies, so a killed import never blocks the store.
        """
        if name is None:
            path = self.home / "store.lock"
        else:
            validate_image_name(name)  # the name becomes a file name
            path = self.locks_dir / name
        key = (os.getpid(), str(path))
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        self.ensure()
        # not around the yield: an OSError of the caller's block is the caller's
        with paths.store_access(self):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            with paths.store_access(self):
                fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = [fd, 1]
            try:
                yield
            finally:
                del _HELD[key]
        finally:
            os.close(fd)  # releases the lock

    @paths.on_store
    def clean_tmp(self) -> list[Path]:
        """Remove work directories left by imports that were killed (their
        pid, part of the name, is gone). Returns what was removed."""
        removed = []
        if not self.tmp_dir.is_dir():
            return removed
        for d in self.tmp_dir.iterdir():
            m = re.match(r"^(?:new|old)-(\d+)-", d.name)
            if m and not _pid_alive(int(m.group(1))):
                remove_tree(d)
                removed.append(d)
        return removed

    # -- lookup ------------------------------------------------------------
    @paths.on_store
    def exists(self, name: str) -> bool:
        return _is_image_name(name) and (self.refs_dir / name).is_file()

    @paths.on_store
    def get(self, name: str) -> Image:
        validate_image_name(name)
        ref = self.refs_dir / name
        try:
            image_id = ref.read_text().strip()
        except FileNotFoundError:
            raise ImageError(
                f"no such image: {name}",
                "list images with 'minicontainer image ls', or import one with 'minicontainer image import'",
                exit_code=125,
            ) from None
        if not _is_image_id(image_id):
            raise ImageError(
                f"image {name} is damaged: {ref} does not hold an image id",
                f"remove it with 'minicontainer image rm {name}' and import it again",
                exit_code=125,
            )
        d = self.images_dir / image_id
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            raise ImageError(
                f"image {name} is damaged: {d}/meta.json is missing or unreadable",
                f"remove it with 'minicontainer image rm {name}' and import it again",
                exit_code=125,
            ) from None
        layers = meta.get("layers") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) and _is_diff_id(x) for x in layers):
            raise ImageError(f"image {name} is damaged: {d}/meta.json lists bad layers",
                             f"remove it with 'minicontainer image rm {name}' and load it again", exit_code=125)
        # top first; a layer listed twice (two empty layers) is stacked once, at
        # its higher place: overlayfs refuses a directory twice, and the higher
        # copy already has every effect of the lower one
        lowers = tuple(dict.fromkeys(self.layer_dir(x) for x in reversed(layers)))
        return Image(name=name, id=image_id, rootfs=d / "rootfs", meta=meta, lowers=lowers)

    def layer_dir(self, diff_id: str) -> Path:
        """Where layer ``diff_id`` ("sha256:<hex>") is unpacked."""
        return self.layers_dir / diff_id.split(":", 1)[1] / "diff"

    @paths.on_store
    def has_layer(self, diff_id: str) -> bool:
        return _is_diff_id(diff_id) and (self.layers_dir / diff_id.split(":", 1)[1] / "meta.json").is_file()

    @paths.on_store
    def install_layer(self, work: Path, diff_id: str) -> None:
        """Put a layer unpacked in ``work`` (archive.unpack_layer) in the
        store, unless it has it; the caller holds a lease on it (see lease)."""
        try:
            with self.lock():
                if not self.has_layer(diff_id):
                    os.rename(work, self.layers_dir / diff_id.split(":", 1)[1])
        finally:
            if os.path.lexists(work):
                remove_tree(work)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Callable[[list[str]], None]]:
        """Keep layers from being deleted for the ``with`` block, before an
        image lists them (a build's steps). Yields ``add(diff_ids)``; call
        it under the store lock for layers found in the store, so that no
        ``image rm`` can delete them in between."""
        self.ensure()
        leases = self.home / "leases"
        leases.mkdir(mode=0o700, exist_ok=True)
        import tempfile

        path = Path(tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".json", dir=leases)[1])
        held: set[str] = set()

        def add(diff_ids: list[str]) -> None:
            held.update(diff_ids)
            path.write_text(json.dumps(sorted(held)))

        try:
            add([])
            yield add
        finally:
            path.unlink(missing_ok=True)

    def _leased(self) -> set[str]:
        out: set[str] = set()
        leases = self.home / "leases"
        if not leases.is_dir():
            return out
        for f in leases.iterdir():
            m = re.match(r"^(\d+)-", f.name)
            if not m or not _pid_alive(int(m.group(1))):
                f.unlink(missing_ok=True)  # its build is gone
                continue
            try:
                out.update(x.split(":", 1)[-1] for x in json.loads(f.read_text()))
            except (OSError, ValueError):
                continue  # unreadable: leases are written under the store lock, as this is read
        return out

    def layer_meta(self, diff_id: str) -> dict:
        try:
            return json.loads((self.layers_dir / diff_id.split(":", 1)[1] / "meta.json").read_text())
        except (OSError, ValueError):
            return {}

    @paths.on_store
    def new_work(self) -> Path:
        """A fresh 0700 work directory in tmp/ (removed by clean_tmp if we die)."""
        self.ensure()
        self.clean_tmp()
        return _mkdtemp(f"new-{os.getpid()}-", self.tmp_dir)

    @paths.on_store
    def list(self) -> list[Image]:
        out = []
        if not self.refs_dir.is_dir():
            return out
        for ref in sorted(self.refs_dir.iterdir()):
            if ref.name.startswith("."):
                continue  # a ref being written
            try:
                out.append(self.get(ref.name))
            except (ImageError, UsageError):
                continue
        return out

    @paths.on_store
    def names_of(self, image_id: str) -> list[str]:
        """Every name pointing to ``image_id``."""
        return [img.name for img in self.list() if img.id == image_id]

    @paths.on_store
    def has_id(self, image_id: str) -> bool:
        return _is_image_id(image_id) and (self.images_dir / image_id / "meta.json").is_file()

    # -- creation ----------------------------------------------------------
    @paths.on_store
    def create(
        self,
        name: str | Callable[[str], str],
        populate: Callable[[Path], PopulateResult],
        source: str,
        *,
        force: bool = False,
    ) -> Image:
        """Make image ``name`` atomically.

        ``populate(rootfs)`` fills an empty directory and may return a
        content id (e.g. the sha256 of a tar stream) or a :class:`Populated`;
        with no id a random one is used. Any exception removes the work
        directory, so no half-made image is ever visible. If the id is
        already in the store, the new copy is dropped and the name shares
        the stored one. With ``force`` an existing name is switched to the
        new image, and the image it pointed to is deleted once nothing uses
        it (no other name, no container).

        ``name`` may also be a function of the new id returning the name
        (``run FILE.tar`` names an image after its content); it is called
        under the store lock, so it may look at the store's names.
        """
        fixed = isinstance(name, str)
        if fixed:
            validate_image_name(name)
        self.ensure()
        doomed: list[Path] = []
        with self.lock(name) if fixed else contextlib.nullcontext():
            if fixed and self.exists(name) and not force:
                raise exists_error(name)
            work, image_id = self._populate(populate, source)
            try:
                with self.lock():
                    if not self.has_id(image_id):
                        os.rename(work, self.images_dir / image_id)
                    final_name = name if fixed else validate_image_name(name(image_id))
                    try:
                        image = self._point(final_name, image_id, force, doomed)
                    except ImageError:
                        # lost a race for the name (see tag): leave no orphan
                        self._drop_if_unused(image_id, final_name, doomed)
                        raise
            finally:
                # Outside the lock: deleting a big tree holds up nobody.
                for d in (work, *doomed):
                    if os.path.lexists(d):
                        remove_tree(d)
        return image

    def _populate(self, populate: Callable[[Path], PopulateResult], source: str) -> tuple[Path, str]:
        """Fill a fresh work directory in tmp/; returns it (with its meta.json
        written) and the image id. On any error nothing is left behind."""
        self.clean_tmp()
        work = _mkdtemp(f"new-{os.getpid()}-", self.tmp_dir)
        try:
            rootfs = work / "rootfs"
            rootfs.mkdir()
            os.chmod(rootfs, 0o755)
            result = populate(rootfs)
            if isinstance(result, Populated):
                image_id, extra = result.id, result.meta
            else:
                image_id, extra = result, {}
            image_id = image_id or os.urandom(32).hex()
            if not _is_image_id(image_id):
                raise ImageError(f"internal error: bad image id {image_id!r}")
            # the size: given by populate (a tar import knows it), or measured
            size = extra["size"] if "size" in extra else disk_usage(rootfs)
            meta = {"id": image_id, "created": time.time(), "source": source, **extra, "size": size}
            (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        except BaseException:
            remove_tree(work)
            raise
        return work, image_id

    @paths.on_store
    def tag(self, name: str, image_id: str, *, force: bool = False) -> Image:
        """Point ``name`` at the stored image ``image_id`` (with ``force``,
        replacing what it pointed to; see :meth:`create`)."""
        validate_image_name(name)
        doomed: list[Path] = []
        try:
            with self.lock():
                if not self.has_id(image_id):
                    raise ImageError(f"no image with id {image_id}")
                return self._point(name, image_id, force, doomed)
        finally:
            for d in doomed:
                remove_tree(d)

    @paths.on_store
    def create_layered(self, name: str, image_id: str, config: bytes, layers: list[NewLayer], meta: dict,
                       *, force: bool = False) -> Image:
        """Install a layered image: its new layers (unpacked by the caller,
        see NewLayer), then its config and meta.json, then the name, all
        under the store lock; ``image_id`` is the config's sha256 hex. The
        work directories are removed whatever happens."""
        validate_image_name(name)
        doomed: list[Path] = [x.work for x in layers if x.work is not None]
        try:
            with self.lock(name):
                if self.exists(name) and not force:
                    raise exists_error(name)
                work = self.new_work()
                doomed.append(work)
                (work / "config.json").write_bytes(config)
                full = {"id": image_id, "created": time.time(), **meta,
                        "layers": [x.diff_id for x in layers],
                        "size": sum(int(self.layer_meta(x.diff_id).get("size", 0)) if x.work is None
                                    else _layer_size(x.work) for x in layers)}
                (work / "meta.json").write_text(json.dumps(full, indent=2) + "\n")
                with self.lock():
                    for x in layers:
                        if x.work is not None and not self.has_layer(x.diff_id):
                            os.rename(x.work, self.layers_dir / x.diff_id.split(":", 1)[1])
                        elif not self.has_layer(x.diff_id):
                            raise ImageError(f"layer {x.diff_id[:19]} was removed while the image was being loaded",
                                             "load it again")
                    if not self.has_id(image_id):
                        os.rename(work, self.images_dir / image_id)
                    try:
                        return self._point(name, image_id, force, doomed)
                    except ImageError:
                        self._drop_if_unused(image_id, name, doomed)
                        raise
        finally:
            for d in doomed:
                if os.path.lexists(d):
                    remove_tree(d)

    def _point(self, name: str, image_id: str, force: bool, doomed: list[Path]) -> Image:
        """Under the store lock: make ``name`` point to ``image_id``; the image
        it pointed to before goes if nothing else uses it."""
        old = self._ref_id(name)
        if old is not None and not force:
            raise exists_error(name)
        self._write_ref(name, image_id)
        if old and old != image_id:
            self._drop_if_unused(old, name, doomed)
        return self.get(name)

    def _write_ref(self, name: str, image_id: str) -> None:
        tmp = self.refs_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(image_id + "\n")
        os.replace(tmp, self.refs_dir / name)

    # -- removal -----------------------------------------------------------
    @paths.on_store
    def remove(self, name: str, *, state_root: Path | None = None) -> None:
        """Remove the name; the data goes with the last name pointing to it.
        Refused while a container uses the image (see containers_using)."""
        self._lookup_for_removal(name)  # errors before creating any store dir
        doomed: list[Path] = []
        try:
            with self.lock():
                image = self._lookup_for_removal(name)
                users = containers_using(image, state_root or self.state_root)
                if users:
                    raise ImageError(
                        f"image {name} is used by container {', '.join(users)}",
                        f"remove the container first: 'minicontainer rm {users[0]}'",
                    )
                (self.refs_dir / name).unlink()
                self._drop_if_unused(image.id, name, doomed, state_root=state_root)
        finally:
            for d in doomed:
                remove_tree(d)

    def _lookup_for_removal(self, name: str) -> Image:
        try:
            return self.get(name)
        except ImageError:
            # A damaged image (meta.json gone) must still be removable.
            image_id = self._ref_id(name)
            if image_id is None:
                raise
            return Image(name=name, id=image_id, rootfs=self.images_dir / image_id / "rootfs", meta={})

    @paths.on_store
    def prune(self) -> list[Image]:
        """Delete every stored image that no name points to and no container
        uses (left by older versions, or by a container that held an image
        while its name moved on). Returns them, named ``""``."""
        if not self.images_dir.is_dir():
            return []
        removed: list[Image] = []
        doomed: list[Path] = []
        try:
            with self.lock():
                for d in sorted(self.images_dir.iterdir()):
                    try:
                        meta = json.loads((d / "meta.json").read_text())
                    except (OSError, ValueError):
                        meta = {}
                    if self._drop_if_unused(d.name, "", doomed):
                        removed.append(Image(name="", id=d.name, rootfs=d / "rootfs", meta=meta))
                # and layers no image has (a build that failed, or was interrupted, made them)
                grave = _mkdtemp(f"old-{os.getpid()}-", self.tmp_dir)
                doomed.append(grave)
                self._drop_unused_layers(grave)
        finally:
            for d in doomed:
                remove_tree(d)
        self.clean_tmp()
        return removed

    def _drop_if_unused(
        self, image_id: str, name: str, doomed: list[Path], *, state_root: Path | None = None
    ) -> bool:
        """Under the store lock: if no name points to ``image_id`` and no
        container uses it, move it out of images/ into tmp/ and append that
        path to ``doomed`` (the caller deletes it after releasing the lock).
        ``name`` is the name it was known by, for containers whose state has
        no image id (they keep it: better a leak than a broken container)."""
        if not _is_image_id(image_id) or image_id in self._referenced_ids():
            return False
        image = Image(name=name, id=image_id, rootfs=self.images_dir / image_id / "rootfs", meta={})
        if containers_using(image, state_root or self.state_root):
            return False
        # Rename first: a half-deleted tree is never visible as an image.
        self.ensure()
        grave = _mkdtemp(f"old-{os.getpid()}-", self.tmp_dir)
        doomed.append(grave)
        try:
            os.rename(self.images_dir / image_id, grave / "image")
        except FileNotFoundError:
            return False
        self._drop_unused_layers(grave)
        return True

    def _drop_unused_layers(self, grave: Path) -> None:
        """Under the store lock: move every layer that no stored image lists
        into ``grave`` (being deleted by the caller)."""
        if not self.layers_dir.is_dir():
            return
        used = self._leased()
        for d in self.images_dir.iterdir():
            try:
                layers = json.loads((d / "meta.json").read_text()).get("layers") or []
            except (OSError, ValueError, AttributeError):
                continue
            used.update(x.split(":", 1)[-1] for x in layers if isinstance(x, str))
        for d in self.layers_dir.iterdir():
            if d.name not in used:
                os.rename(d, grave / f"layer-{d.name}")

    def _referenced_ids(self) -> set[str]:
        """Ids named by any ref, damaged images included (read raw, unlike
        list(), so a ref whose meta.json is gone still protects its data)."""
        ids = set()
        if self.refs_dir.is_dir():
            for ref in self.refs_dir.iterdir():
                if not ref.name.startswith("."):
                    image_id = self._ref_id(ref.name)
                    if image_id:
                        ids.add(image_id)
        return ids

    def _ref_id(self, name: str) -> str | None:
        try:
            return (self.refs_dir / name).read_text().strip()
        except OSError:
            return None


def _is_diff_id(value: str) -> bool:
    return re.fullmatch(r"sha256:[0-9a-f]{64}", value) is not None


def _layer_size(work: Path) -> int:
    try:
        return int(json.loads((work / "meta.json").read_text()).get("size", 0))
    except (OSError, ValueError):
        return 0


def exists_error(name: str) -> ImageError:
    """The refusal of a name that is taken; the commands that reach it (import,
    import-dir, debootstrap) all have --force, so the hint names it."""
    return ImageError(f"image {name} already exists",
                      f"add --force to replace it, or remove it first with 'minicontainer image rm {name}'")


def containers_using(image: Image, state_root: Path | None = None) -> list[str]:
    """Names (or ids) of containers whose state says they use ``image``.

    Reads ``$MINICONTAINER_ROOT/containers/*/state.json`` (state.py's format:
    "id", "name", "image", "image_id", ...). A container exists until
    ``minicontainer rm`` removes its directory, running or not: its writable
    layer is stacked on the image. When the state has an image_id, that is
    what counts (a name may have been re-imported since)."""
    root = Path(state_root) if state_root is not None else paths.state_root()
    users = []
    try:
        entries = sorted((root / "containers").iterdir())
    except OSError:
        return users
    for d in entries:
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict):
            continue
        if state.get("image_id"):
            uses = state["image_id"] == image.id
        else:
            uses = state.get("image") in (image.name, image.id)
        if uses:
            users.append(str(state.get("name") or state.get("id") or d.name))
    return users


def remove_tree(path: Path) -> None:
    """``rm -rf path`` that never deletes through a mount point inside it
    (a failed debootstrap can leave /proc mounted in its target: rmtree would
    then walk the host's /proc). Such mounts are detached first."""
    import shutil  # only removals need it: shutil (and the bz2/lzma it loads) is ~3.5 ms of a run's imports

    detach_mounts_under(path)
    shutil.rmtree(path, onerror=_make_writable_and_retry)


def _make_writable_and_retry(func, path, exc_info) -> None:
    """An image may hold 0500 directories; root ignores modes, a user (unit
    tests) needs the parent made writable first. Other errors: give up on
    that entry, like ``rm -rf`` going on with the rest."""
    parent = os.path.dirname(path)
    try:
        if func in (os.rmdir, os.unlink) or func.__name__ in ("rmdir", "unlink"):
            os.chmod(parent, 0o700)
            func(path)
        elif func.__name__ in ("open", "scandir"):
            import shutil

            os.chmod(path, 0o700)
            shutil.rmtree(path, onerror=_ignore)
    except OSError:
        pass


def _ignore(*_args) -> None:
    pass


def detach_mounts_under(path: Path) -> None:
    """Detach (umount -l) every mount at or below ``path``, deepest first."""
    for mnt in sorted(_mounts_under(Path(path)), key=len, reverse=True):
        _umount_detach(mnt)


def _mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path)
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                # proc(5): field 5 is the mount point, with octal escapes (\040 = space)
                mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                if mnt == prefix or mnt.startswith(prefix + "/"):
                    out.append(mnt)
    except OSError:
        pass
    return out


def _umount_detach(target: str) -> None:
    """umount2(target, MNT_DETACH), see umount(2); a failure is fine: rmtree
    then skips nothing worse."""
    from minicontainer.errors import SyscallError
    from minicontainer.syscalls.flags import MNT_DETACH
    from minicontainer.syscalls.linux import Linux  # only here: the store is on the `run` start path

    try:
        Linux().umount2(target, MNT_DETACH)
    except SyscallError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def disk_usage(path: Path) -> int:
    """Bytes used by the files under ``path`` (hard links counted once)."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total
