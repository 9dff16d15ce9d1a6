"""Getting root filesystems into the store: tarballs, directories, debootstrap.

Every path goes through ``ImageStore.create``: the tree is made in a fresh
0700 work directory under the store's ``tmp/`` and renamed into ``images/``
only when complete, so a failure (a hostile member, a truncated gzip, a full
disk, Ctrl-C) leaves nothing behind.

Same content, one copy. A tarball's image id is the sha256 of its
uncompressed stream, which we only know once we have read it all. So:

- a file imported before is recognised *before* reading it, from a small
  cache keyed on its (device, inode, size, mtime, ctime): the new name just
  points at the stored id, instantly. ctime cannot be set from user space,
  so a rewritten file never matches an old entry;
- anything else (a copy of the file, stdin) is extracted while hashing; if
  the digest turns out to be stored already, the fresh copy is dropped and
  the name shares the old one. Correct always, instant when it can be.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import re
import stat
import sys
from minicontainer.records import dataclass  # dataclasses without exec or inspect (records.py, issue 15)
from pathlib import Path
from typing import BinaryIO, Callable, TextIO

from minicontainer import safepath
from minicontainer.errors import ImageError, wrap_oserror
from minicontainer.images.store import Image, ImageStore, Populated, detach_mounts_under, validate_image_name
from minicontainer.images.safetree import SafeTree, refused
from minicontainer.images.tarread import Limits, extract_tar

_CACHE_FILE = "import-cache.json"
_CACHE_ENTRIES = 256


@dataclass(frozen=True)
class ImportOutcome:
    image: Image
    shared: bool  # the content was already stored: no new copy
    from_cache: bool  # recognised without reading the file
    members: int = 0
    skipped_special: int = 0  # device nodes, FIFOs (and sockets, for a directory)
    skipped_mounts: int = 0  # other filesystems below an imported directory


# -- tarballs ------------------------------------------------------------------


def import_tarball(
    store: ImageStore,
    source: str,
    name: str,
    *,
    force: bool = False,
    limits: Limits = Limits(),
    progress: Callable[[int], None] | None = None,
    stdin: BinaryIO | None = None,
) -> ImportOutcome:
    """Import the tar file ``source`` (``-``: standard input) as ``name``."""
    validate_image_name(name)
    _check_free_name(store, name, force)
    if source == "-":
        raw = stdin if stdin is not None else os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        if raw.isatty():
            raise ImageError("refusing to read a tarball from a terminal", "pipe it in: 'cat FILE | minicontainer image import - NAME'")
        return _import_stream(store, raw, "stdin", name, None, limits, progress, force)
    raw = _open_tarball(source)
    with raw:
        st = os.fstat(raw.fileno())
        key = _cache_key(st) if stat.S_ISREG(st.st_mode) else None
        cached = _cache_get(store, key)
        if cached:
            with store.lock():  # so the cached image cannot be pruned before we name it
                if store.has_id(cached):
                    image = store.tag(name, cached, force=force)
                    return ImportOutcome(image, shared=True, from_cache=True, members=image.meta.get("members", 0))
        return _import_stream(store, raw, os.path.abspath(source), name, key, limits, progress, force)


def tarball_size(source: str) -> int | None:
    """The size to show a progress bar against (None: unknown, e.g. a pipe)."""
    if source == "-":
        try:
            st = os.fstat(sys.stdin.fileno())
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None
    try:
        st = os.stat(source)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def import_for_run(store: ImageStore, path: str) -> Image:
    """``minicontainer run FILE.tar``: the image of that tarball, imported on
    first use under the name ``tar-<short id>`` (so ``image ls`` shows it
    and ``image rm`` can free the space)."""

    def name_for(image_id: str) -> str:
        names = store.names_of(image_id)
        return names[0] if names else f"tar-{image_id[:12]}"

    with _open_tarball(path) as raw:
        st = os.fstat(raw.fileno())
        key = _cache_key(st) if stat.S_ISREG(st.st_mode) else None
        cached = _cache_get(store, key)
        if cached:
            with store.lock():
                if store.has_id(cached):
                    return store.tag(name_for(cached), cached, force=True)
        image, _, _ = _build_from_tar(store, raw, os.path.abspath(path), name_for, Limits(), None, True)
        _cache_put(store, key, image.id)
        return image


def _open_tarball(source: str) -> BinaryIO:
    try:
        return open(source, "rb", buffering=0)
    except IsADirectoryError:
        raise ImageError(f"{source} is a directory", f"import a directory with 'minicontainer image import-dir {source} NAME'") from None
    except FileNotFoundError:
        raise ImageError(f"no such file: {source}", "give a tar file (plain, .gz, .xz or .bz2), or - for stdin") from None
    except OSError as e:
        err = wrap_oserror("opening", e, source)
        raise ImageError(err.message, err.hint) from e


def _import_stream(store, raw, source, name, key, limits, progress, force) -> ImportOutcome:
    image, shared, result = _build_from_tar(store, raw, source, name, limits, progress, force)
    _cache_put(store, key, image.id)
    return ImportOutcome(
        image, shared=shared, from_cache=False, members=result.members, skipped_special=result.skipped_special
    )


def _build_from_tar(store, raw, source, name, limits, progress, force):
    """Extract ``raw`` into a new image named ``name`` (a string, or a
    function of the id: see ImageStore.create)."""
    outcome = {}

    def populate(rootfs: Path) -> Populated:
        result = extract_tar(raw, rootfs, limits=limits, progress=progress)
        image_id = result.digest.split(":", 1)[1]
        outcome["shared"] = store.has_id(image_id)
        outcome["result"] = result
        meta = {
            "digest": result.digest,
            "compression": result.compression,
            "members": result.members,
            "tar_bytes": result.bytes,
            "skipped_special": result.skipped_special,
            "size": result.file_bytes,
        }
        return Populated(image_id, meta)

    image = store.create(name, populate, source, force=force)
    return image, outcome["shared"], outcome["result"]


def _check_free_name(store: ImageStore, name: str, force: bool) -> None:
    if store.exists(name) and not force:
        from minicontainer.images.store import exists_error

        raise exists_error(name)


# -- the "seen this file before" cache ------------------------------------------


def _cache_key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _cache_load(store: ImageStore) -> dict[str, str]:
    try:
        data = json.loads((store.home / _CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cache_get(store: ImageStore, key: str | None) -> str | None:
    if key is None:
        return None
    value = _cache_load(store).get(key)
    return value if isinstance(value, str) else None


def _cache_put(store: ImageStore, key: str | None, image_id: str) -> None:
    """Best effort: a lost update only costs a later re-read."""
    if key is None:
        return
    data = _cache_load(store)
    data.pop(key, None)
    data[key] = image_id
    while len(data) > _CACHE_ENTRIES:
        data.pop(next(iter(data)))  # oldest first: dicts keep insertion order
    tmp = store.home / f".{_CACHE_FILE}.{os.getpid()}"
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, store.home / _CACHE_FILE)
    except OSError:
        tmp.unlink(missing_ok=True)


# -- directories ---------------------------------------------------------------------


@dataclass(frozen=True)
class CopyResult:
    entries: int
    skipped_special: int
    skipped_mounts: int


def import_dir(store: ImageStore, src: str, name: str, *, force: bool = False, limits: Limits = Limits()) -> ImportOutcome:
    """Copy the directory tree ``src`` into a new image ``name``."""
    validate_image_name(name)
    _check_free_name(store, name, force)
    if not os.path.isdir(src):
        raise ImageError(f"not a directory: {src}", "import a tar file with 'minicontainer image import FILE NAME'")
    outcome = {}

    def populate(rootfs: Path) -> Populated:
        res = copy_tree(Path(src), rootfs, limits=limits)
        outcome["result"] = res
        return Populated(None, {"members": res.entries, "skipped_special": res.skipped_special})

    image = store.create(name, populate, source=f"dir:{os.path.abspath(src)}", force=force)
    res = outcome["result"]
    return ImportOutcome(
        image, shared=False, from_cache=False, members=res.entries,
        skipped_special=res.skipped_special, skipped_mounts=res.skipped_mounts,
    )


def copy_tree(src: Path, dest: Path, *, limits: Limits = Limits(), same_owner: bool | None = None) -> CopyResult:
    """Copy ``src`` into the empty directory ``dest`` with the tar rules.

    The source is walked from directory fds with ``O_NOFOLLOW``, and every
    entry's type, mode and owner come from fstat(2) of the fd we opened, not
    from an earlier lstat (the tree may change while we copy). Symlinks are
    copied as links, hard links stay hard links, devices/FIFOs/sockets are
    skipped and counted, and we stay on the source's filesystem (like
    ``cp -x``): a mount below it (a /proc, a bind mount) is not part of it.
    """
    counts = {"entries": 0, "special": 0, "mounts": 0}
    links: dict[tuple[int, int], tuple[str, ...]] = {}
    try:
        top = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        err = wrap_oserror("opening", e, str(src))
        raise ImageError(err.message, err.hint) from e
    try:
        with SafeTree(dest, same_owner=same_owner) as tree:
            st = os.fstat(top)
            tree.make_dir((), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, ".")
            _copy_dir(top, (), st.st_dev, tree, links, counts, limits)
            tree.finish()
    except OSError as e:
        err = wrap_oserror(f"copying {src}", e)
        raise ImageError(err.message, err.hint) from e
    finally:
        os.close(top)
    return CopyResult(counts["entries"], counts["special"], counts["mounts"])


_SRC_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO swapped in must not hang us


def _copy_dir(dfd: int, parts: tuple[str, ...], dev: int, tree: SafeTree, links, counts, limits: Limits) -> None:
    if len(parts) >= limits.max_depth:
        raise refused("/".join(parts), f"is nested deeper than {limits.max_depth} directories")
    with os.scandir(dfd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = parts + (entry.name,)
        label = "/".join(path)
        counts["entries"] += 1
        if counts["entries"] > limits.max_members:
            raise ImageError(f"the directory has more than {limits.max_members} entries")
        try:
            lst = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we copy
        if stat.S_ISLNK(lst.st_mode):
            target = os.readlink(entry.name, dir_fd=dfd)
            tree.make_symlink(path, target, lst.st_uid, lst.st_gid, lst.st_mtime_ns, label)
        elif stat.S_ISDIR(lst.st_mode):
            if lst.st_dev != dev:
                counts["mounts"] += 1
                continue
            fd = _open_same(entry.name, dfd, safepath.DIR_NOFOLLOW, lst, label)
            try:
                st = os.fstat(fd)
                tree.make_dir(path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, label)
                _copy_dir(fd, path, dev, tree, links, counts, limits)
            finally:
                os.close(fd)
        elif stat.S_ISREG(lst.st_mode):
            if lst.st_nlink > 1 and (lst.st_dev, lst.st_ino) in links:
                tree.make_hardlink(path, links[(lst.st_dev, lst.st_ino)], label)
                continue
            fd = _open_same(entry.name, dfd, _SRC_FILE, lst, label)
            try:
                st = os.fstat(fd)
                if st.st_size > limits.max_file_bytes:
                    raise refused(label, f"is {st.st_size} bytes, over the {limits.max_file_bytes}-byte limit per file")
                tree.write_file(
                    path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, label,
                    lambda out, fd=fd, size=st.st_size: _copy_data(fd, out, size),
                    _caps_of(fd),
                )
            finally:
                os.close(fd)
            if lst.st_nlink > 1:
                links[(lst.st_dev, lst.st_ino)] = path
        else:
            counts["special"] += 1  # devices, FIFOs, sockets: /dev is made at run time


def _caps_of(fd: int) -> bytes | None:
    """The file's capabilities (the one xattr we copy, as tarread explains)."""
    try:
        return os.getxattr(fd, "security.capability")
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise


def _open_same(name: str, dfd: int, flags: int, lst: os.stat_result, label: str) -> int:
    """Open ``name`` and check it is still the inode we listed (same type,
    device and inode): if it was swapped meanwhile, refuse."""
    fd = os.open(name, flags, dir_fd=dfd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)) != (lst.st_dev, lst.st_ino, stat.S_IFMT(lst.st_mode)):
        os.close(fd)
        raise ImageError(f"{label} changed while it was being copied", "copy a directory nothing else is writing to")
    return fd


def _copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    """In-kernel copy (sendfile(2)); read/write if the filesystem refuses."""
    left = size
    try:
        while left > 0:
            n = os.sendfile(dst_fd, src_fd, None, min(left, 1 << 30))
            if n == 0:
                break  # the file shrank meanwhile: keep what there is
            left -= n
        return
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or left != size:
            raise
    while left > 0:
        data = os.read(src_fd, min(left, 1 << 20))
        if not data:
            break
        os.write(dst_fd, data)
        left -= len(data)


# -- debootstrap ----------------------------------------------------------------------

_SUITE_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")  # fullmatch: '$' matches before a final newline


def find_debootstrap() -> str:
    import shutil  # debootstrap alone needs shutil and subprocess: an import of a tarball does not

    exe = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        raise ImageError("debootstrap is not installed", "install it with 'apt-get install -y debootstrap'")
    return exe


def debootstrap(
    store: ImageStore,
    suite: str,
    name: str,
    *,
    variant: str = "minbase",
    mirror: str | None = None,
    force: bool = False,
    output: TextIO | None = None,
) -> Image:
    """Build a Debian/Ubuntu root filesystem with debootstrap(8) straight into
    a work directory in the store. ``output`` gets debootstrap's log lines."""
    validate_image_name(name)
    _check_free_name(store, name, force)
    if not _SUITE_RE.fullmatch(suite):
        raise ImageError(f"invalid suite {suite!r}", "e.g. bookworm, trixie, jammy")
    if not re.fullmatch(r"[a-z]+", variant):
        raise ImageError(f"invalid variant {variant!r}", "e.g. minbase, buildd")
    exe = find_debootstrap()
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root (it chroots and sets file owners)", "run it as root")

    import subprocess

    def populate(rootfs: Path) -> None:
        cmd = [exe, f"--variant={variant}", suite, str(rootfs)] + ([mirror] if mirror else [])
        tail: collections.deque[str] = collections.deque(maxlen=5)
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        except OSError as e:
            err = wrap_oserror("running debootstrap", e, exe)
            raise ImageError(err.message, err.hint) from e
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                if output is not None:
                    output.write(line)
                    output.flush()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            # It mounts /proc and /sys in the target while it works; if it
            # died, they must not stay (nor be walked by a later rm -rf).
            detach_mounts_under(rootfs)
        if code != 0:
            last = next((t for t in reversed(tail) if t.strip()), "")
            raise ImageError(f"debootstrap {suite} failed (exit {code})" + (f": {last}" if last else ""),
                             "check the suite name and that the mirror is reachable")
        return None

    src = f"debootstrap {suite} --variant={variant}" + (f" {mirror}" if mirror else "")
    return store.create(name, populate, source=src, force=force)


__all__ = [
    "CopyResult", "ImportOutcome", "copy_tree", "debootstrap", "find_debootstrap", "import_dir",
    "import_for_run", "import_tarball", "tarball_size",
]
