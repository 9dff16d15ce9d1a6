"""Write a tree of files under a fresh root directory, never through a symlink.

The writer behind every image import: images/tarread.py hands it the
members of a tarball, ``image import-dir`` (importer.copy_tree) the entries of
a directory. Both trust nothing about the names and the order they give.

Every write is relative to a directory fd (openat(2), mkdirat(2),
symlinkat(2), linkat(2) with ``O_NOFOLLOW``; the directory steps are
safepath.py's): a path string is never handed to the kernel to resolve, so
a symlink planted by an earlier entry cannot redirect a later write
(reliability cases A3-A6). The rules:

- every parent of an entry must be a real directory: a symlink (or a file)
  on the way refuses the import, naming the entry; missing parents are made
  (0755 in the end, tar's default for directories it had to make);
- an entry replaces what is at its name, as tar does; a non-empty directory
  is never replaced;
- kept exactly: regular files, directories, symlinks (any target, never
  followed), hard links to earlier regular files that are still regular
  files, permission bits including setuid/setgid/sticky, numeric uid/gid
  (when we are root, as ``tar --same-owner``), mtimes (directories are fixed
  up by :meth:`SafeTree.finish`, after their contents were written), and
  file capabilities (``security.capability``, as root);
- in an image layer, whiteouts in overlayfs's own form (the kernel's
  Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
  directories"): a character device 0:0 for a deleted name, the xattr
  ``trusted.overlay.opaque=y`` on a directory that hides the one below.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable

from minicontainer import safepath
from minicontainer.errors import ImageError

# O_EXCL|O_CREAT never follows a symlink in the last component (open(2)).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

PATH_MAX = 4096  # bytes in a path, NUL included (limits.h)

REFUSED_HINT = "the archive is unsafe or malformed; nothing was imported"

OPAQUE_XATTR = "trusted.overlay.opaque"  # overlayfs.rst; setting it needs CAP_SYS_ADMIN


def refused(member: str, why: str) -> ImageError:
    """The error for an entry we will not write: the whole import stops."""
    return ImageError(f"refusing archive: member {member!r} {why}", REFUSED_HINT)


class SafeTree:
    """Creates entries under a fresh root directory, never following a symlink.

    Paths are tuples of components. Parents are opened one component at a
    time with ``O_DIRECTORY|O_NOFOLLOW`` from the root fd; a symlink or file
    where a directory is needed refuses the archive. The fds of the last
    walked directory chain are kept (tar lists a directory's entries
    together), and dropped when an entry in that chain is replaced.

    Used by the tar extractor and by ``image import-dir``.
    """

    def __init__(self, root: Path, *, same_owner: bool | None = None):
        self._root_fd = os.open(root, safepath.DIR_NOFOLLOW)
        self._chain: list[tuple[str, int]] = []
        self._chain_dirs: tuple[str, ...] = ()  # the names in _chain, to recognise the same directory at once
        # directory -> (final mode, mtime_ns or None): applied by finish(),
        # after the contents, or writing them would have changed the mtime.
        self._dirs: dict[tuple[str, ...], tuple[int, int | None]] = {}
        self._files: set[tuple[str, ...]] = set()  # regular files: hard link targets
        # Only root can give files away (chown(2)); as a user we keep ours, like tar.
        self.same_owner = os.geteuid() == 0 if same_owner is None else same_owner

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._forget(())
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    # -- walking ----------------------------------------------------------------
    def _parent(self, parts: tuple[str, ...], label: str, *, create: bool = True) -> int:
        """The fd of ``parts[:-1]``, creating missing directories (0700 until
        finish(); 0755 then, tar's default for directories it had to make)."""
        dirs = parts[:-1]
        chain = self._chain
        if chain and len(chain) == len(dirs) and chain[-1][0] == dirs[-1] and self._chain_dirs == dirs:
            return chain[-1][1]  # the same directory as the last member's (tar lists a directory's entries together)
        keep = 0
        while keep < len(chain) and keep < len(dirs) and chain[keep][0] == dirs[keep]:
            keep += 1
        for _, fd in chain[keep:]:
            os.close(fd)
        del chain[keep:]
        self._chain_dirs = dirs[:keep]
        fd = chain[-1][1] if chain else self._root_fd
        for i in range(keep, len(dirs)):
            fd = self._open_dir(fd, dirs[: i + 1], label, create=create)
            chain.append((dirs[i], fd))
            self._chain_dirs = dirs[: i + 1]  # kept equal to the chain's names, even if the next open fails
        return fd

    def _open_dir(self, parent_fd: int, path: tuple[str, ...], label: str, *, create: bool) -> int:
        """One step of a walk (safepath.open_dir_strict): a directory made
        here is remembered for finish(); a missing one without ``create``
        raises FileNotFoundError."""
        try:
            fd, made = safepath.open_dir_strict(parent_fd, path[-1], mkdir_mode=0o700 if create else None)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise refused(
                    label,
                    f"would be written through {'/'.join(path)!r}, which is a symlink or a file, "
                    "not a directory",
                ) from None
            raise
        if made:
            self._dirs.setdefault(path, (0o755, None))
        return fd

    def _open_existing(self, path: tuple[str, ...], label: str) -> int:
        """A new fd for an existing directory (no creation, no cache)."""
        fd = os.open(".", safepath.DIR_NOFOLLOW, dir_fd=self._root_fd)
        try:
            for i in range(len(path)):
                nfd = self._open_dir(fd, path[: i + 1], label, create=False)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _forget(self, path: tuple[str, ...]) -> None:
        """Close the cached fds of ``path`` and below it (it is being replaced)."""
        depth = len(path)
        if tuple(name for name, _ in self._chain[:depth]) != path:
            return  # not cached
        start = max(depth - 1, 0)
        for _, fd in self._chain[start:]:
            os.close(fd)
        del self._chain[start:]
        self._chain_dirs = self._chain_dirs[:start]

    def _remove(self, parent_fd: int, parts: tuple[str, ...], label: str) -> None:
        """Make room for a new entry, as tar does: unlink what is there (an
        empty directory is removed; a non-empty one refuses the archive)."""
        name = parts[-1]
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            self._forget(parts)
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise refused(label, "would replace a directory that is not empty") from None
                raise
            self._dirs.pop(parts, None)
        else:
            os.unlink(name, dir_fd=parent_fd)
        self._files.discard(parts)

    def _root_entry(self, label: str) -> None:
        raise refused(label, "names the root directory itself but is not a directory")

    # -- entries ----------------------------------------------------------------
    def make_dir(self, parts: tuple[str, ...], mode: int, uid: int, gid: int, mtime_ns: int | None, label: str) -> None:
        if not parts:  # "./": the root's own mode and owner
            if self.same_owner:
                os.fchown(self._root_fd, uid, gid)
            self._dirs[()] = (mode, mtime_ns)
            return
        parent = self._parent(parts, label)
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a file or symlink: replaced, as tar does
                self._remove(parent, parts, label)
                os.mkdir(name, 0o700, dir_fd=parent)
        if self.same_owner:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        self._dirs[parts] = (mode, mtime_ns)

    def write_file(
        self,
        parts: tuple[str, ...],
        mode: int,
        uid: int,
        gid: int,
        mtime_ns: int | None,
        label: str,
        write: Callable[[int], None],
        caps: bytes | None = None,
    ) -> None:
        """Create a new regular file and let ``write(fd)`` fill it."""
        if not parts:
            self._root_entry(label)
        parent = self._parent(parts, label)
        name = parts[-1]
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, parts, label)
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            write(fd)
            if self.same_owner:
                os.fchown(fd, uid, gid)  # before chmod: chown(2) clears setuid bits
            os.fchmod(fd, mode)
            if caps is not None and self.same_owner:
                # after chown, which clears them (capabilities(7), "File capabilities")
                os.setxattr(fd, "security.capability", caps)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        self._files.add(parts)

    def make_symlink(self, parts: tuple[str, ...], target: str, uid: int, gid: int, mtime_ns: int | None, label: str) -> None:
        """A symlink is stored as is, absolute or not: we never follow it, and
        inside the container it resolves against the container's root."""
        if not parts:
            self._root_entry(label)
        if not target or "\0" in target or len(os.fsencode(target)) >= PATH_MAX:
            raise refused(label, "is a symlink with an empty, NUL-containing or over-long target")
        parent = self._parent(parts, label)
        name = parts[-1]
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, parts, label)
            os.symlink(target, name, dir_fd=parent)
        if self.same_owner:
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        if mtime_ns is not None:
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)

    def make_hardlink(self, parts: tuple[str, ...], target: tuple[str, ...], label: str) -> None:
        """A hard link to an earlier regular-file member, still a regular file
        now. linkat(2) without AT_SYMLINK_FOLLOW, from fds inside the root: it
        can only ever link an inode we created (reliability case A5)."""
        if not parts:
            self._root_entry(label)
        if target not in self._files:
            raise refused(label, f"is a hard link to {'/'.join(target)!r}, which is not an earlier regular file in the archive")
        if target == parts:
            return
        try:
            tfd = self._open_existing(target[:-1], label)
        except FileNotFoundError:
            raise refused(label, "is a hard link whose target has gone") from None
        try:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise refused(label, f"is a hard link to {'/'.join(target)!r}, which is no longer a regular file")
            parent = self._parent(parts, label)
            try:
                os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                self._remove(parent, parts, label)
                os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tfd)
        self._files.add(parts)

    def make_whiteout(self, parts: tuple[str, ...], label: str) -> None:
        """A deleted name: a 0:0 character device at ``parts`` (mknod(2);
        since Linux 5.8 a whiteout needs no CAP_MKNOD). Only ever in the
        layer's own fresh tree, in a parent reached without symlinks; a name
        the same layer also made refuses the archive (the spec lets a layer
        delete only what the layers below have)."""
        if not parts:
            self._root_entry(label)
        parent = self._parent(parts, label)
        try:
            os.mknod(parts[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        except FileExistsError:
            raise refused(label, "deletes a name that the same layer creates") from None
        if self.same_owner:
            os.chown(parts[-1], 0, 0, dir_fd=parent, follow_symlinks=False)

    def make_opaque(self, parts: tuple[str, ...], label: str) -> None:
        """The directory ``parts`` hides whatever the layers below have there
        (made if the layer did not list it before its marker)."""
        fd = self._parent(parts + ("-",), label) if parts else self._root_fd
        os.setxattr(fd, OPAQUE_XATTR, b"y")

    def finish(self) -> None:
        """Apply directory modes and mtimes. Reverse path order puts every
        directory after its descendants (a 0500 parent is set last) and keeps
        siblings together, so the cached parent chain is reused."""
        for path in sorted(self._dirs, reverse=True):
            mode, mtime_ns = self._dirs[path]
            label = "/".join(path)
            try:
                parent = self._parent(path, label, create=False) if path else self._root_fd
            except (FileNotFoundError, ImageError):
                continue  # a later member replaced a parent: nothing to fix up
            fd = safepath.open_dir_nofollow(parent, path[-1] if path else ".")
            if fd is None:
                continue  # a later member replaced it
            try:
                os.fchmod(fd, mode)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
        self._forget(())
