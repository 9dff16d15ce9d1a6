"""The image's files for a container of root's in a subordinate range (--userns as root).

In such a container uid 0 is, say, uid 300000 on the host (userns.remap_mapping).
The image's files belong to the host's uids 0-65535, which do not exist in
the container's user namespace: root inside would see them owned by nobody
(overflowuid, user_namespaces(7)) and could not even write its own /etc.
So the container must see every owner moved into its range: a file of uid 0
as 300000's, one of uid 1000 as 301000's. Two ways:

- idmapped mounts, where the kernel allows (:func:`idmap_works`): each
  layer is bind-mounted with MOUNT_ATTR_IDMAP (mount_setattr(2), Linux
  5.12; overlayfs takes such layers from 5.19, and the filesystem must allow
  them: ext4, xfs, btrfs, tmpfs from 6.3 ...), so the owners are mapped as
  the files are read, and nothing is copied (steps.SendIdmappedLayers);
- otherwise a copy with every owner moved, as Docker's userns-remap keeps
  one per range of each layer (/var/lib/docker/300000.300000/).
  ``MINICONTAINER_IDMAP=off`` takes this way even where the first works.

A store image's copy is made once per layer and range and cached under
``$MINICONTAINER_HOME/userns/<uid base>-<gid base>-<count>/``, where every
container of that range shares it as its read-only lower layer. A directory
given as the image may change between runs, so it is copied into the
container's own directory instead, and removed with it.

What chown(2) takes away is put back: the setuid and setgid bits (the
kernel clears them when a file's owner changes) and file capabilities
(the security.capability attribute, capabilities(7)). Hard links stay hard
links (each inode is moved once).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

from minicontainer import paths
from minicontainer.errors import ImageError

CAPS_XATTR = "security.capability"
IDMAP_ENV = "MINICONTAINER_IDMAP"


def idmap_works(path: str, mapping, sc=None) -> bool:
    """Can ``path`` be an idmapped lower layer of an overlay here? Linux 5.19,
    and a filesystem that allows idmapped mounts: found by making one, with
    a throwaway user namespace of ``mapping``'s range (one fork; nothing is
    attached anywhere, the detached mount goes with its fd)."""
    from minicontainer.container.userns import kernel_at_least
    from minicontainer.errors import MiniError
    from minicontainer.syscalls.flags import CLONE_NEWUSER, MOUNT_ATTR_IDMAP

    if os.environ.get(IDMAP_ENV, "auto") == "off" or not kernel_at_least((5, 19)):
        return False
    if sc is None:
        from minicontainer.syscalls.linux import Linux

        sc = Linux()
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # holds the user namespace until the parent closes hold_w
        try:
            os.close(ready_r)
            os.close(hold_w)
            sc.unshare(CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            return False
        sc.write_file(f"/proc/{pid}/uid_map", mapping.uids[0].line() + "\n")
        sc.write_file(f"/proc/{pid}/gid_map", mapping.gids[0].line() + "\n")
        userns_fd = sc.open_ns_path(f"/proc/{pid}/ns/user")
        try:
            fd = sc.open_tree(path)
            try:
                sc.mount_setattr(fd, MOUNT_ATTR_IDMAP, recursive=False, shown=path, userns_fd=userns_fd)
                return True
            finally:
                sc.close(fd)
        finally:
            sc.close(userns_fd)
    except (MiniError, OSError):
        return False
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def cache_dir(mapping) -> Path:
    """Where the copies for ``mapping``'s range live."""
    u, g = mapping.uids[0], mapping.gids[0]
    return paths.home() / "userns" / f"{u.outside}-{g.outside}-{u.count}"


def cached_copy(source: str, mapping) -> str:
    """The path of the shifted copy of a store image's layer ``source`` (made by :func:`ensure`)."""
    key = hashlib.sha256(os.path.realpath(source).encode()).hexdigest()[:32]
    return str(cache_dir(mapping) / key)


def ensure(source: str, dest: str, mapping) -> None:
    """Make ``dest`` a copy of ``source`` with every owner moved into
    ``mapping``'s range, unless it is there already. Made under a temporary
    name and renamed into place, so two runs building the same copy never see
    half of one."""
    if os.path.isdir(dest):
        return
    parent = Path(dest).parent
    paths.ensure_private_dir(parent)
    tmp = parent / f".tmp-{Path(dest).name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # cp -a keeps what an image layer holds and a copy of ours would drop:
        # overlayfs whiteouts (0:0 devices), its trusted.* attributes, hard links.
        proc = subprocess.run(["cp", "-a", "--one-file-system", "--", source, str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageError(f"copying the image {source} for the container's id range: "
                             f"{(proc.stderr.strip().splitlines() or ['cp failed'])[-1]}",
                             "check the free space under " + str(parent), exit_code=125)
        u, g = mapping.uids[0], mapping.gids[0]
        shift_tree(str(tmp), u.outside, g.outside, u.count)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another run made the same copy first: theirs is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shift_tree(top: str, uid_base: int, gid_base: int, count: int) -> None:
    """Move the owner of every entry below ``top`` (and of ``top``) by
    ``uid_base``/``gid_base``; an id outside 0..count-1 is refused (it has no
    place in the range)."""
    seen: set[tuple[int, int]] = set()

    def shift(path: str) -> None:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) in seen:
            return  # a hard link of an inode moved already
        seen.add((st.st_dev, st.st_ino))
        if st.st_uid >= count or st.st_gid >= count:
            raise ImageError(f"the image's {os.path.relpath(path, top)} belongs to uid {st.st_uid} gid {st.st_gid}, "
                             f"outside the {count} ids of the container's range",
                             "give the user a larger range in /etc/subuid and /etc/subgid", exit_code=125)
        link = stat.S_ISLNK(st.st_mode)
        caps = None
        if stat.S_ISREG(st.st_mode):
            try:
                caps = os.getxattr(path, CAPS_XATTR, follow_symlinks=False)
            except OSError:
                caps = None  # none, or a filesystem without xattrs
        os.lchown(path, uid_base + st.st_uid, gid_base + st.st_gid)
        if not link and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))  # chown(2) cleared them
        if caps is not None:
            os.setxattr(path, CAPS_XATTR, caps, follow_symlinks=False)

    shift(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            shift(os.path.join(dirpath, name))
