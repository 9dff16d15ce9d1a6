"""SecurityConfig: what the user asked for with Docker's security flags. Pure.

``parse_security`` takes the raw flag values (``--cap-add``, ``--cap-drop``,
``--privileged``, ``--security-opt``, ``--ulimit``, ``--user``,
``--group-add``) and returns a validated, frozen config, or raises
UsageError before anything is created. Reading a ``seccomp=PROFILE.json``
file is the only I/O: a typo in a profile should fail here, not in the
forked child.

Defaults are Docker's, except that no_new_privs is on (Docker needs
``--security-opt no-new-privileges``): a setuid binary in an image should
not be a way back to root.
"""

from __future__ import annotations

from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of every run, issue 15)

from minicontainer.errors import UsageError
from minicontainer.security.caps import normalize_cap
from minicontainer.security.paths import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from minicontainer.security.rlimits import Ulimit, parse_ulimit
from minicontainer.security.users import split_user

if TYPE_CHECKING:
    from typing import Iterable

    from minicontainer.security.seccomp import Profile


@dataclass(frozen=True)
class SecurityConfig:
    cap_add: tuple[str, ...] = ()  # normalized: CAP_NET_ADMIN, or ALL
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privs: bool = True
    seccomp: str = "default"  # "default" | "unconfined" | path of a Docker JSON profile
    seccomp_profile: Profile | None = None  # the parsed file when ``seccomp`` is a path
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    ulimits: tuple[Ulimit, ...] = ()
    user: str | None = None
    group_add: tuple[str, ...] = ()


_OPT_HINT = (
    "known: no-new-privileges[=true|false], seccomp=default|unconfined|PROFILE.json, "
    "systempaths=unconfined, apparmor=unconfined, label=disable"
)


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise UsageError(f"invalid --security-opt {key}={value!r}: expected true or false", _OPT_HINT)


def _split_opt(opt: str) -> tuple[str, str | None]:
    # Docker: KEY=VALUE; the old KEY:VALUE form is still accepted.
    if "=" in opt:
        k, _, v = opt.partition("=")
        return k.strip().lower(), v
    if opt.strip().lower() == "no-new-privileges":
        return "no-new-privileges", None
    if ":" in opt:
        k, _, v = opt.partition(":")
        return k.strip().lower(), v
    return opt.strip().lower(), None


def parse_security(
    cap_add: Iterable[str] = (),
    cap_drop: Iterable[str] = (),
    privileged: bool = False,
    security_opt: Iterable[str] = (),
    ulimit: Iterable[str] = (),
    user: str | None = None,
    group_add: Iterable[str] = (),
) -> SecurityConfig:
    adds = tuple(dict.fromkeys(normalize_cap(c) for c in cap_add))
    drops = tuple(dict.fromkeys(normalize_cap(c) for c in cap_drop))

    no_new_privs = True
    seccomp = None  # None = not given
    profile = None
    systempaths = True
    for opt in security_opt:
        key, value = _split_opt(opt or "")
        if key == "no-new-privileges":
            no_new_privs = _bool(key, value or "")
        elif key == "seccomp":
            v = (value or "").strip()
            if not v:
                raise UsageError("--security-opt seccomp needs a value", _OPT_HINT)
            if v in ("default", "builtin"):
                seccomp, profile = "default", None
            elif v == "unconfined":
                seccomp, profile = "unconfined", None
            else:
                # imported only for a JSON profile: the default one needs no
                # seccomp code on a start whose step is cached (seccomp_cache.py)
                from minicontainer.security.seccomp_profile import load_docker_profile

                seccomp, profile = v, load_docker_profile(v)
        elif key == "systempaths":
            if (value or "").strip() != "unconfined":
                raise UsageError(f"invalid --security-opt {opt!r}", "the only value is systempaths=unconfined")
            systempaths = False
        elif key == "apparmor":
            if (value or "").strip() != "unconfined":
                raise UsageError(
                    f"--security-opt {opt!r}: minicontainer does not load AppArmor profiles",
                    "drop the option (apparmor=unconfined is accepted and changes nothing)",
                )
        elif key == "label":
            if (value or "").strip() != "disable":
                raise UsageError(
                    f"--security-opt {opt!r}: minicontainer does not apply SELinux labels",
                    "drop the option (label=disable is accepted and changes nothing)",
                )
        else:
            raise UsageError(f"unknown --security-opt {opt!r}", _OPT_HINT)

    if seccomp is None:
        # Docker: --privileged runs unconfined unless a profile is named.
        seccomp = "unconfined" if privileged else "default"

    ulimits: dict[str, Ulimit] = {}
    for spec in ulimit:
        u = parse_ulimit(spec)
        if u.name in ulimits:
            raise UsageError(f"--ulimit {u.name} given twice", "give each limit once: --ulimit NAME=SOFT[:HARD]")
        ulimits[u.name] = u

    if user is not None:
        if not user.strip():
            raise UsageError("--user needs a value", "use UID[:GID] or NAME[:GROUP]")
        split_user(user)
    groups = tuple(group_add)
    for g in groups:
        if not g or ":" in g or "/" in g or not g.isprintable() or " " in g:
            raise UsageError(f"invalid --group-add {g!r}", "give a group name or a numeric GID")

    masks = not privileged and systempaths
    return SecurityConfig(
        cap_add=adds,
        cap_drop=drops,
        privileged=privileged,
        no_new_privs=no_new_privs,
        seccomp=seccomp,
        seccomp_profile=profile,
        masked_paths=DEFAULT_MASKED_PATHS if masks else (),
        readonly_paths=DEFAULT_READONLY_PATHS if masks else (),
        ulimits=tuple(ulimits.values()),
        user=user,
        group_add=groups,
    )
