"""The security layer as the runtime's plan steps (the runtime's side of the contract).

The runtime (runtime.py, process.py) calls:

- ``mask_steps(config)``: ``plan.MaskPath`` steps, applied right after /proc
  and /sys are mounted in the new root;
- ``plan_steps(config)``: ``plan.Note`` lines shown by --explain and
  --dry-run where ``enter()`` will run (after pivot_root, before exec). They
  describe; ``prepare_enter`` does;
- ``prepare_enter(config, root_fd)``: in the child, before pivot_root; runs
  ``prepare`` and returns the function the Exec step calls last.

``config`` None means the defaults (no security flag given).
"""

from __future__ import annotations

from typing import Callable

from minicontainer.security import caps, rlimits, seccomp
from minicontainer.security.apply import enter, filter_for, prepare
from minicontainer.security.config import SecurityConfig
from minicontainer.security.paths import masked_path_ops


def _cfg(config: SecurityConfig | None) -> SecurityConfig:
    return config if config is not None else SecurityConfig()


def mask_steps(config: SecurityConfig | None) -> list:
    from minicontainer import plan as P

    return [P.MaskPath(path=op.path, kind=op.kind, reason=op.why) for op in masked_path_ops(_cfg(config))]


def _fmt(v: int) -> str:
    return "unlimited" if v == rlimits.INFINITY else str(v)


def plan_steps(config: SecurityConfig | None) -> list:
    """What enter() will do, in its order, as Note steps (pure apart from reading cap_last_cap)."""
    from minicontainer import plan as P

    cfg = _cfg(config)
    last = caps.cap_last_cap()
    kept = caps.effective_caps(cfg, last)
    dropped = sorted(caps.all_caps(last) - kept, key=caps.cap_number)
    notes = []
    if cfg.ulimits:
        limits = ", ".join(f"{u.name}={_fmt(u.soft)}:{_fmt(u.hard)}" for u in cfg.ulimits)
        shell = " ".join(f"--{u.name}={_fmt(u.soft)}:{_fmt(u.hard)}" for u in cfg.ulimits)
        notes.append(P.Note(
            text=f"set resource limits {limits}",
            reason="--ulimit; setrlimit(2), before capabilities go (raising a hard limit needs CAP_SYS_RESOURCE)",
            command=f"prlimit {shell} --pid $$",
        ))
    drop_list = ",".join(c.lower() for c in dropped)
    notable = [c[4:] for c in ("CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO") if c in dropped]
    notes.append(P.Note(
        text="shrink the capability bounding set to " + (", ".join(sorted(c[4:] for c in kept)) or "nothing")
             + "; empty the ambient set",
        reason="capabilities(7): what is dropped from the bounding set can never come back, not even through a "
               "setuid-root binary"
               + (f"; gone: {', '.join(notable)}..." if notable else "; --privileged keeps them all"),
        command=f"capsh --drop={drop_list} --" if drop_list else "",
    ))
    who = cfg.user or "root (uid 0)"
    extra = f", extra groups {', '.join(cfg.group_add)}" if cfg.group_add else ""
    notes.append(P.Note(
        text=f"switch to user {who}{extra}: setgroups, setresgid, setresuid",
        reason="names come from the image's /etc/passwd and /etc/group, read by our own code before pivot_root "
               "(never the host's NSS); a uid change away from 0 empties the effective and permitted sets",
        command="setpriv --reuid U --regid G --groups ...",
    ))
    notes.append(P.Note(
        text="set effective = permitted capabilities to the kept set for root, none for other users; "
             "inheritable empty",
        reason="capset(2); like Docker, a non-root user keeps only the bounding set",
    ))
    notes.append(P.Note(
        text="re-arm the parent-death signal (SIGKILL) and keep the process non-dumpable",
        reason="prctl(2): a uid change clears both; the container must die with the runtime, and root inside must "
               "not reach the runtime through /proc/<pid>/exe (CVE-2019-5736)",
    ))
    if cfg.no_new_privs:
        notes.append(P.Note(
            text="set no_new_privs",
            reason="prctl(PR_SET_NO_NEW_PRIVS): setuid bits and file capabilities grant nothing from now on",
            command="setpriv --no-new-privs",
        ))
    compiled = filter_for(cfg, kept)
    if compiled is None:
        why = "--privileged" if cfg.privileged else "--security-opt seccomp=unconfined"
        notes.append(P.Note(text=f"no seccomp filter ({why})", reason="every system call reaches the kernel"))
    else:
        lines = seccomp.describe_filter(compiled)
        refusing = [r for r in compiled.rules if r.action.kind != "allow"]
        partly = {n for r in compiled.rules if r.args for n in r.names}
        blocked = sorted({n for r in refusing for n in r.names} - set(compiled.unknown))
        text = f"install the seccomp filter ({compiled.length} BPF instructions, last step before exec)"
        if compiled.profile.default_action.kind == "allow":
            text += f": {len(blocked)} calls refused (* only with some arguments): " + ", ".join(
                n + ("*" if n in partly else "") for n in blocked)
        notes.append(P.Note(
            text=text,
            reason="seccomp(2): the kernel runs this program on every system call. "
                   + " ".join(line.strip() for line in lines[:3]),
        ))
    return notes


def prepare_enter(config: SecurityConfig | None, root_fd: int, *, parent_fd: int | None = None) -> Callable[[], None]:
    """Run prepare() now (before pivot_root); return the call for the Exec step."""
    prepared = prepare(_cfg(config), root_fd, parent_fd=parent_fd)

    def _enter() -> None:
        enter(prepared)

    return _enter
