"""prepare() before pivot_root, enter() as the very last step before execve.

The split exists because of reliability lesson 3: once the container's root
is ``/``, any file Python opens (a lazily imported module, an encoding, an
NSS library) comes from the image and runs with the runtime's privileges.
So ``prepare`` does everything that needs imports, file reads or thinking:
it resolves the user from the image's /etc/passwd, computes the capability
masks, compiles the seccomp program into C structures. ``enter`` only makes
system calls on what was prepared. A test checks that it opens no file and
imports nothing (with an audit hook, PEP 578).

The order inside ``enter`` (each step needs what the next one removes):

1. reset signal dispositions and the signal mask (Python ignores SIGPIPE
   and SIGXFSZ, and execve keeps "ignored": reliability lesson 4);
2. resource limits, while we still have CAP_SYS_RESOURCE to raise them;
3. shrink the bounding set (needs CAP_SETPCAP) and clear the ambient set;
4. setgroups, setresgid, setresuid: supplementary groups first, uid last,
   because each needs privileges the next one drops (setgroups(2)). Going
   from uid 0 to another uid clears the permitted and effective sets
   (capabilities(7), "Effect of user ID changes on capabilities");
5. capset: effective = permitted = the container's set for root, empty for
   any other user; inheritable empty. A non-root user thus ends with
   nothing but the bounding set, exactly like Docker;
6. the uid change reset the "dumpable" flag and the parent-death signal
   (prctl(2)): set them again, then check the runtime is still alive, or
   the signal would never come;
7. no_new_privs: from here on execve can never grant privileges (setuid
   bits and file capabilities are ignored);
8. mark every fd above 2 close-on-exec, so nothing the runtime had open
   leaks into the container (CVE-2024-21626);
9. seccomp, last, so that the filter never blocks our own setup. Without
   no_new_privs, installing a filter needs CAP_SYS_ADMIN, so in that case
   it is installed first, before any privilege is dropped (runc does the
   same); the filters we generate never block steps 2-8.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import select
import signal
from dataclasses import dataclass

from minicontainer import userns
from minicontainer.apply import reset_signals
from minicontainer.errors import SecurityError, wrap_oserror
from minicontainer.security import _sys, caps, rlimits, seccomp
from minicontainer.security.config import SecurityConfig
from minicontainer.security.paths import masked_path_ops
from minicontainer.security.users import ExecUser, resolve_user


@dataclass(frozen=True, eq=False)
class Prepared:
    user: ExecUser
    last_cap: int
    bounding: int  # capabilities kept in the bounding set (mask)
    effective: int  # effective = permitted after the uid change (mask)
    rlimits: tuple[tuple[int, int, int], ...]
    filter: seccomp.LoadedFilter | None
    compiled: seccomp.CompiledFilter | None
    no_new_privs: bool
    setgroups_allowed: bool
    parent_pid: int  # getppid() seen by prepare (0 in a new PID namespace)
    parent_poll: select.poll | None  # HUP/ERR when the runtime's end of the parent_fd pipe is closed
    keep_fds: tuple[int, ...]
    max_fd: int


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: no core dumps, no ptrace, /proc/<pid>/* owned by root.

    While the runtime's own code runs in the container's namespaces, a root
    process inside must not be able to open /proc/<runtime pid>/exe and
    overwrite the host's Python (runc CVE-2019-5736). execve of the
    container's command makes it dumpable again (prctl(2)).
    """
    try:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
    except OSError as e:
        raise wrap_oserror("making the runtime non-dumpable (PR_SET_DUMPABLE)", e) from None


def _setgroups_allowed() -> bool:
    # In a user namespace whose gid map was written without privilege the
    # kernel writes "deny" here, and setgroups(2) fails (user_namespaces(7)).
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _check_mapped(user: ExecUser) -> None:
    """In a user namespace only mapped ids exist: setresuid(2) to another is EINVAL."""
    for kind, ids in (("uid", (user.uid,)), ("gid", (user.gid,) + tuple(user.groups))):
        for id_ in ids:
            if not userns.is_mapped(id_, kind):
                raise SecurityError(
                    f"{kind} {id_} does not exist in this user namespace (rootless mode maps only "
                    f"{_mapped_text(kind)})",
                    "give the caller a range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 "
                    "--add-subgids 100000-165535 USER; needs newuidmap, package uidmap), or run with --user 0",
                )


def _mapped_text(kind: str) -> str:
    extents = userns.read_map(f"/proc/self/{kind}_map")
    return ", ".join(str(i) if n == 1 else f"{i}-{i + n - 1}" for i, _, n in extents) or "nothing"


def _wanted_caps(config: SecurityConfig, last_cap: int, bounding_now: int) -> int:
    wanted = caps.caps_to_mask(caps.effective_caps(config, last_cap))
    explicit = caps.caps_to_mask(c for c in config.cap_add if c != "ALL")
    missing = explicit & ~bounding_now
    if missing:
        names = ", ".join(sorted(caps.mask_to_caps(missing)))
        raise SecurityError(
            f"--cap-add {names}: the runtime itself does not have it (host bounding set)",
            "the host (or the VM / container minicontainer runs in) has removed it; it cannot be granted",
        )
    return wanted & bounding_now


def filter_for(config: SecurityConfig, cap_names: frozenset[str], arch: str | None = None,
               kernel: tuple[int, int] | None = None) -> seccomp.CompiledFilter | None:
    """The compiled seccomp program for ``config``, or None when unconfined."""
    profile = seccomp.profile_for(config)
    return None if profile is None else seccomp.compile_filter(profile, cap_names, arch, kernel)


def prepare(
    config: SecurityConfig,
    rootfs_fd: int,
    *,
    parent_fd: int | None = None,
    keep_fds: tuple[int, ...] = (),
    arch: str | None = None,
) -> Prepared:
    """Everything that reads files or imports, done before pivot_root.

    Also makes this process non-dumpable right away (case C21). ``parent_fd``
    is one end of a pipe whose other end only the runtime holds: in a
    new PID namespace getppid() is 0, so a hang-up on it is the only way to
    notice that the runtime died before PR_SET_PDEATHSIG was re-armed. Either
    end works: a read end reports POLLHUP, a write end (like the runtime's
    error pipe) POLLERR, once the runtime's end is closed.
    """
    make_undumpable()
    user = resolve_user(rootfs_fd, config.user, config.group_add)
    last_cap = caps.cap_last_cap()
    try:
        bounding_now = caps.read_bounding(last_cap)
    except OSError as e:
        raise wrap_oserror("reading the capability bounding set", e) from None
    keep = _wanted_caps(config, last_cap, bounding_now)
    compiled = filter_for(config, caps.mask_to_caps(keep), arch)
    setgroups_allowed = _setgroups_allowed()
    if not setgroups_allowed and user.groups:
        if config.group_add:
            raise SecurityError(
                "supplementary groups cannot be set in this user namespace (/proc/self/setgroups is 'deny')",
                "drop --group-add, or map groups with newgidmap (rootless mode with /etc/subgid)",
            )
        # Groups the image's /etc/group gives the user: rootless mode with a
        # single-id map cannot set them (nor any other), so they are left out.
        user = dataclasses.replace(user, groups=(), notes=user.notes + (
            "supplementary groups from /etc/group left out: setgroups is denied in this user namespace",))
    _check_mapped(user)
    poll = None
    if parent_fd is not None:
        poll = select.poll()
        poll.register(parent_fd, select.POLLHUP | select.POLLERR)
    return Prepared(
        user=user,
        last_cap=last_cap,
        bounding=keep,
        effective=keep if user.uid == 0 else 0,
        rlimits=rlimits.to_resources(config.ulimits),
        filter=seccomp.LoadedFilter(compiled.program) if compiled else None,
        compiled=compiled,
        no_new_privs=config.no_new_privs,
        setgroups_allowed=setgroups_allowed,
        parent_pid=os.getppid(),
        parent_poll=poll,
        keep_fds=tuple(keep_fds),
        max_fd=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    )


# -- enter: syscalls only, no imports, no file access ---------------------------


def _set_ids(p: Prepared) -> None:
    u = p.user
    try:
        if p.setgroups_allowed:
            os.setgroups(list(u.groups))
        os.setresgid(u.gid, u.gid, u.gid)
        os.setresuid(u.uid, u.uid, u.uid)
    except OSError as e:
        raise wrap_oserror(f"switching to uid {u.uid} gid {u.gid}", e) from None


def _rearm_parent_death(p: Prepared) -> None:
    try:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as e:
        raise wrap_oserror("setting the parent-death signal", e) from None
    # If the runtime died before the line above, the signal will never come.
    if p.parent_pid and os.getppid() != p.parent_pid:
        raise SecurityError("the runtime exited while the container was being set up")
    if p.parent_poll is not None and any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.parent_poll.poll(0)):
        raise SecurityError("the runtime exited while the container was being set up")


def _cloexec_fds(p: Prepared) -> None:
    try:
        _sys.close_range_cloexec(3)
    except OSError:
        # Kernels before 5.11: one fcntl per possible fd.
        for fd in range(3, p.max_fd):
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    for fd in p.keep_fds:
        os.set_inheritable(fd, True)


def enter(p: Prepared) -> None:
    """Drop privileges for good; the next call must be execve. See the module docstring."""
    reset_signals()
    if p.filter is not None and not p.no_new_privs:
        p.filter.install()
    rlimits.apply_rlimits(p.rlimits)
    caps.drop_bounding(p.bounding, p.last_cap)
    caps.clear_ambient()
    _set_ids(p)
    caps.set_caps(p.effective, p.effective, 0)
    try:
        got = _sys.capget()
    except OSError as e:
        raise wrap_oserror("reading back capabilities (capget)", e) from None
    if got != (p.effective, p.effective, 0):
        raise SecurityError(
            f"capabilities are not what was asked: effective {got[0]:#x}, permitted {got[1]:#x}, "
            f"inheritable {got[2]:#x}; wanted {p.effective:#x}"
        )
    _rearm_parent_death(p)
    if p.no_new_privs:
        try:
            _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
        except OSError as e:
            raise wrap_oserror("setting no_new_privs", e) from None
    _cloexec_fds(p)
    if p.filter is not None and p.no_new_privs:
        p.filter.install()


# -- explaining -----------------------------------------------------------------


def describe(config: SecurityConfig) -> list[str]:
    """--explain lines for the security steps (no rootfs needed)."""
    last = caps.cap_last_cap()
    kept = caps.effective_caps(config, last)
    dropped = sorted(caps.all_caps(last) - kept, key=caps.cap_number)
    lines = [
        "capabilities: keep " + (", ".join(sorted(c[4:] for c in kept)) or "none")
        + "; ambient and inheritable sets emptied",
        "  dropped from the bounding set: " + (", ".join(c[4:] for c in dropped) or "none")
        + "  (capsh --drop=...; capabilities(7))",
        "no_new_privs: " + ("on: setuid binaries and file capabilities grant nothing (prctl PR_SET_NO_NEW_PRIVS)"
                             if config.no_new_privs else "off (--security-opt no-new-privileges=false)"),
    ]
    user = config.user or "root (0:0)"
    lines.append(f"user: {user}, looked up in the image's /etc/passwd and /etc/group (never the host's)"
                 + (f"; extra groups {', '.join(config.group_add)}" if config.group_add else ""))
    for u in config.ulimits:
        fmt = lambda v: "unlimited" if v == rlimits.INFINITY else str(v)  # noqa: E731
        lines.append(f"ulimit {u.name}: soft {fmt(u.soft)}, hard {fmt(u.hard)}  (prlimit --{u.name}=...)")
    lines.extend(seccomp.describe(config))
    ops = masked_path_ops(config)
    if not ops:
        lines.append("masked and read-only paths: none (--privileged or systempaths=unconfined)")
    for op in ops:
        lines.append(f"{op.kind} {op.path}: {op.why}  ({op.shell()})")
    lines.append("runtime process non-dumpable until exec (prctl PR_SET_DUMPABLE 0)")
    return lines
