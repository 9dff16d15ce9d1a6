"""Read a container's layers without mounting them: what it changed, and
the merged tree it sees.

A container's root is an overlay (see the kernel's
Documentation/filesystems/overlayfs.rst)::

    lower   the image rootfs: shared, never written
    upper   this container's writes (MINICONTAINER_HOME/containers/<id>/upper)
    merged  what the container sees: upper on top of lower

We apply overlayfs's rules ourselves, reading upper and lower side by side:

- a name in upper hides the same name in lower, except that two
  directories are merged (their children are combined, recursively);
- a *whiteout* (a character device 0:0) in upper means "deleted": the lower
  name is hidden and the whiteout itself is not part of the tree;
- an *opaque* directory (xattr ``trusted.overlay.opaque`` = ``y``) was
  deleted and made again: none of the lower directory's children show;
- a *redirect* (xattr ``trusted.overlay.redirect``, only with the
  ``redirect_dir`` feature, off by default) is a renamed lower directory: it
  merges with the lower directory the xattr names, not the one at its path;
- *metacopy* files (only with ``metacopy=on``, off by default) keep their
  data in the lower layer; we refuse them with a clear error.

Why not mount the overlay read-only and walk that? Mounting needs a private
mount namespace in a forked child, and the container's own mount of the same
upper dir would still be writing to it. Reading the directories works the
same whether the container runs or not, needs no mount at all, serves
``diff`` (which needs to know which layer an entry came from) and ``export``
with one set of rules, and shows how overlayfs works.

Safety: a running container can rename things and plant symlinks in its
upper dir while we read it (docker cp had this race, CVE-2018-15664). So we
never hand a path inside a layer to the kernel: every lookup is relative to
an open directory fd (openat(2) with O_NOFOLLOW, safepath.py's
open_dir_nofollow; fstatat(2) with AT_SYMLINK_NOFOLLOW); a file's data is opened with O_PATH first, checked to
be the same regular file we listed, and only then reopened for reading
through /proc/self/fd (proc(5)). A swapped path gives a skipped entry, never
a host file. A running container's export is therefore not an atomic
snapshot (docker's is not either): a file changing under us may be left out
or read as it is at that moment.

Symlinks inside the layers are never followed, in upper or lower. The only
link we resolve is the container's own ``lower`` link to its image (written
by the runtime, not by the container).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from minicontainer import safepath
from minicontainer.errors import ContainerError, ImageError, wrap_oserror

# The kernel's default; a rootless overlay mounted with "userxattr" uses
# "user.overlay." instead (overlayfs.rst, "User xattr").
TRUSTED_PREFIX = "trusted.overlay."
USER_PREFIX = "user.overlay."

# Deeper than any real root filesystem; keeps the recursion (one Python frame
# per level) far from the interpreter's limit.
MAX_DEPTH = 256


@dataclass(frozen=True)
class Layers:
    """Where a container's files are.

    ``kind`` is "overlay" (``lower`` is the image, ``upper`` the writes),
    "read-only" (only ``lower``, the image) or "copy": without overlayfs the
    runtime gives the container a full private copy, which is then ``lower``,
    and ``image`` is what ``diff`` compares it with (None if it is gone).
    """

    kind: str
    lower: str
    upper: str | None = None
    image: str | None = None
    xattr_prefix: str = TRUSTED_PREFIX
    # a layered image: its layers under ``lower``, top first (lower-1, lower-2 ...)
    below: tuple[str, ...] = ()

    @property
    def stack(self) -> tuple[str, ...]:
        """The image's layers, top first (one for a flat image)."""
        return (self.lower, *self.below)


@dataclass(frozen=True)
class Change:
    kind: str  # "A" added, "C" changed, "D" deleted (docker diff's letters)
    path: str  # inside the container, e.g. "/etc/passwd"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def container_layers(layer_dir: str, image_rootfs: str | None) -> Layers:
    """The layers of a container from its directory (runtime.py's layout)::

        lower -> image rootfs, upper/, work/    overlay
        lower -> image rootfs, empty/           --read-only overlay
        copy/                                   no overlayfs: a private copy
        (nothing)                               --read-only without overlayfs
    """
    d = Path(layer_dir)
    if not d.is_dir():
        raise ContainerError(f"the container's layer directory {d} is missing", "remove the container")
    lower = _lower_link(d)
    below = []  # a layered image: lower-1, lower-2 ... under lower (rootfs.py)
    while (link := _lower_link(d, f"lower-{len(below) + 1}")) is not None:
        below.append(link)
    if (d / "upper").is_dir():
        if lower is None:
            raise ContainerError(f"the container's layer {d} has an upper/ but no lower link", "remove the container")
        return Layers("overlay", lower=lower, upper=str(d / "upper"), below=tuple(below))
    if (d / "copy").is_dir():
        return Layers("copy", lower=str(d / "copy"), image=image_rootfs)
    if lower is not None:
        return Layers("read-only", lower=lower, below=tuple(below))
    if image_rootfs is None:
        raise ContainerError(f"cannot tell where the root filesystem of {d} is", "remove the container")
    return Layers("read-only", lower=image_rootfs)


def _lower_link(d: Path, name: str = "lower") -> str | None:
    try:
        target = os.readlink(d / name)
    except OSError:
        return None
    return os.path.join(d, target)  # absolute targets stay as they are


# -- fd-relative helpers ------------------------------------------------------------


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs.rst, "whiteouts": a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _open_root(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise wrap_oserror(f"opening the {what} layer", e, path) from None


def _listdir(fd: int | None) -> list[str]:
    if fd is None:
        return []
    try:
        return os.listdir(fd)
    except OSError as e:
        raise wrap_oserror("listing a directory", e, _fd_path(fd)) from None


def _lstat(dir_fd: int | None, name: str) -> os.stat_result | None:
    """fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW); None if it is gone."""
    if dir_fd is None:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_dir(dir_fd: int | None, name: str) -> int | None:
    """safepath.open_dir_nofollow, where ``dir_fd`` may be "no directory"
    (a side of the merge that has nothing here) and failures name the path."""
    if dir_fd is None:
        return None
    try:
        return safepath.open_dir_nofollow(dir_fd, name)
    except OSError as e:
        raise wrap_oserror("opening a directory", e, f"{_fd_path(dir_fd)}/{name}") from None


def _xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise wrap_oserror(f"reading the xattr {name}", e, _fd_path(fd)) from None


def _xattr_at(dir_fd: int, name: str, attr: str) -> bytes | None:
    """An xattr of a non-directory without opening it (opening could block
    on a FIFO or wake a device): the path goes through the already open
    directory, and the last component is not followed (lgetxattr(2))."""
    try:
        return os.getxattr(f"/proc/self/fd/{dir_fd}/{name}", attr, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise wrap_oserror(f"reading the xattr {attr}", e, f"{_fd_path(dir_fd)}/{name}") from None


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd {fd}"


def _lower_of(up_fd: int, lower: Stack | None, name: str, lower_root: Stack, prefix: str) -> tuple[Stack | None, bool]:
    """The lower directory that the upper directory ``up_fd`` (called
    ``name``, in a directory merged with ``lower``) merges with, and
    whether it is the one at the same path. (None, True): nothing below."""
    if _xattr(up_fd, prefix + "opaque") == b"y":
        return None, True
    redirect = _xattr(up_fd, prefix + "redirect")
    if redirect is None:
        return (lower.child(name) if lower is not None else None), True
    target = os.fsdecode(redirect)
    if target in (".", "..") or ".." in target.split("/"):
        return None, False  # never a way out of the lower layer
    if not target.startswith("/"):  # a new name in the same parent
        return (lower.child(target) if lower is not None and "/" not in target else None), False
    # Absolute: from the root of the lower layer, even when the parent has
    # no lower directory (a lower dir moved into a new one). '..' was refused above.
    try:
        return lower_root.walk(safepath.split_inside(target)), False
    except OSError as e:
        raise wrap_oserror("opening a redirected directory", e, f"{_fd_path(lower_root.top)}{target}") from None


def _refuse_metacopy(dir_fd: int, name: str, path: str, prefix: str) -> None:
    if _xattr_at(dir_fd, name, prefix + "metacopy") is not None:
        raise ContainerError(
            f"{path} in the container's upper layer is an overlayfs metacopy file (its data is in the lower layer)",
            "metacopy=on is not supported by diff/export; mount overlays with metacopy=off (the default)",
        )


def _depth_check(path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ContainerError(f"{path} is nested deeper than {MAX_DEPTH} directories", "refusing to walk further")


# -- the image side: one directory, or a layered image's stack of them --------------


class Stack:
    """One directory of the image as the overlay shows it: the directories
    at that path in each image layer, top first, merged by overlayfs's
    rules (a name in a higher layer hides the lower ones, a whiteout hides
    them and is itself no entry, a directory merges with the directories
    below it unless it is opaque or a non-directory comes first). A flat
    image is a stack of one. It owns its fds (``close``).

    The image layers are the store's (unpacked with the load's checks), never
    written by a container; the same fd-relative, no-follow reads as for the
    upper layer are used all the same."""

    def __init__(self, fds: list[int], prefix: str):
        self.fds = fds
        self.prefix = prefix

    @property
    def top(self) -> int:
        return self.fds[0]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def names(self) -> set[str]:
        """The visible names (whiteouts and what they hide left out)."""
        seen: set[str] = set()
        hidden: set[str] = set()
        for fd in self.fds:
            for name in _listdir(fd):
                if name in seen or name in hidden:
                    continue
                st = _lstat(fd, name)
                if st is None:
                    continue
                (hidden if is_whiteout(st) else seen).add(name)
        return seen

    def find(self, name: str) -> tuple[int, os.stat_result] | None:
        """The layer directory holding the visible ``name`` and its lstat; None if there is none."""
        for fd in self.fds:
            st = _lstat(fd, name)
            if st is None:
                continue
            return None if is_whiteout(st) else (fd, st)
        return None

    def child(self, name: str) -> Stack | None:
        """The merged subdirectory ``name``, or None (no directory there)."""
        fds: list[int] = []
        try:
            for fd in self.fds:
                st = _lstat(fd, name)
                if st is None:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break  # a file (or a whiteout) hides the layers below
                c = _open_dir(fd, name)
                if c is None:
                    break
                fds.append(c)
                if _xattr(c, self.prefix + "opaque") == b"y":
                    break  # made again in this layer: nothing below shows
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return Stack(fds, self.prefix) if fds else None

    def walk(self, parts: list[str]) -> Stack | None:
        """The merged directory at ``parts`` from here (for a redirect)."""
        here: Stack | None = self
        opened: list[Stack] = []
        try:
            for part in parts:
                here = here.child(part)
                if here is None:
                    return None
                opened.append(here)
            return opened.pop() if opened else Stack([os.dup(fd) for fd in self.fds], self.prefix)
        finally:
            for st in opened:
                st.close()


def _open_stack(paths: tuple[str, ...], prefix: str) -> Stack:
    fds: list[int] = []
    try:
        for p in paths:
            fds.append(_open_root(p, "lower"))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Stack(fds, prefix)


def _names(stack: Stack | None) -> set[str]:
    return stack.names() if stack is not None else set()


def _find(stack: Stack | None, name: str) -> tuple[int | None, os.stat_result | None]:
    hit = stack.find(name) if stack is not None else None
    return hit if hit is not None else (None, None)


# -- the merged view ---------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One file of the merged tree. ``dir_fd`` is the directory holding it;
    it is valid only until the walk goes on to the next entry."""

    path: str  # inside the container, "/etc/passwd"
    st: os.stat_result  # lstat of the entry in the layer it comes from
    layer: str  # "upper" | "lower"; in a layer walk "layer", or "opaque" for an opaque directory
    dir_fd: int = field(repr=False)
    name: str = field(repr=False)

    def readlink(self) -> str:
        return os.readlink(self.name, dir_fd=self.dir_fd)

    def open(self) -> int | None:
        """An fd to read a regular file's data, or None if it is no longer
        the file we listed (a running container replaced it)."""
        try:
            pfd = os.open(self.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return None
        try:
            now = os.fstat(pfd)
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (self.st.st_dev, self.st.st_ino):
                return None
            # O_PATH pinned the inode; reopening through /proc opens that inode, not a path.
            return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)


def walk_merged(layers: Layers) -> Iterator[Entry]:
    """Every entry of the merged tree (the root itself excepted), parents
    before children, names sorted. Whiteouts are not entries."""
    with ExitStack() as stack:
        low = _open_stack(layers.stack, layers.xattr_prefix)
        stack.callback(low.close)
        up = None
        if layers.upper is not None:
            up = _open_root(layers.upper, "upper")
            stack.callback(os.close, up)
        yield from _merge("", up, low, low, layers.xattr_prefix, 0)


def _merge(rel: str, up: int | None, low: Stack | None, low_root: Stack, prefix: str,
           depth: int) -> Iterator[Entry]:
    _depth_check(rel, depth)
    up_names = set(_listdir(up))
    for name in sorted(up_names | _names(low)):
        path = f"{rel}/{name}"
        if name in up_names:
            src, layer = up, "upper"
            st = _lstat(src, name)
        else:
            layer = "lower"
            src, st = _find(low, name)
        if st is None or is_whiteout(st):
            continue  # deleted (or removed while we read)
        if not stat.S_ISDIR(st.st_mode):
            if layer == "upper" and stat.S_ISREG(st.st_mode):
                _refuse_metacopy(src, name, path, prefix)
            yield Entry(path, st, layer, src, name)
            continue
        if layer == "lower":
            child_stack = low.child(name)
            if child_stack is None:
                continue
            try:
                yield Entry(path, os.fstat(child_stack.top), layer, src, name)
                yield from _merge(path, None, child_stack, low_root, prefix, depth + 1)
            finally:
                child_stack.close()
            continue
        child = _open_dir(src, name)
        if child is None:
            continue  # replaced by something else since the lstat
        try:
            child_low, _ = _lower_of(child, low, name, low_root, prefix)
            try:
                yield Entry(path, os.fstat(child), layer, src, name)
                yield from _merge(path, child, child_low, low_root, prefix, depth + 1)
            finally:
                if child_low is not None:
                    child_low.close()
        finally:
            os.close(child)


# -- diff ------------------------------------------------------------------------------


def diff(layers: Layers) -> list[Change]:
    """What the container changed, compared with its image, like docker diff:
    ``A`` added, ``C`` changed, ``D`` deleted. A directory holding a change is
    itself ``C``; an added directory lists its contents as ``A`` too; a
    deleted directory is one ``D`` (not its contents). Sorted by path, a
    directory before its contents."""
    with ExitStack() as stack:
        low = _open_stack(layers.stack, layers.xattr_prefix)
        stack.callback(low.close)
        differ = _Differ(low, layers.xattr_prefix)
        if layers.kind == "overlay":
            up = _open_root(layers.upper, "upper")
            stack.callback(os.close, up)
            differ.dir("", up, low, True, low, 0)
        elif layers.kind == "copy":
            # A private copy (no overlayfs): compare the whole tree with the image.
            if layers.image is None:
                raise ContainerError(
                    "this container runs on a private copy of its image, and the image is gone",
                    "'minicontainer export' still works",
                )
            image = _open_stack((layers.image,), layers.xattr_prefix)
            stack.callback(image.close)
            differ.dir("", None, low, False, image, 0)
        # read-only: nothing can have changed
    return sorted(differ.out, key=lambda c: c.path.split("/"))


def _same_meta(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (b.st_mode, b.st_uid, b.st_gid, b.st_mtime_ns)


def _same_file(a: os.stat_result, b: os.stat_result, a_link: str | None, b_link: str | None) -> bool:
    """Two non-directories look the same (metadata, size, link target; the
    data is not read, as rsync's quick check)."""
    return _same_meta(a, b) and a.st_size == b.st_size and a.st_rdev == b.st_rdev and a_link == b_link


class _Differ:
    """Walks the merged tree next to the image's, directory by directory,
    and collects the changes in ``out``. The lower and image sides are
    :class:`Stack` s (a layered image's layers merged)."""

    def __init__(self, low_root: Stack, prefix: str):
        self.low_root = low_root
        self.prefix = prefix
        self.out: list[Change] = []

    def dir(self, rel: str, up: int | None, low: Stack | None, low_is_image: bool, image: Stack | None,
            depth: int) -> bool:
        """Record the changes below one directory; True if there are any.

        ``up``: the container's writes here (each one is a change); ``low``:
        the lower directory merged here; ``low_is_image``: it is the image's
        directory at this same path, so its entries are unchanged by
        definition (and not even read); ``image``: the image's directory at
        this path (None if the image has no directory here), to tell A from C
        and to find what was deleted.
        """
        _depth_check(rel, depth)
        changed = False
        up_names = set(_listdir(up))
        low_names = _names(low)
        image_names = low_names if low_is_image else _names(image)
        visible = set()
        for name in sorted(up_names | low_names):
            from_upper = name in up_names
            if not from_upper and low_is_image:
                visible.add(name)  # the image's own entry, seen through the overlay
                continue
            if from_upper:
                src, st = up, _lstat(up, name)
            else:
                src, st = _find(low, name)
            if st is None or is_whiteout(st):
                continue
            visible.add(name)
            path = f"{rel}/{name}"
            image_fd, image_st = _find(image, name) if name in image_names else (None, None)
            kind = "A" if image_st is None else "C"
            if stat.S_ISDIR(st.st_mode):
                if self.subdir(path, src, name, from_upper, low, low_is_image, image, image_st, depth):
                    changed = True  # it recorded itself
                elif kind == "A" or not stat.S_ISDIR(image_st.st_mode) or not _same_meta(st, image_st):
                    self.out.append(Change(kind, path))
                    changed = True
                continue
            if from_upper:
                if stat.S_ISREG(st.st_mode):
                    _refuse_metacopy(src, name, path, self.prefix)
            elif image_st is not None and _same_file(st, image_st, _link(src, name, st),
                                                     _link(image_fd, name, image_st)):
                continue  # from a lower directory other than the image's, but the same
            self.out.append(Change(kind, path))
            changed = True
        for name in sorted(image_names - visible):
            self.out.append(Change("D", f"{rel}/{name}"))
            changed = True
        return changed

    def subdir(self, path, src, name, from_upper, low, low_is_image, image, image_st, depth) -> bool:
        """Recurse into one directory of the merged tree; records the
        directory itself when something below it changed. True if it did."""
        opened: list[Stack] = []
        child_fd = None
        try:
            child_image = None
            if image_st is not None and stat.S_ISDIR(image_st.st_mode) and image is not None:
                child_image = image.child(name)
                if child_image is not None:
                    opened.append(child_image)
            if from_upper:
                child_fd = _open_dir(src, name)
                if child_fd is None:
                    return False
                child_up = child_fd
                child_low, same_path = _lower_of(child_fd, low, name, self.low_root, self.prefix)
                if child_low is not None:
                    opened.append(child_low)
            else:
                child_up, same_path = None, True
                child_low = low.child(name) if low is not None else None
                if child_low is None:
                    return False
                opened.append(child_low)
            # Below here the lower is the image's own directory only if it
            # was at this level too and no redirect moved it.
            low_is_image_below = low_is_image and same_path and child_low is not None and child_image is not None
            if low_is_image_below:
                child_low = child_image
            if self.dir(path, child_up, child_low, low_is_image_below, child_image, depth + 1):
                self.out.append(Change("A" if image_st is None else "C", path))
                return True
            return False
        finally:
            for st in opened:
                st.close()
            if child_fd is not None:
                os.close(child_fd)


def _link(dir_fd: int | None, name: str, st: os.stat_result) -> str | None:
    if dir_fd is None or not stat.S_ISLNK(st.st_mode):
        return None
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


# -- export ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportStats:
    members: int
    bytes: int  # file data written
    skipped: int  # sockets (tar has no type for them) and files replaced while we read


class _ExactReader:
    """Reads exactly ``size`` bytes from ``fd``: a file that shrank while we
    read it (a running container) is padded with zeros, one that grew is cut
    at the size we announced in the tar header."""

    def __init__(self, fd: int, size: int, path: str):
        self.fd = fd
        self.left = size
        self.path = path

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        buf = bytearray()
        while len(buf) < n:
            try:
                data = os.read(self.fd, n - len(buf))
            except OSError as e:
                raise wrap_oserror("reading", e, self.path) from None
            if not data:  # it shrank
                buf += bytes(n - len(buf))
                break
            buf += data
        self.left -= n
        return bytes(buf)


def write_tar(layers: Layers, out: BinaryIO, *, bufsize: int = 1 << 20, ids=None) -> ExportStats:
    """Write the merged tree to ``out`` as a tar stream (PAX format, tar(5)).

    Kept: types, permission bits with setuid/setgid/sticky, numeric owners
    (no user names: the host's names mean nothing in the container, and GNU
    tar would prefer them over the numbers), mtimes (whole seconds, as docker
    export), symlinks as they are, hard links between files of the tree,
    device nodes and FIFOs, file capabilities (the only xattr kept; the
    overlay's own trusted.overlay.* never leave). Names have no leading "/"
    or "./" and the root itself is not a member (like docker export).
    ``ids`` (uid base, gid base, count): a container of root's --userns,
    whose own files belong to its range on the host; they are written with
    the ids the container sees (base+1000 as 1000), as docker export does.
    """
    with _TarOut(out, bufsize, ids) as tar:
        for entry in walk_merged(layers):
            tar.add(entry)
    return tar.stats()


def write_layer_tar(layer: str, out: BinaryIO, *, prefix: str = TRUSTED_PREFIX, bufsize: int = 1 << 20) -> ExportStats:
    """Write one layer directory (an image layer, or a container's upper
    directory for ``build``) as an image layer tar: write_tar's rules, and
    overlayfs's whiteouts in the OCI image spec's form (layer.md,
    "Whiteouts"): a 0:0 character device becomes an empty ``.wh.NAME``, an
    opaque directory gets a ``.wh..wh..opq`` after it. The same tree always
    gives the same bytes (names sorted, whole-second mtimes, no user names,
    no atime), so its sha256, the layer's diff_id, is stable."""
    root = _open_root(layer, "layer")
    try:
        with _TarOut(out, bufsize) as tar:
            for entry in _walk_layer("", root, prefix, 0):
                if is_whiteout(entry.st):
                    # The 0:0 device was made when the layer was unpacked: its
                    # time says nothing, and would change the layer's digest
                    # from one unpacking to the next. A fixed 0 keeps it stable.
                    tar.marker(entry.path.rsplit("/", 1)[0] + "/.wh." + entry.name, 0)
                    continue
                tar.add(entry)
                if stat.S_ISDIR(entry.st.st_mode) and entry.layer == "opaque":
                    tar.marker(entry.path + "/.wh..wh..opq", int(entry.st.st_mtime))
    finally:
        os.close(root)
    return tar.stats()


def _walk_layer(rel: str, fd: int, prefix: str, depth: int) -> Iterator[Entry]:
    """Every entry of one directory tree, whiteouts included, parents first,
    names sorted; an opaque directory's Entry has layer "opaque"."""
    _depth_check(rel, depth)
    for name in sorted(_listdir(fd)):
        st = _lstat(fd, name)
        if st is None:
            continue
        path = f"{rel}/{name}"
        if not stat.S_ISDIR(st.st_mode):
            if stat.S_ISREG(st.st_mode):
                _refuse_metacopy(fd, name, path, prefix)
            yield Entry(path, st, "layer", fd, name)
            continue
        child = _open_dir(fd, name)
        if child is None:
            continue
        try:
            if _xattr(child, prefix + "redirect") is not None:
                raise ContainerError(f"{path} in the layer is a renamed overlay directory (redirect_dir=on)",
                                     "a layer tar cannot say 'renamed'; mount overlays with redirect_dir=off")
            opaque = _xattr(child, prefix + "opaque") == b"y"
            yield Entry(path, os.fstat(child), "opaque" if opaque else "layer", fd, name)
            yield from _walk_layer(path, child, prefix, depth + 1)
        finally:
            os.close(child)


class _TarOut:
    """The tar writer of export and layer tars: one entry at a time, hard
    links between entries of the walk kept, file capabilities as pax records."""

    def __init__(self, out: BinaryIO, bufsize: int, ids=None):
        self._ids = ids  # (uid base, gid base, count): owners moved back out of a --userns range
        # Stream mode: no seeking, so "-" (a pipe) works; big buffers to keep
        # the number of write(2) calls low.
        self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=bufsize,
                                 copybufsize=bufsize)
        self._links: dict[tuple[int, int], str] = {}
        self.members = self.data = self.skipped = 0

    def __enter__(self) -> _TarOut:
        return self

    def __exit__(self, *exc) -> None:
        self._tar.close()

    def stats(self) -> ExportStats:
        return ExportStats(members=self.members, bytes=self.data, skipped=self.skipped)

    def marker(self, path: str, mtime: int) -> None:
        """An empty regular file ``path`` (a whiteout marker), owned by root."""
        info = tarfile.TarInfo(path.lstrip("/"))
        info.mode, info.mtime, info.uname, info.gname = 0o644, mtime, "", ""
        self._tar.addfile(info)
        self.members += 1

    def add(self, entry: Entry) -> None:
        info = _tarinfo(entry)
        if info is None:
            self.skipped += 1
            return
        if self._ids is not None:
            ubase, gbase, count = self._ids
            info.uid -= ubase if ubase <= info.uid < ubase + count else 0
            info.gid -= gbase if gbase <= info.gid < gbase + count else 0
        st = entry.st
        if info.type != tarfile.REGTYPE:
            self._tar.addfile(info)
            self.members += 1
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, self._links[key], 0
            self._tar.addfile(info)
            self.members += 1
            return
        fd = entry.open()
        if fd is None:
            self.skipped += 1
            return
        caps = _xattr_at(entry.dir_fd, entry.name, "security.capability")
        if caps is not None:
            # File capabilities (ping's cap_net_raw...), as GNU tar
            # --xattrs writes them; binary, so surrogateescape (tarfile
            # then marks the record hdrcharset=BINARY, pax(1)).
            info.pax_headers = {"SCHILY.xattr.security.capability": caps.decode("utf-8", "surrogateescape")}
        try:
            self._tar.addfile(info, _ExactReader(fd, info.size, entry.path))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self._links[key] = info.name
        self.data += info.size
        self.members += 1


def _tarinfo(entry: Entry) -> tarfile.TarInfo | None:
    st = entry.st
    info = tarfile.TarInfo(entry.path.lstrip("/"))
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        try:
            info.linkname = entry.readlink()
        except OSError:
            return None
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return None  # a socket: tar(5) has no type for it
    return info


def check_output_outside(output: str, layers: Layers, layer_dir: str | None) -> None:
    """Refuse to write the export into the tree being exported (the walk
    would read the archive as it grows) or into the image."""
    where = os.path.realpath(os.path.dirname(os.path.abspath(output)))
    for d in (layer_dir, *layers.stack, layers.upper, layers.image):
        if d is None:
            continue
        real = os.path.realpath(d)
        if where == real or where.startswith(real.rstrip("/") + "/"):
            raise ImageError(
                f"refusing to write the export to {output}: it is inside the container's layers ({real})",
                "write it somewhere else, or to '-' (stdout)",
            )
