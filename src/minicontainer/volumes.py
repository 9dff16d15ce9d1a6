"""Volumes: directories of the volume store that outlive containers (no mount here).

    $MINICONTAINER_HOME/volumes/          0700: no other host user reaches a volume's
        .lock                             files (they may hold setuid programs of an image)
        NAME/                             0700
            volume.json                   name, created, anonymous, the container it was made for
            fresh                         present until the first container fills it
            _data/                        what the container sees at its mount point

A volume is created on first use (``run -v NAME:/path``) or by ``volume
create``, whole or not at all: it is built under a temporary name and
renamed into place under the store's lock (flock(2)). Which containers use
a volume is not recorded here but read from what they were made with (each
container's config.json): the spec is saved before its volumes are
created, so ``volume rm``, under the same lock, always sees a container
that is about to mount it, and nothing can go stale.

Filling (:func:`fill`): Docker copies the image's files at the mount
point into a new, empty volume, once. Here the container's child does it, before
its root changes: it reaches the image's directory through its own root fd
without following a symlink (safepath.py), and copies with owners, modes
and times, never following one either (container/copy.py's copier).

Import-light: a run imports this to start only when it uses a volume (the
end of a removed container reads which volumes it had).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
from minicontainer.records import asdict, dataclass  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

from minicontainer import paths
from minicontainer.container.config import named_volumes, saved_fields
from minicontainer.errors import ContainerError, UsageError

DATA = "_data"
FRESH = "fresh"
META = "volume.json"


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    created: float = 0.0
    anonymous: bool = False
    created_for: str = ""  # the container whose run made it on first use ("" for volume create)


def data_dir(root: str | Path, name: str) -> str:
    """Where a volume's files are (what its containers see)."""
    return f"{root}/{name}/{DATA}"


def check_volume_name(name: str) -> str:
    from minicontainer.container.spec import check_volume_name as check

    return check(name)


class VolumeStore:
    # for paths.on_store: how to explain an OSError on this store
    store_kind = paths.StoreKind("the volume store", "MINICONTAINER_HOME", "HOME (or XDG_DATA_HOME)", top="root")

    def __init__(self, root: Path | None = None, containers: Path | None = None):
        self.root = Path(root) if root is not None else paths.home() / "volumes"
        self._containers = containers  # the state store's containers/ (default: the current one)

    def lock(self):
        return paths.dir_lock(self.root)

    # -- reading -------------------------------------------------------------------
    @paths.on_store
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / META).is_file())

    def get(self, name: str) -> VolumeInfo | None:
        try:
            data = json.loads((self.root / name / META).read_text())
            return VolumeInfo(**data)
        except (OSError, ValueError, TypeError):
            return None

    def require(self, name: str) -> VolumeInfo:
        info = self.get(check_volume_name(name))
        if info is None:
            raise ContainerError(f"no such volume: {name}", "see minicontainer volume ls")
        return info

    def path(self, name: str) -> str:
        return data_dir(self.root, name)

    def users(self) -> dict[str, list[str]]:
        """Volume name -> the names of the containers (any status) that use it:
        made with it (``-v NAME:/path``, ``--mount type=volume``, an anonymous
        ``-v /path``), or binding a path inside its directory (``-v
        $MINICONTAINER_HOME/volumes/NAME/_data:/path``). The one notion of "in
        use" for ``volume rm``, ``volume prune``, ``system df`` and ``system prune``."""
        containers = self._containers if self._containers is not None else _state_containers()
        out: dict[str, list[str]] = {}
        if not containers.is_dir():
            return out
        root = os.path.realpath(self.root)
        for d in sorted(containers.iterdir()):
            spec = saved_fields(d)
            names = {name for name, _ in named_volumes(spec)}
            for source in _bind_sources(spec):
                inside = os.path.relpath(os.path.realpath(source), root)
                if inside not in (".", "..") and not inside.startswith(".." + os.sep):
                    names.add(inside.split(os.sep, 1)[0])  # a path in (or at) the volume NAME/
            for name in sorted(names):
                out.setdefault(name, []).append(_container_name(d))
        return out

    # -- changing ------------------------------------------------------------------
    @paths.on_store
    def create(self, name: str, *, anonymous: bool = False, created_for: str = "",
               exist_ok: bool = False) -> tuple[VolumeInfo, bool]:
        """The volume ``name``, made now if it does not exist; (info, made by this call)."""
        check_volume_name(name)
        with self.lock():
            info = self.get(name)
            if info is not None:
                if not exist_ok:
                    raise UsageError(f"volume {name} already exists", "use it as it is, or choose another name")
                return info, False
            info = VolumeInfo(name=name, created=time.time(), anonymous=anonymous, created_for=created_for)
            tmp = self.root / f".new-{name}-{os.urandom(4).hex()}"
            try:
                tmp.mkdir(mode=0o700)
                os.mkdir(tmp / DATA, 0o755)
                (tmp / FRESH).touch(0o600)
                (tmp / META).write_text(json.dumps(asdict(info), indent=1))
                if (self.root / name).exists():  # a directory without volume.json: not a volume, not ours
                    raise ContainerError(f"{self.root / name} exists and is not a volume", "remove it by hand")
                tmp.rename(self.root / name)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return info, True

    @paths.on_store
    def remove(self, name: str, *, missing_ok: bool = False) -> bool:
        """Remove a volume and its files; refused while a container uses it.
        False if there was none (with ``missing_ok``)."""
        check_volume_name(name)
        with self.lock():
            if self.get(name) is None:
                if missing_ok:
                    return False
                raise ContainerError(f"no such volume: {name}", "see minicontainer volume ls")
            users = self.users().get(name, [])
            if users:
                raise ContainerError(f"volume {name} is in use by container {', '.join(users)}",
                                     "remove those containers first (minicontainer rm)")
            self._delete(name)
        return True

    @paths.on_store
    def remove_unused(self, names, *, only_made_for: str | None = None) -> list[str]:
        """Remove those of ``names`` no container uses (anonymous volumes of a
        removed container; with ``only_made_for``: the volumes a container that
        never started made on first use). Returns the names removed."""
        gone = []
        if not names or not self.root.is_dir():
            return gone
        with self.lock():
            users = self.users()
            for name in names:
                info = self.get(name)
                if info is None or users.get(name):
                    continue
                if only_made_for is not None and info.created_for != only_made_for:
                    continue
                self._delete(name)
                gone.append(name)
        return gone

    @paths.on_store
    def prune(self, *, all_volumes: bool = False) -> list[tuple[str, int]]:
        """Remove every unused anonymous volume (``all_volumes``: every unused
        one), as docker volume prune [-a]; (name, bytes freed) each."""
        from minicontainer.images.store import disk_usage

        out = []
        if not self.root.is_dir():
            return out
        with self.lock():
            users = self.users()
            for name in self.names():
                info = self.get(name)
                if info is None or users.get(name) or not (all_volumes or info.anonymous):
                    continue
                size = disk_usage(self.root / name)
                self._delete(name)
                out.append((name, size))
        return out

    def _delete(self, name: str) -> None:
        """Under the lock: renamed away first, so a half-deleted volume is never seen as one."""
        doomed = self.root / f".gone-{name}-{os.urandom(4).hex()}"
        os.rename(self.root / name, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _state_containers() -> Path:
    from minicontainer.container.state import StateStore

    return StateStore().containers


def _bind_sources(spec: dict) -> list[str]:
    """The host paths bound into the container: -v HOST:... and --mount
    type=bind (``volumes``), an OCI bundle's bind mounts (``mounts`` without
    a filesystem type)."""
    binds = [v for v in spec.get("volumes") or () if isinstance(v, dict)]
    binds += [m for m in spec.get("mounts") or () if isinstance(m, dict) and m.get("fstype") is None]
    return [b["source"] for b in binds if isinstance(b.get("source"), str) and b["source"]]


def _container_name(state_dir: Path) -> str:
    try:
        return json.loads((state_dir / "state.json").read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return state_dir.name[:12]


def release(vols: list[tuple[str, bool]], cid: str, *, half_made: bool, store: VolumeStore | None = None) -> list[str]:
    """After a container's state is removed: its anonymous volumes go (rm -v,
    --rm, as docker), and when it never started, the volumes its run made on
    first use too (bad input leaves no volume behind). ``vols``: its
    (name, anonymous) pairs (container.runtime.volumes_of), read before the state went.
    Returns the names removed."""
    if not vols:
        return []
    store = store or VolumeStore()
    gone = store.remove_unused([n for n, anon in vols if anon])
    if half_made:
        gone += store.remove_unused([n for n, anon in vols if not anon], only_made_for=cid)
    return gone


# -- filling a new volume from the image ------------------------------------------------


def fill(root_fd: int, target: str, volume_dir: str) -> int:
    """Copy what the container's image has at ``target`` into the new volume
    at ``volume_dir``, once (the ``fresh`` marker; flock(2) on the volume's
    directory, so two containers starting at once copy it once). Returns the
    bytes copied (0: not new any more, or nothing there in the image)."""
    from minicontainer import safepath
    from minicontainer.errors import SyscallError

    vfd = os.open(volume_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(vfd, fcntl.LOCK_EX)
        try:
            os.stat(FRESH, dir_fd=vfd, follow_symlinks=False)
        except FileNotFoundError:
            return 0  # filled (or begun with) by an earlier container: its files are the volume's now
        if _has_entries(vfd):
            # written by a container that mounted it with volume-nocopy: docker copies into an empty volume only
            os.unlink(FRESH, dir_fd=vfd)
            return 0
        try:
            src = safepath.open_beneath(root_fd, target, os.O_RDONLY | os.O_DIRECTORY)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise  # a symlink on the way (ELOOP), a file where a directory must be (ENOTDIR)
            src = None  # the image has nothing there: the volume starts empty
        copied = 0
        if src is not None:
            try:
                copied = _copy_into(src, vfd, target)
            finally:
                os.close(src)
        os.unlink(FRESH, dir_fd=vfd)
        return copied
    finally:
        os.close(vfd)


def _has_entries(vfd: int) -> bool:
    from minicontainer import safepath

    dfd = safepath.open_dir_nofollow(vfd, DATA)
    if dfd is None:
        raise ContainerError(f"the volume's {DATA} directory is missing or not a directory", "remove the volume")
    try:
        return bool(os.listdir(dfd))
    finally:
        os.close(dfd)


def _copy_into(src: int, vfd: int, shown: str) -> int:
    """Every entry of the image's directory ``src`` into the volume's _data,
    owners, modes and times kept; then _data takes the directory's own owner
    and mode, as docker's volume does."""
    from minicontainer import safepath
    from minicontainer.container.copy import MAX_DEPTH, Options, _Copier, _kind
    from minicontainer.errors import warn

    class _VolumeCopier(_Copier):
        def entry(self, sdir, sname, st, ddir, dname, shown, depth):
            if depth <= MAX_DEPTH and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                                           or stat.S_ISLNK(st.st_mode)):
                warn(f"the new volume did not get the image's {shown}: a {_kind(st.st_mode)} is not copied")
                return
            super().entry(sdir, sname, st, ddir, dname, shown, depth)

    dfd = safepath.open_dir_nofollow(vfd, DATA)
    if dfd is None:
        raise ContainerError(f"the volume's {DATA} directory is missing or not a directory", "remove the volume")
    try:
        copier = _VolumeCopier(Options(archive=True), into_container=True, shown_src=shown)
        for name in sorted(os.listdir(src)):
            try:
                st = os.stat(name, dir_fd=src, follow_symlinks=False)
            except FileNotFoundError:
                continue
            copier.entry(src, name, st, dfd, name, f"{shown.rstrip('/')}/{name}", 1)
        top = os.fstat(src)
        os.chown(dfd, top.st_uid, top.st_gid)
        os.chmod(dfd, stat.S_IMODE(top.st_mode))
        return copier.copied
    finally:
        os.close(dfd)
