"""``cp`` between a container and the host, never through a container's symlink.

A container's files are untrusted: a process inside can replace any
directory with a symlink to ``/`` at any moment (docker cp's CVE-2018-15664
and CVE-2019-14271 were exactly that). So on the container's side every
path is walked from a directory fd of the container's root, one component
at a time with ``O_NOFOLLOW`` (safepath.py), and:

- a symlink on the way (``/etc -> /host``) is refused, with the path named;
- a regular file is opened ``O_PATH`` first and read only once fstat says it
  is one (a FIFO would hang us, a device node could be the host's disk);
- a file written into the container is made under a temporary name with
  ``O_CREAT|O_EXCL`` in the already open directory and renamed over the
  target: an existing name is replaced, never opened, so a symlink planted
  there is replaced too, not followed;
- a symlink copied out is copied as a symlink (docker cp's default), and
  what it points to is not read.

On the host side the top path is the caller's own (followed, as cp(1)
does), but everything made below it is made relative to the directory fds
we created, without following: a container's symlink copied out first can
never redirect a file copied after it. setuid and setgid bits are dropped
on the host: a container must not be able to hand the host a setuid-root
program.

Which root: a running (or created) container's is ``/proc/PID/root`` of its
PID 1, its own view with its volumes and tmpfs mounts (proc(5)); the pid is
checked against the recorded start time after /proc/PID is open, so a
reused pid is never entered. An exited container's overlay is mounted in a
private mount namespace of a short-lived child (gone with it); a private
copy (no overlayfs) is used as it is.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass

from minicontainer import safepath
from minicontainer.errors import ContainerError, MiniError, SyscallError, UsageError, warn, wrap_oserror

MAX_DEPTH = 256  # deeper than any real tree; keeps the recursion far from Python's limit
CHUNK = 1 << 20
TMP_PREFIX = ".minicontainer-cp-"


@dataclass(frozen=True)
class Options:
    archive: bool = False  # -a: keep uid/gid (default: files are the caller's on the host, root's inside)
    follow_link: bool = False  # -L: follow a symlink given as the host source


# -- the container's root ----------------------------------------------------------


def with_root(st, op, *, writing: bool):
    """Call ``op(root_fd)`` with a directory fd of the container's root and
    return its result (the number of bytes copied)."""
    from minicontainer.container.state import pid_alive

    if writing and _remapped(st):
        raise ContainerError(f"cp into container {st.name} is not supported yet: it runs in a subordinate id range "
                             "(--userns as root), where a file made by the host's root would belong to nobody",
                             f"copy through a -v volume, or: minicontainer exec -i {st.name} sh -c 'cat > PATH' < FILE")
    if st.status in ("running", "created") and pid_alive(st.pid, st.pid_start):
        fd = _proc_root(st)
        try:
            return op(fd)
        finally:
            os.close(fd)
    from minicontainer.layers import container_layers

    layers = container_layers(st.layer_dir, None)
    if layers.kind == "overlay":
        return _in_private_mount(st.layer_dir, op, len(layers.below))
    if writing and layers.kind == "read-only":
        raise ContainerError(f"container {st.name} has a read-only root filesystem (--read-only)",
                             "copy into one of its volumes while it runs, or into another container")
    fd = _open_dir(layers.lower)
    try:
        return op(fd)
    finally:
        os.close(fd)


def _remapped(st) -> bool:
    """Was the container made with root's --userns (a subordinate range)?"""
    from minicontainer.container.config import load_spec
    from minicontainer.container.state import StateStore

    try:
        return bool(load_spec(StateStore().containers / st.id).userns_remap)
    except ContainerError:
        return False  # no spec (an older container): made without


def _proc_root(st) -> int:
    """/proc/PID/root of the container's PID 1, and no other process's."""
    from minicontainer.container.state import proc_start_time

    gone = ContainerError(f"container {st.name} stopped while cp started", "run cp again (it works on exited containers too)")
    try:
        proc = os.open(f"/proc/{st.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise gone from None
    try:
        # Checked once /proc/PID is open: that fd stays the process it was
        # opened for (a reused pid gets a new /proc entry), so if the start
        # time matches now, "root" below is the container's.
        if proc_start_time(st.pid) != st.pid_start:
            raise gone
        try:
            return os.open("root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
        except OSError as e:
            raise wrap_oserror("opening the container's root", e, f"/proc/{st.pid}/root") from None
    finally:
        os.close(proc)


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise wrap_oserror("opening", e, path) from None


def _in_private_mount(layer_dir: str, op, below: int = 0):
    """An exited container's overlay, mounted only in a child's own mount
    namespace (mount_namespaces(7)): nothing appears on the host, and the
    mount goes when the child exits, whatever happens to us."""
    from minicontainer.syscalls.flags import CLONE_NEWNS, MS_PRIVATE, MS_REC
    from minicontainer.syscalls.linux import Linux

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, always leave with _exit
        os.close(r)
        try:
            sc = Linux()
            sc.unshare(CLONE_NEWNS)
            sc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # so the overlay does not propagate to the host
            here = os.open(".", safepath.O_PATH | os.O_CLOEXEC)  # the caller's relative host paths
            sc.chdir(layer_dir)  # the options name lower/upper/work relative to it, as the run does
            # a layered image: lower-1, lower-2 ... under lower, as the run stacked them
            lowers = ":".join(["lower"] + [f"lower-{i}" for i in range(1, below + 1)])
            sc.mount("overlay", "merged", "overlay", 0, f"lowerdir={lowers},upperdir=upper,workdir=work")
            fd = _open_dir("merged")
            os.fchdir(here)
            answer = {"ok": op(fd)}
        except MiniError as e:
            answer = {"error": e.message, "hint": e.hint, "code": e.exit_code}
        except BaseException as e:  # noqa: BLE001 - must reach the parent, whatever it is
            answer = {"error": f"internal error: {type(e).__name__}: {e}", "hint": None, "code": 125}
        try:
            os.write(w, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    answer = json.loads(data or b'{"error": "the copying process died", "hint": null, "code": 125}')
    if "error" in answer:
        raise MiniError(answer["error"], answer["hint"], exit_code=answer["code"])
    return answer["ok"]


# -- paths inside the container -------------------------------------------------------


def container_parts(path: str) -> list[str]:
    """'/etc/./passwd' -> ['etc', 'passwd']; a '..' is refused: it could only climb."""
    parts = safepath.split_inside_allowing_dotdot(path)
    if ".." in parts:
        raise UsageError(f"the container path {path!r} contains '..'",
                         "give the path from the container's / without '..'")
    return parts


def _open_parent(root_fd: int, parts: list[str], shown: str) -> int:
    """The real directory holding ``parts[-1]`` (or the root), for reading and writing."""
    try:
        pfd = safepath.open_beneath(root_fd, "/".join(parts[:-1]), safepath.O_PATH | os.O_DIRECTORY)
    except SyscallError as e:
        raise _refusal(e, shown) from None
    try:
        return os.open(".", safepath.DIR_NOFOLLOW, dir_fd=pfd)
    finally:
        os.close(pfd)


def _refusal(e: SyscallError, shown: str) -> MiniError:
    if e.errno == errno.ELOOP:
        return ContainerError(
            f"refusing to copy through a symlink in the container: {e.path} (on the way to {shown})",
            "cp never follows a container's symlinks (one could lead to a host path); "
            "give the path the link points to instead")
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return ContainerError(f"no such directory in the container: {e.path}", "check the path with exec ... ls")
    return e


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


# -- the copying ----------------------------------------------------------------------


class _Copier:
    """Copies one tree, from a directory fd and name to a directory fd and
    name, without following any symlink on either side."""

    def __init__(self, opts: Options, into_container: bool, shown_src: str):
        self.opts = opts
        self.into_container = into_container
        self.shown_src = shown_src
        self.copied = 0  # bytes of file data

    def run(self, sdir: int, sname: str, st: os.stat_result, ddir: int, dname: str) -> int:
        """Copy the whole entry; returns the bytes of file data copied."""
        self.entry(sdir, sname, st, ddir, dname, self.shown_src, 0)
        return self.copied

    def entry(self, sdir: int, sname: str, st: os.stat_result, ddir: int, dname: str, shown: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ContainerError(f"{shown} is nested deeper than {MAX_DEPTH} directories", "refusing to go further")
        if stat.S_ISREG(st.st_mode):
            self.file(sdir, sname, st, ddir, dname, shown)
        elif stat.S_ISDIR(st.st_mode):
            self.directory(sdir, sname, st, ddir, dname, shown, depth)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(sname, dir_fd=sdir)
            self._replace(ddir, dname, shown, lambda tmp: os.symlink(target, tmp, dir_fd=ddir), st, link=True)
        else:
            warn(f"skipped {shown}: cp copies files, directories and symlinks, not "
                 f"{_kind(st.st_mode)}s")

    def file(self, sdir: int, sname: str, st: os.stat_result, ddir: int, dname: str, shown: str) -> None:
        src = _open_regular(sdir, sname, st, shown)
        if src is None:
            warn(f"skipped {shown}: it changed while it was copied")
            return
        try:
            def make(tmp: str) -> None:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                              dir_fd=ddir)
                try:
                    while chunk := os.read(src, CHUNK):
                        os.write(out, chunk)
                        self.copied += len(chunk)
                finally:
                    os.close(out)

            self._replace(ddir, dname, shown, make, st)
        finally:
            os.close(src)

    def directory(self, sdir: int, sname: str, st: os.stat_result, ddir: int, dname: str, shown: str, depth: int) -> None:
        src = safepath.open_dir_nofollow(sdir, sname)
        if src is None:
            warn(f"skipped {shown}: it changed while it was copied")
            return
        try:
            try:
                dst, made = safepath.open_dir_strict(ddir, dname, mkdir_mode=0o700)
            except OSError as e:
                raise self._dest_error(e, shown) from None
            try:
                for name in sorted(os.listdir(src)):
                    child = _lstat(src, name)
                    if child is not None:
                        self.entry(src, name, child, dst, name, f"{shown.rstrip('/')}/{name}", depth + 1)
                if made:  # an existing directory keeps its own mode and owner
                    self._meta(dst, st)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _replace(self, ddir: int, dname: str, shown: str, make, st: os.stat_result, link: bool = False) -> None:
        """Make the new entry under a temporary name, then rename it over
        ``dname``: whatever was there (a file, a symlink) is replaced, never opened."""
        tmp = TMP_PREFIX + os.urandom(6).hex()
        try:
            make(tmp)
            if link:
                self._link_meta(ddir, tmp, st)
            else:
                fd = os.open(tmp, safepath.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ddir)
                try:
                    self._meta(fd, st, path_fd=True)
                finally:
                    os.close(fd)
            os.rename(tmp, dname, src_dir_fd=ddir, dst_dir_fd=ddir)
        except BaseException as e:
            try:
                os.unlink(tmp, dir_fd=ddir)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise self._dest_error(e, shown) from None
            raise

    def _mode(self, st: os.stat_result) -> int:
        mode = stat.S_IMODE(st.st_mode)
        if not self.into_container and mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(st.st_mode):
            warn(f"dropped the setuid/setgid bit of {self.shown_src}: a container's program does not become "
                 "a setuid program of the host")
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def _meta(self, fd: int, st: os.stat_result, path_fd: bool = False) -> None:
        """Owner (-a, or root inside), mode and times, on the new entry."""
        target = f"/proc/self/fd/{fd}" if path_fd else fd  # an O_PATH fd takes no fchmod(2)
        if self.opts.archive or self.into_container:
            uid, gid = (st.st_uid, st.st_gid) if self.opts.archive else (0, 0)
            os.chown(target, uid, gid)
        os.chmod(target, self._mode(st))  # after chown, which clears setuid bits
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _link_meta(self, ddir: int, name: str, st: os.stat_result) -> None:
        if self.opts.archive or self.into_container:
            uid, gid = (st.st_uid, st.st_gid) if self.opts.archive else (0, 0)
            os.chown(name, uid, gid, dir_fd=ddir, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)

    def _dest_error(self, e: OSError, shown: str) -> MiniError:
        where = "in the container" if self.into_container else "on the host"
        if e.errno == errno.ELOOP:
            return ContainerError(f"refusing to copy {shown}: a symlink is in the way {where}",
                                  "cp never writes through a symlink; remove it or copy elsewhere")
        if e.errno == errno.EISDIR:
            return ContainerError(f"cannot copy {shown} over a directory {where}", "copy into it instead (a path ending in /)")
        if e.errno == errno.EROFS:
            return ContainerError(f"cannot copy {shown}: the destination {where} is read-only",
                                  "the container's root or that volume is mounted read-only")
        return wrap_oserror(f"copying {shown}", e)


def _open_regular(dir_fd: int, name: str, st: os.stat_result, shown: str) -> int | None:
    """An fd to read the regular file we listed, or None if it is another one now."""
    try:
        pfd = os.open(name, safepath.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        now = os.fstat(pfd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        try:
            return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)  # that inode, not a path
        except OSError as e:
            raise wrap_oserror("reading", e, shown) from None
    finally:
        os.close(pfd)


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


# -- where things go: docker cp's rules -----------------------------------------------------


def _destination(src_st: os.stat_result, src_name: str, contents_only: bool, dest_st: os.stat_result | None,
                 dest_name: str, dest_trailing_slash: bool, shown_dest: str) -> tuple[str | None, str]:
    """docker cp's rules for where SRC lands. Returns (None, the name to make
    in DEST's parent) or (DEST itself, to enter, and the name to make in it):

    - DEST is a directory: SRC goes inside it; a directory SRC ending in
      ``/.`` gives only its entries, merged into DEST;
    - DEST does not exist: SRC is made as DEST (its parent must exist; a
      file SRC cannot make a DEST ending in ``/``);
    - DEST is a file: a file SRC replaces it; a directory SRC is refused.
    """
    src_is_dir = stat.S_ISDIR(src_st.st_mode)
    if dest_st is not None and stat.S_ISLNK(dest_st.st_mode):
        raise ContainerError(f"refusing to copy onto {shown_dest}: it is a symlink in the container",
                             "cp never follows a container's symlink; give the path it points to")
    if dest_st is not None and stat.S_ISDIR(dest_st.st_mode):
        if contents_only and src_is_dir:
            return None, dest_name
        return dest_name, src_name
    if dest_st is None:
        if dest_trailing_slash and not src_is_dir:
            raise ContainerError(f"no such directory: {shown_dest}", "create it first, or drop the trailing /")
        return None, dest_name
    if src_is_dir:
        raise ContainerError(f"cannot copy a directory onto the file {shown_dest}", "give a directory as the destination")
    return None, dest_name


def copy_out(root_fd: int, cpath: str, host_dest: str, opts: Options, shown_src: str) -> int:
    """Copy ``cpath`` from the container whose root is ``root_fd`` to
    ``host_dest``; returns the bytes copied."""
    parts = container_parts(cpath)
    sdir = _open_parent(root_fd, parts, shown_src)
    try:
        sname = parts[-1] if parts else "."
        st = _lstat(sdir, sname)
        if st is None:
            raise ContainerError(f"no such file or directory in the container: {shown_src}", "check the path")
        if cpath.endswith("/") and not stat.S_ISDIR(st.st_mode):
            raise ContainerError(f"{shown_src} is not a directory", "drop the trailing /")
        if opts.follow_link and stat.S_ISLNK(st.st_mode):
            raise ContainerError(f"-L cannot follow {shown_src}: it is a symlink inside the container",
                                 "a container's symlink is never followed (it could lead to a host path); "
                                 "copy the path it points to")
        # The host path is the caller's own: followed, as cp(1) follows it.
        dest = os.path.abspath(host_dest)
        into, name = _destination(st, sname if parts else ".", _contents_only(cpath, parts), _host_stat(dest),
                                  os.path.basename(dest) or ".", host_dest.endswith("/"), host_dest)
        ddir = _open_dir(os.path.dirname(dest) if into is None else dest)
        try:
            return _Copier(opts, into_container=False, shown_src=shown_src).run(sdir, sname, st, ddir, name)
        finally:
            os.close(ddir)
    finally:
        os.close(sdir)


def copy_in(root_fd: int, host_src: str, cpath: str, opts: Options, shown_dest: str) -> int:
    """Copy ``host_src`` into the container whose root is ``root_fd``, to
    ``cpath``; returns the bytes copied."""
    parts = container_parts(cpath)
    src = os.path.realpath(host_src) if opts.follow_link else os.path.abspath(host_src)
    sdir = _open_dir(os.path.dirname(src))
    try:
        sname = os.path.basename(src) or "."
        st = _lstat(sdir, sname)
        if st is None:
            raise UsageError(f"no such file or directory: {host_src}", "check the path on the host")
        ddir = _open_parent(root_fd, parts, shown_dest)
        try:
            dname = parts[-1] if parts else "."
            into, name = _destination(st, sname, _contents_only(host_src, [sname]), _lstat(ddir, dname), dname,
                                      cpath.endswith("/"), shown_dest)
            if into is not None:
                inner = safepath.open_dir_nofollow(ddir, into)
                if inner is None:
                    raise ContainerError(f"refusing to copy into {shown_dest}: it is no longer a real directory",
                                         "it changed while cp ran; run cp again")
                os.close(ddir)
                ddir = inner
            return _Copier(opts, into_container=True, shown_src=host_src).run(sdir, sname, st, ddir, name)
        finally:
            os.close(ddir)
    finally:
        os.close(sdir)


def _contents_only(path: str, parts: list[str]) -> bool:
    """``SRC/.`` (and the container's ``/``): the directory's entries, not itself."""
    return not parts or path.rstrip("/").endswith("/.") or path.rstrip("/") == "."


def _host_stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise wrap_oserror("looking at", e, path) from None
