"""``-u/--user`` and ``--group-add``: names and numbers from the *container's* /etc.

``--user postgres`` must mean the postgres of the image, not of the host, so
the name is looked up in the image's /etc/passwd and /etc/group. We parse
them ourselves, on the host side before pivot_root, because:

- the host's ``pwd``/``grp`` modules go through NSS, which would read the
  host's files, or load ``libnss_*.so`` libraries chosen by an
  nsswitch.conf: running that inside the container root would execute the
  image's code in the runtime (docker cp CVE-2019-14271);
- the image controls these files. /etc/passwd may be a symlink to a host
  secret, a FIFO that blocks forever, or /dev/zero (CVE-2024-9676). We open
  each path component with O_NOFOLLOW relative to the root fd, accept only a
  regular file, and read at most 1 MiB. The file is opened as O_PATH first
  and re-opened through /proc/self/fd only once we know it is a regular
  file, so no device or FIFO is ever opened for reading.

Rules (runc's, which Docker uses):

- ``UID`` or ``name``; ``:GID`` or ``:group`` optionally. Numbers need no
  entry in /etc/passwd; names do.
- The primary group is the one given, else the passwd entry's, else 0.
- Supplementary groups: the groups in /etc/group that list the user, only
  when no group was given explicitly; then every --group-add.
- HOME is the passwd entry's home, else ``/``.

A hostile file is an error when we need a name from it; for a numeric
user (or the default root) it is simply not used.
"""

from __future__ import annotations

import os
import stat
from minicontainer.records import dataclass, replace  # dataclasses without exec (records.py, issue 15)

# At the top, not in a function: `exec` resolves the user after it joined the
# container's mount namespace, where an import would read the image's files.
from minicontainer.container import userns
from minicontainer.errors import SecurityError, UsageError

MAX_FILE_BYTES = 1024 * 1024
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to setresuid(2)


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, for setgroups(2)
    home: str
    name: str | None = None
    notes: tuple[str, ...] = ()  # why a file was not used, for --explain


# -- pure parsing ---------------------------------------------------------------


def _id(text: str) -> int | None:
    # isascii: str.isdigit() also accepts "²" or "٣", which int() rejects or misreads
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """passwd(5) lines ``name:x:uid:gid:gecos:home:shell``; bad lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split(":")
        if len(f) < 4:
            continue
        uid, gid = _id(f[2]), _id(f[3])
        if uid is None or gid is None or not f[0]:
            continue
        out.append(PasswdEntry(f[0], uid, gid, f[5] if len(f) > 5 and f[5] else "/"))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    """group(5) lines ``name:x:gid:member,member``; bad lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split(":")
        if len(f) < 3:
            continue
        gid = _id(f[2])
        if gid is None or not f[0]:
            continue
        members = tuple(m for m in (f[3].split(",") if len(f) > 3 else []) if m)
        out.append(GroupEntry(f[0], gid, members))
    return out


def split_user(spec: str) -> tuple[str, str | None]:
    """``name[:group]`` -> (user, group|None), validated for shape only. Pure."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group) or ":" in group:
        raise UsageError(f"invalid --user {spec!r}", "use UID[:GID] or NAME[:GROUP], e.g. --user 1000:1000")
    for part in (user, group):
        if part and (not part.isprintable() or any(c in part for c in "/ \t\n")):
            raise UsageError(f"invalid --user {spec!r}", "user and group names cannot contain '/', spaces or control characters")
    return user, group or None


def resolve(
    user: str | None,
    group_add: tuple[str, ...],
    passwd: list[PasswdEntry] | None,
    groups: list[GroupEntry] | None,
    notes: tuple[str, ...] = (),
) -> ExecUser:
    """The pure half: apply runc's rules to already-parsed files (None = unusable)."""
    spec_user, spec_group = split_user(user) if user else ("0", None)
    pw = passwd or []
    gr = groups or []

    uid = _id(spec_user)
    entry = None
    if uid is None:
        entry = next((e for e in pw if e.name == spec_user), None)
        if entry is None:
            why = "" if passwd is not None else " (the container's /etc/passwd could not be used)"
            raise SecurityError(
                f"unable to find user {spec_user}: no matching entries in the container's /etc/passwd{why}",
                "use a numeric --user UID[:GID], or add the user to the image",
            )
        uid = entry.uid
    else:
        entry = next((e for e in pw if e.uid == uid), None)

    if spec_group is None:
        gid = entry.gid if entry else 0
    else:
        gid = _id(spec_group)
        if gid is None:
            g = next((g for g in gr if g.name == spec_group), None)
            if g is None:
                raise SecurityError(
                    f"unable to find group {spec_group}: no matching entries in the container's /etc/group",
                    "use a numeric GID, or add the group to the image",
                )
            gid = g.gid

    supplementary: list[int] = []
    if spec_group is None and entry is not None:
        supplementary = [g.gid for g in gr if entry.name in g.members]
    for extra in group_add:
        g_id = _id(extra)
        if g_id is None:
            g = next((g for g in gr if g.name == extra), None)
            if g is None:
                raise SecurityError(
                    f"unable to find group {extra} (--group-add) in the container's /etc/group",
                    "use a numeric GID, or add the group to the image",
                )
            g_id = g.gid
        supplementary.append(g_id)
    # setgroups wants a set; keep the order people read in `id`.
    uniq = tuple(dict.fromkeys(supplementary))
    return ExecUser(uid, gid, uniq, entry.home if entry else "/", entry.name if entry else None, notes)


# -- reading the container's files (syscalls) --------------------------------------


class HostileFile(Exception):
    """The file exists but is not something we will read; ``str()`` says why."""


def read_container_file(root_fd: int, relpath: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """Read ``relpath`` (e.g. ``etc/passwd``) under ``root_fd`` safely.

    None if it does not exist; HostileFile if a component is a symlink, the
    file is not regular, or it is larger than ``limit``.
    """
    parts = [p for p in relpath.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad relative path {relpath!r}")
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    try:
        for i, comp in enumerate(parts):
            try:
                nfd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                return None
            os.close(fd)
            fd = nfd
            mode = os.fstat(fd).st_mode
            shown = "/" + "/".join(parts[: i + 1])
            if stat.S_ISLNK(mode):
                raise HostileFile(f"{shown} is a symlink")
            if i < len(parts) - 1 and not stat.S_ISDIR(mode):
                return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HostileFile(f"/{relpath} is not a regular file")
        if st.st_size > limit:
            raise HostileFile(f"/{relpath} is larger than {limit} bytes")
        # Re-open the very inode we checked, for reading (O_PATH fds cannot
        # read). O_NONBLOCK: even if it were a FIFO, open would not wait.
        # (/proc is the host's here: we run before pivot_root.)
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            rst = os.fstat(rfd)
            if (rst.st_dev, rst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(rst.st_mode):
                raise HostileFile(f"/{relpath} changed while it was being opened")
            chunks, total = [], 0
            while total <= limit:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                raise HostileFile(f"/{relpath} is larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            os.close(rfd)
    finally:
        os.close(fd)


def _load(root_fd: int, relpath: str, needed: bool, parse):
    """Parsed entries, or None plus a note when the file is absent or refused."""
    try:
        data = read_container_file(root_fd, relpath)
    except HostileFile as e:
        if needed:
            raise SecurityError(
                f"refusing to read the container's /{relpath}: {e}",
                "the image's user database must be a plain file inside the image; use a numeric --user",
            ) from None
        return None, f"/{relpath} not used: {e}"
    if data is None:
        return None, f"/{relpath} not found"
    return parse(data.decode("utf-8", "replace")), None


def resolve_user(root_fd: int, user: str | None, group_add: tuple[str, ...] = ()) -> ExecUser:
    """Resolve ``--user`` and ``--group-add`` against the rootfs at ``root_fd``."""
    spec_user, spec_group = split_user(user) if user else ("0", None)
    need_passwd = _id(spec_user) is None
    need_group = (spec_group is not None and _id(spec_group) is None) or any(_id(g) is None for g in group_add)
    passwd, n1 = _load(root_fd, "etc/passwd", need_passwd, parse_passwd)
    groups, n2 = _load(root_fd, "etc/group", need_group, parse_group)
    notes = tuple(n for n in (n1, n2) if n)
    return resolve(user, group_add, passwd, groups, notes)


# -- in the child, before pivot_root: the user the command will run as ----------


def setgroups_allowed(proc: str = "/proc") -> bool:
    """False in a user namespace whose gid map was written without privilege:
    the kernel writes "deny" to /proc/self/setgroups and setgroups(2) fails
    (user_namespaces(7))."""
    try:
        with open(f"{proc}/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def user_for_exec(root_fd: int, user: str | None, group_add: tuple[str, ...] = ()) -> tuple[ExecUser, bool]:
    """The ExecUser for the container and whether setgroups(2) may be called.

    In rootless mode with a single-id map, setgroups is denied: the image's
    supplementary groups are left out (with a note), ``--group-add`` is an
    error, and every id must be mapped in the namespace (setresuid(2) to an
    unmapped id is EINVAL).
    """
    resolved = resolve_user(root_fd, user, group_add)
    allowed = setgroups_allowed()
    if not allowed and resolved.groups:
        if group_add:
            raise SecurityError(
                "supplementary groups cannot be set in this user namespace (/proc/self/setgroups is 'deny')",
                "drop --group-add, or map groups with newgidmap (rootless mode with /etc/subgid)",
            )
        resolved = replace(resolved, groups=(), notes=resolved.notes + (
            "supplementary groups from /etc/group left out: setgroups is denied in this user namespace",))
    check_mapped(resolved)
    return resolved, allowed


def check_mapped(user: ExecUser) -> None:
    """In a user namespace only mapped ids exist: setresuid(2) to another is EINVAL."""
    for kind, ids in (("uid", (user.uid,)), ("gid", (user.gid,) + tuple(user.groups))):
        for id_ in ids:
            if not userns.is_mapped(id_, kind):
                extents = userns.read_map(f"/proc/self/{kind}_map")
                mapped = ", ".join(str(i) if n == 1 else f"{i}-{i + n - 1}" for i, _, n in extents) or "nothing"
                raise SecurityError(
                    f"{kind} {id_} does not exist in this user namespace (rootless mode maps only {mapped})",
                    "give the caller a range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 "
                    "--add-subgids 100000-165535 USER; needs newuidmap, package uidmap), or run with --user 0",
                )
