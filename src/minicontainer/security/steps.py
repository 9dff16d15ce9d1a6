"""The security layer's part of the plan: its steps, decided while planning.

``security_steps(config)`` returns three lists the planner puts in place:

- ``masks``: ``MaskPath`` steps, right after /proc and /sys are mounted;
- ``before_pivot``: ``ResolveUser`` (the image's /etc/passwd, read by our
  own code) and ``MakeUndumpable``, while Python may still read files;
- ``inside``: the privilege drop after pivot_root, in the one order where
  each step still has the privilege it needs:

  1. resource limits, while CAP_SYS_RESOURCE can still raise them;
  2. shrink the bounding set (needs CAP_SETPCAP), empty the ambient set;
  3. setgroups, setresgid, setresuid: groups first, the uid last
     (setgroups(2)); leaving uid 0 empties the permitted and effective sets
     (capabilities(7), "Effect of user ID changes on capabilities");
  4. capset: effective = permitted = the kept set for root, nothing for any
     other user, inheritable empty (like Docker), checked with capget;
  5. the uid change reset "dumpable" and the parent-death signal (prctl(2)):
     set them again, then check the runtime is still alive;
  6. no_new_privs: execve can no longer grant privileges;
  7. every fd above 2 close-on-exec (CVE-2024-21626);
  8. seccomp last, so it never blocks our own setup. Without no_new_privs
     installing a filter needs CAP_SYS_ADMIN, so then it comes first, before
     any privilege is dropped (runc does the same); our filters never block
     steps 1-7.

Everything that can be computed now is: the kept capabilities (checked
against the runtime's own bounding set, so a ``--cap-add`` the host lacks is
refused before anything starts) and the compiled seccomp program. The steps
are carried out by ``interpreter.Interpreter``, like every other step.
"""

from __future__ import annotations

from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

from minicontainer.container import steps as S
from minicontainer.errors import SecurityError
from minicontainer.security import caps, rlimits
from minicontainer.security.config import SecurityConfig
from minicontainer.security.paths import masked_path_ops


@dataclass
class SecuritySteps:
    masks: list = field(default_factory=list)
    before_pivot: list = field(default_factory=list)
    inside: list = field(default_factory=list)


def kept_caps(config: SecurityConfig, last_cap: int, bounding_now: int) -> int:
    """The capabilities the container keeps, as a mask; refuses a --cap-add
    the runtime itself does not have (it cannot be granted)."""
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
               kernel: tuple[int, int] | None = None):
    """The compiled seccomp program for ``config`` (a seccomp.CompiledFilter), or None when unconfined."""
    from minicontainer.security import seccomp

    profile = seccomp.profile_for(config)
    return None if profile is None else seccomp.compile_filter(profile, cap_names, arch, kernel)


def _seccomp_step(config: SecurityConfig, kept: frozenset[str], arch: str | None,
                  cache_dir=None, cache_write: bool = True):
    from minicontainer.syscalls.linux import load_filter

    if config.seccomp == "unconfined":
        why = "--privileged" if config.privileged else "--security-opt seccomp=unconfined"
        return S.Note(phase=S.INSIDE, text=f"no seccomp filter ({why})", reason="every system call reaches the kernel")
    # The same profile, caps, machine and kernel always give the same step:
    # a run reads it from the state root instead of importing seccomp.py and
    # assembling the program again (~10 ms a start here; seccomp_cache.py).
    key = None
    if cache_dir is not None and arch is None:
        from minicontainer.security import seccomp_cache

        key = seccomp_cache.key(config, kept)
        hit = seccomp_cache.load(cache_dir, key)
        if hit is not None:
            program, text, reason = hit
            return S.InstallSeccomp(text=text, reason=reason, fprog=load_filter(program))
    from minicontainer.security import seccomp

    compiled = filter_for(config, kept, arch)
    refusing = [r for r in compiled.rules if r.action.kind != "allow"]
    partly = {n for r in compiled.rules if r.args for n in r.names}
    blocked = sorted({n for r in refusing for n in r.names} - set(compiled.unknown))
    text = f"install the seccomp filter ({compiled.length} BPF instructions, last step before exec)"
    if compiled.profile.default_action.kind == "allow":
        text += f": {len(blocked)} calls refused (* only with some arguments): " + ", ".join(
            n + ("*" if n in partly else "") for n in blocked)
    reason = "seccomp(2): the kernel runs this program on every system call. " + seccomp.explain_filter(compiled)
    if key is not None and cache_write:
        seccomp_cache.save(cache_dir, key, compiled.program, text, reason)
    return S.InstallSeccomp(text=text, reason=reason, fprog=load_filter(compiled.program))


def security_steps(config: SecurityConfig | None, *, last_cap: int | None = None, bounding: int | None = None,
                   arch: str | None = None, cache_dir=None, cache_write: bool = True) -> SecuritySteps:
    """The steps for ``config`` (None: the defaults). ``last_cap`` and
    ``bounding`` are read from this host when not given. With ``cache_dir``
    the seccomp step is read from (and, with ``cache_write``, saved to) the
    cache there (seccomp_cache.py)."""
    cfg = config if config is not None else SecurityConfig()
    if last_cap is None:
        last_cap = caps.cap_last_cap()
    if bounding is None:
        bounding = caps.read_bounding(last_cap)
    keep = kept_caps(cfg, last_cap, bounding)
    kept = caps.mask_to_caps(keep)
    dropped = tuple(sorted(caps.all_caps(last_cap) - kept, key=caps.cap_number))

    out = SecuritySteps()
    out.masks = [S.MaskPath(path=op.path, kind=op.kind, reason=op.why) for op in masked_path_ops(cfg)]
    out.before_pivot = [S.ResolveUser(user=cfg.user, group_add=cfg.group_add), S.MakeUndumpable()]

    seccomp_step = _seccomp_step(cfg, kept, arch, cache_dir, cache_write)
    filter_first = isinstance(seccomp_step, S.InstallSeccomp) and not cfg.no_new_privs
    inside = out.inside
    if filter_first:
        inside.append(seccomp_step)
    if cfg.ulimits:
        inside.append(S.SetRlimits(limits=tuple((u.name, rlimits.ULIMIT_NAMES[u.name], u.soft, u.hard)
                                                for u in cfg.ulimits)))
    inside.append(S.DropBoundingSet(keep=keep, last_cap=last_cap, kept=tuple(sorted(kept, key=caps.cap_number)),
                                    dropped=dropped))
    inside.append(S.SwitchUser(user=cfg.user, group_add=cfg.group_add))
    inside.append(S.SetCapabilities(keep=keep))
    inside.append(S.RearmParentDeath())
    if cfg.no_new_privs:
        inside.append(S.NoNewPrivs())
    inside.append(S.CloseOnExec(first=3))
    if not filter_first:
        inside.append(seccomp_step)
    return out
