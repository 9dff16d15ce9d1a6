"""Rootless mode: a user namespace in which the caller is root (and, at the
end, the subordinate range root's ``--userns`` containers get: remap_mapping).

user_namespaces(7): any user may create a user namespace and is then root
inside it, with every capability, but capabilities that count only for what
that namespace owns: the mount, PID, network... namespaces created inside
it, and files whose owner is mapped. So an ordinary user can unshare, mount
proc and an overlay, pivot_root, set a hostname: everything a container
needs except what touches the real machine (device nodes, cgroups, host
mounts).

Who is who inside is decided by two maps, ``/proc/PID/uid_map`` and
``gid_map``, lines of ``INSIDE OUTSIDE COUNT``:

- single id: ``0 1000 1``. The caller (uid 1000) is root inside, and no
  other id exists there. The kernel lets a process write this for itself,
  once ``/proc/PID/setgroups`` says ``deny`` (a process that could drop
  groups could escape a negative group permission, CVE-2014-8989).
- a full range: ``0 1000 1`` plus ``1 100000 65536`` from /etc/subuid and
  /etc/subgid, the ids the administrator gave this user. Only a privileged
  process in the *parent* namespace may write that: the setuid helpers
  ``newuidmap``/``newgidmap`` (package uidmap) check the files and do it.

The design, and why:

    runtime (uid 1000) ──fork──▶ map helper (stays in the host's user namespace)
       │ unshare(CLONE_NEWUSER)        │ waits on a pipe
       │ ────────── "go" ────────────▶ │ writes /proc/<runtime>/uid_map and gid_map
       │ ◀───────── exits ──────────── ┘   (itself, or through newuidmap/newgidmap)
       │ now uid 0 here, with every capability *in this namespace*
       ▼ unshare(CLONE_NEWPID), fork, ... the same path as a root run (process.py)

The runtime moves *itself* into the user namespace, before it creates the
PID namespace, so the PID namespace (and every namespace the child makes)
belongs to the user namespace, and from there on a rootless run is the root
path, step for step. rootlesskit and podman do the same (the whole engine
lives in the namespace). The two other ways were:

- clone(CLONE_NEWUSER|CLONE_NEWPID) from Python through ctypes: a raw clone
  goes around glibc's fork(), which leaves glibc's cached thread id of the
  child wrong (raise(3), abort(3) and pthread_kill(3) would aim at the
  parent's thread id);
- the child unshares the user namespace, then forks PID 1 and exits while
  the runtime, a child subreaper, adopts it (runc's C nsexec): one more
  process hop, and the parent-death signal must be re-armed after the
  reparenting, with a race of its own.

What moving the runtime costs: it cannot come back (setns into the host's
namespaces needs privilege there), fine for one run per process; and from
then on getuid() says 0, so who we are on the host is read from
/proc/self/uid_map (:func:`host_uid`).

The helper is forked *before* the unshare so that it is still in the host's
user namespace, where newuidmap's setuid bit works (a setuid binary owned by
an unmapped root is run without it) and where a root caller still has the
privilege to write any map. It exits as soon as the maps are written: no
extra process stays running.
"""

from __future__ import annotations

import errno
import os
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer.errors import MiniError, SecurityError, SyscallError
from minicontainer.syscalls.flags import CLONE_NEWNS, CLONE_NEWUSER

# The identity map of the initial user namespace, as /proc/self/uid_map shows it.
_IDENTITY = ["0", "0", "4294967295"]
# A map holds at most 5 lines before Linux 4.15 (340 after): we use at most 5.
MAX_EXTENTS = 5


# --- who are we? ---------------------------------------------------------------


def read_map(path: str) -> list[tuple[int, int, int]]:
    """[(inside, outside, count)] from a uid_map/gid_map file; [] if unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def in_initial_userns(proc: str = "/proc") -> bool:
    """True unless this process lives in a user namespace below the host's."""
    try:
        with open(f"{proc}/self/uid_map") as f:
            return f.read().split() == _IDENTITY
    except OSError:
        return True  # a kernel without user namespaces


def map_id(id_: int, extents: list[tuple[int, int, int]]) -> int | None:
    """The outside id of ``id_`` under a map, None if unmapped. Pure."""
    for inside, outside, count in extents:
        if inside <= id_ < inside + count:
            return outside + (id_ - inside)
    return None


def host_uid(proc: str = "/proc") -> int:
    """Our uid as the host sees it, even from inside a user namespace."""
    uid = os.getuid()
    if in_initial_userns(proc):
        return uid
    outside = map_id(uid, read_map(f"{proc}/self/uid_map"))
    return 65534 if outside is None else outside


def is_mapped(id_: int, kind: str = "uid", proc: str = "/proc") -> bool:
    """Does ``id_`` exist in this process's user namespace (kind uid|gid)?"""
    extents = read_map(f"{proc}/self/{kind}_map")
    return not extents or map_id(id_, extents) is not None


# --- the maps --------------------------------------------------------------------


@dataclass(frozen=True)
class IdRange:
    """One line of a uid_map/gid_map: ids ``inside``.. are ``outside``.. on the host, ``count`` of them."""

    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"

    def shown(self) -> str:
        if self.count == 1:
            return f"{self.inside} -> {self.outside}"
        return f"{self.inside}-{self.inside + self.count - 1} -> {self.outside}-{self.outside + self.count - 1}"


@dataclass(frozen=True)
class IdMapping:
    """The maps of a rootless run, and who writes them.

    ``writer``: ``self`` (single id, written by the helper with the caller's
    own rights after setgroups "deny"), ``newidmap`` (ranges from
    /etc/subuid and /etc/subgid, through the setuid helpers), ``root``
    (the caller is root: the helper writes any map directly) or ``remap``
    (a container of root's in a subordinate range, :func:`remap_mapping`:
    the runtime writes its child's maps, steps.WriteIdMaps).
    """

    uid: int  # the caller, outside
    gid: int
    user: str  # the caller's name (or uid) for messages
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    writer: str = "self"
    note: str = ""  # why there is no full range, for --explain
    # "config.json": an OCI bundle's linux.uidMappings/gidMappings (oci/config.py), not a subordinate range
    source: str = ""

    @property
    def single(self) -> bool:
        return len(self.uids) == 1 and self.uids[0].count == 1

    def describe(self) -> str:
        uids = ", ".join(r.shown() for r in self.uids)
        gids = ", ".join(r.shown() for r in self.gids)
        return f"uids {uids}; gids {gids}"

    def shell(self) -> str:
        if self.writer == "newidmap":
            u = " ".join(r.line() for r in self.uids)
            g = " ".join(r.line() for r in self.gids)
            return f"unshare --user ... & newuidmap $PID {u}; newgidmap $PID {g}"
        if self.writer == "self":
            return "unshare --user --map-root-user ...   # echo deny > setgroups; echo '0 UID 1' > uid_map"
        u = "\\n".join(r.line() for r in self.uids)
        return f"unshare --user ... & printf '{u}\\n' > /proc/$PID/uid_map   # and gid_map"


def parse_subids(text: str, name: str | None, uid: int) -> list[tuple[int, int]]:
    """(start, count) ranges of ``name`` (or numeric ``uid``) in subuid(5)/subgid(5) text. Pure.

    Lines are ``owner:start:count``; the owner is a user name or a uid, as
    newuidmap itself accepts.
    """
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        owner, start, count = parts[0], int(parts[1]), int(parts[2])
        if count and (owner == name or owner == str(uid)):
            out.append((start, count))
    return out


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def caller_name(uid: int) -> str:
    """The host's name for the caller (newuidmap looks it up the same way)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def plan_mapping(
    uid: int | None = None,
    gid: int | None = None,
    *,
    name: str | None = None,
    subuid: str = "/etc/subuid",
    subgid: str = "/etc/subgid",
    which=None,
) -> IdMapping:
    """Decide the maps for the caller: a full range when configured, else one id. Pure
    apart from reading the two files and looking for the helpers (both injectable)."""
    if which is None:
        import shutil  # ~3.5 ms (with the bz2/lzma it loads) that a run without --userns does not pay

        which = shutil.which
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    name = caller_name(uid) if name is None else name
    own_u, own_g = IdRange(0, uid, 1), IdRange(0, gid, 1)
    sub_u = parse_subids(_read_text(subuid), name, uid)[: MAX_EXTENTS - 1]
    sub_g = parse_subids(_read_text(subgid), name, uid)[: MAX_EXTENTS - 1]
    if not sub_u or not sub_g:
        return IdMapping(uid, gid, name, (own_u,), (own_g,), "root" if uid == 0 else "self",
                         note=f"no range for {name} in {subuid} and {subgid}: only uid {uid} -> 0 exists inside "
                              f"(add one with: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name})")
    if uid != 0 and not (which("newuidmap") and which("newgidmap")):
        return IdMapping(uid, gid, name, (own_u,), (own_g,), "self",
                         note=f"{subuid} has a range for {name}, but newuidmap/newgidmap are missing "
                              "(apt-get install uidmap): only one id is mapped")
    return IdMapping(uid, gid, name, _stack(own_u, sub_u), _stack(own_g, sub_g), "root" if uid == 0 else "newidmap")


def _stack(own: IdRange, ranges: list[tuple[int, int]]) -> tuple[IdRange, ...]:
    """The caller at 0, then each subordinate range right after the previous one."""
    out, nxt = [own], 1
    for start, count in ranges:
        out.append(IdRange(nxt, start, count))
        nxt += count
    return tuple(out)


# --- root's containers: a subordinate range of a dedicated user --------------------

# The user whose /etc/subuid and /etc/subgid ranges root's --userns containers
# get (Docker's "dockremap"); scripts/setup creates it with 65536 ids.
REMAP_USER = "minicontainer"
# MINICONTAINER_USERNS_REMAP=default|NAME: every container root runs is remapped
# (Docker's userns-remap daemon setting), to REMAP_USER's range or NAME's.
REMAP_ENV = "MINICONTAINER_USERNS_REMAP"


def remap_setting(environ=os.environ) -> str | None:
    """The user named by the userns-remap setting (None: the setting is off)."""
    value = environ.get(REMAP_ENV, "").strip()
    if not value:
        return None
    return REMAP_USER if value == "default" else value


def remap_mapping(name: str | None = None, *, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMapping:
    """The maps of a container root remaps: ids 0-(N-1) inside are the first
    subordinate range of ``name`` on the host (uid 0 inside is, say, 300000
    outside: an unprivileged uid that owns nothing of the host). Raises a
    SecurityError naming the fix when ``name`` has no range."""
    name = name or remap_setting() or REMAP_USER
    uids = parse_subids(_read_text(subuid), name, -1)
    gids = parse_subids(_read_text(subgid), name, -1)
    if not uids or not gids:
        raise SecurityError(
            f"--userns as root maps the container to a subordinate range of user {name}, and {subuid} and "
            f"{subgid} have none",
            f"run scripts/setup, or: usermod --add-subuids 300000-365535 --add-subgids 300000-365535 {name}",
        )
    (ustart, ucount), (gstart, gcount) = uids[0], gids[0]
    count = min(ucount, gcount)
    return IdMapping(0, 0, name, (IdRange(0, ustart, count),), (IdRange(0, gstart, count),), "remap")


# --- may we? --------------------------------------------------------------------


def _knob(proc: str, name: str) -> str | None:
    try:
        with open(f"{proc}/sys/{name}") as f:
            return f.read().strip()
    except OSError:
        return None


def _no_userns() -> MiniError:
    return SecurityError(
        "this kernel has no user namespaces (CONFIG_USER_NS is off)",
        "run minicontainer as root, or use a kernel built with user namespaces",
    )


def _why_not(proc: str, euid: int) -> MiniError | None:
    """The host switch that forbids user namespaces, as an error naming the fix."""
    if _knob(proc, "user/max_user_namespaces") == "0":
        return SecurityError(
            "user namespaces are switched off on this host: user.max_user_namespaces is 0",
            "as root: sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/), or run minicontainer as root",
        )
    if euid == 0:
        return None
    if _knob(proc, "kernel/unprivileged_userns_clone") == "0":
        return SecurityError(
            "this kernel forbids user namespaces to unprivileged users: kernel.unprivileged_userns_clone is 0 "
            "(Debian's switch)",
            "as root: sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/), or run minicontainer as root",
        )
    if _knob(proc, "kernel/apparmor_restrict_unprivileged_userns") == "1":
        return SecurityError(
            "AppArmor forbids unprivileged user namespaces here: kernel.apparmor_restrict_unprivileged_userns is 1 "
            "(Ubuntu 23.10 and later)",
            "as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give the python that runs "
            "minicontainer an AppArmor profile with the 'userns,' rule, or run minicontainer as root",
        )
    return None


def rootless_blocker(*, proc: str = "/proc", euid: int | None = None) -> MiniError | None:
    """The host switch that keeps ``euid`` from user namespaces (an error naming
    the fix), or None; from the switches alone, without trying (``doctor``)."""
    return _why_not(proc, os.geteuid() if euid is None else euid)


def probe(sc=None) -> bool:
    """Can a child of ours create a user namespace *and* use its capabilities there?

    The AppArmor switch lets unshare(CLONE_NEWUSER) succeed and then denies
    every capability inside, unless a profile allows the program: only trying
    tells the two apart. Costs one fork; used only when a switch says no.
    """
    # the CLONE_NEWNS needs CAP_SYS_ADMIN in the new user namespace
    return unshare_in_child(CLONE_NEWUSER, CLONE_NEWNS, sc=sc)


def unshare_in_child(*flags: int, sc=None) -> bool:
    """Fork a child that calls unshare(2) with each of ``flags`` in turn and
    exits: True if every call succeeded. Our own namespaces stay as they are."""
    if sc is None:
        from minicontainer.syscalls.linux import Linux

        sc = Linux()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for flag in flags:
                sc.unshare(flag)
            code = 0
        except BaseException:  # noqa: BLE001 - only the exit status matters
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def check_allowed(*, euid: int | None = None, proc: str = "/proc", try_it=probe) -> None:
    """Raise a SecurityError naming the host switch and its fix if we cannot go rootless.

    A switch that says no is confirmed by ``try_it()`` (a real attempt), so an
    AppArmor profile that does allow us is respected.
    """
    euid = os.geteuid() if euid is None else euid
    if not os.path.exists(f"{proc}/self/ns/user"):
        raise _no_userns()
    err = _why_not(proc, euid)
    if err is not None and not try_it():
        raise err


def diagnose(err: int, *, euid: int | None = None, proc: str = "/proc") -> MiniError:
    """The error for a failed unshare(CLONE_NEWUSER) (errno ``err``)."""
    euid = os.geteuid() if euid is None else euid
    if not os.path.exists(f"{proc}/self/ns/user"):
        return _no_userns()
    known = _why_not(proc, euid)
    if known is not None:
        return known
    if err == errno.ENOSPC:
        return SecurityError(
            "unshare(CLONE_NEWUSER): the limit of user namespaces is reached (user.max_user_namespaces)",
            "raise it (sysctl -w user.max_user_namespaces=...) or end other containers",
        )
    if err == errno.EINVAL:
        return SecurityError("unshare(CLONE_NEWUSER): the runtime has threads, or is chrooted (unshare(2))",
                             "run minicontainer directly, not from a chroot")
    return SyscallError("creating a user namespace (unshare CLONE_NEWUSER)", err, None,
                        "the host does not allow user namespaces here; run minicontainer as root")


def overlay_allowed(release: str | None = None) -> bool:
    """overlayfs may be mounted inside a user namespace from Linux 5.11."""
    return kernel_at_least((5, 11), release)


def kernel_at_least(version: tuple[int, int], release: str | None = None) -> bool:
    """Is the running kernel (or ``release``, as uname -r says it) ``version`` or later?"""
    release = os.uname().release if release is None else release
    nums = []
    for part in release.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) if part else ""
        nums.append(int(digits) if digits else 0)
    while len(nums) < 2:
        nums.append(0)
    return tuple(nums) >= version


# --- doing it ---------------------------------------------------------------------


def _write(path: str, data: str) -> None:
    """One write(2) per map file: the kernel takes the map from a single write."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def write_maps(pid: int, mapping: IdMapping, *, proc: str = "/proc", run=None) -> None:
    """Write ``pid``'s maps from outside its user namespace (the helper's job)."""
    if mapping.writer == "newidmap":
        import subprocess

        run = run or subprocess.run
        for tool, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [tool, str(pid)] + [str(v) for r in ranges for v in (r.inside, r.outside, r.count)]
            res = run(args, capture_output=True, text=True)
            if res.returncode != 0:
                raise SecurityError(
                    f"{' '.join(args)} failed: {(res.stderr or '').strip() or 'exit ' + str(res.returncode)}",
                    f"check the ranges of {mapping.user} in /etc/subuid and /etc/subgid",
                )
        return
    try:
        if mapping.writer == "self":
            # user_namespaces(7): an unprivileged gid_map needs setgroups off first.
            _write(f"{proc}/{pid}/setgroups", "deny")
        _write(f"{proc}/{pid}/uid_map", "".join(r.line() + "\n" for r in mapping.uids))
        _write(f"{proc}/{pid}/gid_map", "".join(r.line() + "\n" for r in mapping.gids))
    except OSError as e:
        raise SyscallError(f"writing the user namespace maps of process {pid}", e.errno or errno.EIO,
                           e.filename) from None


def _read_all(sc, fd: int) -> bytes:
    chunks = []
    while True:
        data = sc.read(fd, 4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def enter(mapping: IdMapping, sc=None) -> None:
    """Move this process into a new user namespace with ``mapping`` (see the module docstring)."""
    if sc is None:
        from minicontainer.syscalls.linux import Linux

        sc = Linux()
    runtime = os.getpid()
    go_r, go_w = sc.pipe()
    err_r, err_w = sc.pipe()
    helper = sc.fork()
    if helper == 0:  # the helper, still in the host's user namespace
        code = 1
        try:
            sc.close(go_w)
            sc.close(err_r)
            if sc.read(go_r, 1) == b"1":  # EOF: the runtime gave up
                write_maps(runtime, mapping)
                code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the runtime
            msg = e.message if isinstance(e, MiniError) else f"{type(e).__name__}: {e}"
            hint = getattr(e, "hint", None) or ""
            try:
                sc.write(err_w, f"{msg}\0{hint}".encode(errors="replace"))
            except OSError:
                pass
        os._exit(code)
    sc.close(go_r)
    sc.close(err_w)
    failure: MiniError | None = None
    try:
        try:
            sc.unshare(CLONE_NEWUSER)
        except SyscallError as e:
            failure = diagnose(e.errno)
        else:
            sc.write(go_w, b"1")
    finally:
        sc.close(go_w)
        report = _read_all(sc, err_r)
        sc.close(err_r)
        code = sc.waitpid(helper)
    if failure is not None:
        raise failure
    if code != 0:
        msg, _, hint = report.decode(errors="replace").partition("\0")
        raise SecurityError(msg or "the user namespace map helper failed", hint or None)


# --- cleaning up after a rootless container -------------------------------------


def remove_tree(path: str, mapping: IdMapping | None = None) -> bool:
    """Remove a rootless container's directory; True if it is gone.

    What the container wrote belongs to ids of its map (with a subordinate
    range, uid 1000 inside is 100999 on the host), which the caller cannot
    delete from outside. A forked child enters a user namespace with the same
    map, where it is root over exactly those files, and removes them there.
    Directories overlayfs leaves with mode 000 (work/work) are opened up first.
    """
    import shutil  # before the fork: the child imports nothing

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            enter(mapping or plan_mapping())
            shutil.rmtree(path, onerror=_open_up_and_retry)
            code = 0
        except BaseException:  # noqa: BLE001 - the exit status says it
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0 and not os.path.lexists(path)


def _open_up_and_retry(func, path, exc_info) -> None:
    """shutil.rmtree's onerror: make the parent (or the dir) writable and try again."""
    if func in (os.rmdir, os.unlink):
        os.chmod(os.path.dirname(path), 0o700)
        func(path)
    elif func in (os.scandir, os.listdir, os.open):
        import shutil  # already loaded: this runs inside shutil.rmtree

        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_open_up_and_retry)
    else:
        raise exc_info[1]
