"""Open paths inside a container's root without ever following a symlink.

Every runc CVE from 2019 on (CVE-2019-19921, CVE-2021-30465, CVE-2024-45310,
CVE-2025-31133 ...) is the same mistake: the runtime resolved a path inside the
rootfs the host way, and a symlink planted by the image sent a mount or a write
to the host. So the runtime never hands a joined string like
``rootfs + "/proc"`` to the kernel. Instead it walks the path one component at
a time from a directory fd, with ``O_NOFOLLOW``, and mounts onto the resulting
fd through ``/proc/self/fd/N`` (the magic link names exactly that inode).

A symlink anywhere on the way is refused (ELOOP), so ``/proc -> /bad-proc``
or ``/dev -> /host/dir`` in an image is an error, not an escape
(reliability cases B11-B14).

The same rule serves the runtime's other readers and writers of untrusted
trees (layers.py reading a container's upper dir, images/safetree.py writing
an image): they step from directory to directory with
:func:`open_dir_nofollow`, :func:`open_dir_strict` and
:func:`walk_dirs_nofollow`, all built on one set of flags.
"""

from __future__ import annotations

import errno
import os
import stat

from minicontainer.errors import SyscallError

# O_PATH: an fd that names an inode without opening it for I/O; enough to
# mount onto, to fstat and as a dir_fd. Not in Python's os on every build.
O_PATH = getattr(os, "O_PATH", 0o10000000)

# A directory we will list or change: O_RDONLY, not O_PATH, because
# getdents(2), fchmod(2) and fchown(2) fail with EBADF on an O_PATH fd
# (open(2), "O_PATH"). O_NOFOLLOW: a symlink as the last component fails
# with ELOOP instead of being followed; O_DIRECTORY: anything else that is
# not a directory fails with ENOTDIR.
DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# The errnos with which openat(DIR_NOFOLLOW) says "there is no real
# directory here": nothing there, a symlink, or something else.
NOT_A_REAL_DIR = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def split_inside(path: str) -> list[str]:
    """'/a//b/./c/' -> ['a', 'b', 'c']; refuses '..' (a mount target never needs it)."""
    parts = split_inside_allowing_dotdot(path)
    if ".." in parts:
        raise SyscallError("resolving", errno.EINVAL, path, "paths inside the container may not contain '..'")
    return parts


def open_beneath(
    root_fd: int,
    relpath: str,
    flags: int = O_PATH,
    *,
    create_dirs: bool = False,
    create_file: bool = False,
    mode: int = 0o755,
) -> int:
    """Open ``relpath`` inside the directory ``root_fd`` refers to.

    No component may be a symlink, the last one included. With
    ``create_dirs`` missing directories are made on the way (``mkdirat``);
    with ``create_file`` a missing last component is made as an empty
    regular file (the mountpoint of a file bind mount). Returns a new fd the
    caller must close.
    """
    parts = split_inside(relpath)
    shown = "/" + "/".join(parts)
    cur = os.open(".", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            if last and create_file:
                try:
                    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cur)
                    os.close(fd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise SyscallError("creating", e.errno, shown) from None
            elif create_dirs:
                try:
                    os.mkdir(name, mode, dir_fd=cur)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise SyscallError("creating directory", e.errno, shown) from None
            # Open without following, then look at what we got: O_PATH|O_NOFOLLOW
            # hands back the symlink itself rather than failing, so check the type.
            want = (flags & ~os.O_DIRECTORY) if last else O_PATH
            try:
                nxt = os.open(name, want | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except OSError as e:
                raise _explain(e, parts[: i + 1], shown) from None
            st_mode = os.fstat(nxt).st_mode
            if stat.S_ISLNK(st_mode):
                os.close(nxt)
                raise _symlink_error(parts[: i + 1], shown)
            if (not last or flags & os.O_DIRECTORY) and not stat.S_ISDIR(st_mode):
                os.close(nxt)
                raise _explain(OSError(errno.ENOTDIR, "not a directory"), parts[: i + 1], shown)
            os.close(cur)
            cur = nxt
        return cur
    except BaseException:
        os.close(cur)
        raise


def open_dir_strict(dir_fd: int, name: str, *, mkdir_mode: int | None = None) -> tuple[int, bool]:
    """Open the directory ``name`` in ``dir_fd`` (one component) for reading,
    never through a symlink: returns ``(fd, made)``, a new fd the caller
    must close and whether we made the directory.

    With ``mkdir_mode`` a missing directory is made first (mkdirat(2); the
    umask applies, so callers that need exact bits fchmod the fd). Raises
    OSError otherwise: FileNotFoundError when it is missing, ELOOP when it is
    a symlink (whatever it points to), ENOTDIR when it is something else.
    """
    try:
        return os.open(name, DIR_NOFOLLOW, dir_fd=dir_fd), False
    except FileNotFoundError:
        if mkdir_mode is None:
            raise
    made = True
    try:
        os.mkdir(name, mkdir_mode, dir_fd=dir_fd)
    except FileExistsError:
        made = False  # someone made it since our open: open what is there now
    return os.open(name, DIR_NOFOLLOW, dir_fd=dir_fd), made


def open_dir_nofollow(dir_fd: int, name: str) -> int | None:
    """The real directory ``name`` in ``dir_fd``, opened for reading, or None
    if it is missing, a symlink (even to a directory) or not a directory.
    Other errors (EACCES, EMFILE ...) raise OSError."""
    try:
        return os.open(name, DIR_NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in NOT_A_REAL_DIR:
            return None
        raise


def walk_dirs_nofollow(dir_fd: int, parts: tuple[str, ...] | list[str]) -> int | None:
    """Open the directory ``parts`` (components, no '..') below ``dir_fd``
    one component at a time, like :func:`open_dir_nofollow`: None as soon as
    one is not a real directory. No parts: a new fd for ``dir_fd`` itself."""
    cur = os.open(".", DIR_NOFOLLOW, dir_fd=dir_fd)
    for name in parts:
        try:
            nxt = open_dir_nofollow(cur, name)
        finally:
            os.close(cur)
        if nxt is None:
            return None
        cur = nxt
    return cur


def _symlink_error(parts: list[str], shown: str) -> SyscallError:
    where = "/" + "/".join(parts)
    return SyscallError(
        "refusing to follow a symlink at",
        errno.ELOOP,
        where,
        f"the image has a symlink at {where}; {shown} must be reached through real directories",
    )


def _explain(e: OSError, parts: list[str], shown: str) -> SyscallError:
    if e.errno == errno.ELOOP:
        return _symlink_error(parts, shown)
    if e.errno == errno.ENOTDIR:
        where = "/" + "/".join(parts)
        return SyscallError("resolving", e.errno, where, f"{where} is not a directory; cannot reach {shown}")
    return SyscallError("opening", e.errno, shown)


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) and friends reach ``fd``'s inode."""
    return f"/proc/self/fd/{fd}"


def read_file_beneath(root_fd: int, relpath: str, limit: int = 1 << 20) -> bytes | None:
    """Read a small regular file inside the root without following symlinks.

    Returns None if it is missing. Refuses FIFOs, devices and anything over
    ``limit`` bytes, so an image cannot make the runtime hang or read a host
    file (reliability case B16).
    """
    try:
        fd = open_beneath(root_fd, relpath, os.O_RDONLY | os.O_NONBLOCK)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SyscallError("reading", errno.EINVAL, relpath, "expected a regular file")
        if st.st_size > limit:
            raise SyscallError("reading", errno.EFBIG, relpath, f"larger than {limit} bytes")
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def resolve_in_root(root: str, path: str, max_links: int = 40) -> str | None:
    """Where ``path`` leads inside ``root``, following symlinks as the
    container would see them (absolute links and ``..`` stay clamped at the
    root, like openat2's RESOLVE_IN_ROOT). Returns the host path, or None if
    it does not exist. Read-only: used for checks before a run (is there a
    /bin/sh?), never to decide where to mount or write.
    """
    todo = split_inside_allowing_dotdot(path)
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, name)
        try:
            st = os.lstat(candidate)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = split_inside_allowing_dotdot(target) + todo
            continue
        done.append(name)
    return os.path.join(root, *done)


def split_inside_allowing_dotdot(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]
