"""Docker's seccomp profile format (``--security-opt seccomp=PROFILE.json``) -> a Profile.

The format (moby ``profiles/seccomp``)::

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": [...]}],
     "syscalls": [{"names": ["read", ...], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}],
                   "errnoRet": 1,
                   "includes": {"caps": [...], "arches": [...], "minKernel": "4.8"},
                   "excludes": {...}}]}

What maps onto our compiler: every action except TRACE and NOTIFY (they need
a tracer or a listener process we do not run), every comparison operator,
includes/excludes. What is simplified, and said so in ``Profile.notes``:

- Only the machine's own architecture gets the profile's rules; calls made
  through a sub-architecture (i386 ``int 0x80``, x32) get the default
  action. Docker's default profile allows them; we do not teach them.
- Names unknown on this architecture are skipped, as runc does.
- When several entries name the same call, the first one whose arguments
  match wins (libseccomp merges them; for Docker's profiles the result is
  the same because all such entries share one action).
- ``flags`` are ignored.

Everything else that cannot be honoured is a UsageError naming the field.
"""

from __future__ import annotations

import os

from minicontainer.errors import UsageError
from minicontainer.security import seccomp as sc

_MAX_PROFILE_BYTES = 4 * 1024 * 1024

_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_KILL": "kill_thread",  # libseccomp's old name
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill_process",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_LOG": "log",
}
_UNSUPPORTED_ACTIONS = {
    "SCMP_ACT_TRACE": "it hands the call to a ptrace tracer, and minicontainer runs none",
    "SCMP_ACT_NOTIFY": "it hands the call to a user-space listener, and minicontainer runs none",
}
_OPS = {
    "SCMP_CMP_EQ": "eq",
    "SCMP_CMP_NE": "ne",
    "SCMP_CMP_LT": "lt",
    "SCMP_CMP_LE": "le",
    "SCMP_CMP_GT": "gt",
    "SCMP_CMP_GE": "ge",
    "SCMP_CMP_MASKED_EQ": "masked_eq",
}
_SCMP_ARCHES = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64"}
_RULE_KEYS = {"names", "name", "action", "args", "errnoRet", "includes", "excludes", "comment"}
_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
             "listenerPath", "listenerMetadata"}


def load_docker_profile(path: str) -> sc.Profile:
    """Read and parse a profile file (size-capped), raising UsageError with a hint."""
    from minicontainer.jsonfile import load_capped

    doc = load_capped(path, _MAX_PROFILE_BYTES, f"seccomp profile {path}",
                      "pass the path of a readable JSON file, or seccomp=default / seccomp=unconfined",
                      "is this really a seccomp profile?")
    return parse_docker_profile(doc, source=path)


def _bad(source: str, what: str, hint: str = "see Docker's seccomp profile format (docs.docker.com, 'Seccomp security profiles')") -> UsageError:
    return UsageError(f"seccomp profile {source}: {what}", hint)


def _action(source: str, name: object, errno_ret: object, where: str, default_errno: int) -> sc.Action:
    if name in _UNSUPPORTED_ACTIONS:
        raise _bad(source, f"{where}: action {name} is not supported: {_UNSUPPORTED_ACTIONS[name]}",
                   "use SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS or SCMP_ACT_LOG instead")
    if name not in _ACTIONS:
        raise _bad(source, f"{where}: unknown action {name!r}", "known: " + ", ".join(_ACTIONS))
    kind = _ACTIONS[name]  # type: ignore[index]
    if kind != "errno":
        return sc.Action(kind)
    if errno_ret is None:
        return sc.Action("errno", default_errno)
    if not isinstance(errno_ret, int) or isinstance(errno_ret, bool) or not 0 <= errno_ret <= 4095:
        raise _bad(source, f"{where}: errnoRet must be an errno number (0-4095), not {errno_ret!r}")
    return sc.Action("errno", errno_ret)


def _kernel(source: str, text: object, where: str) -> tuple[int, int]:
    if not isinstance(text, str) or not all(p.isdigit() for p in text.split(".")[:2]) or not text:
        raise _bad(source, f"{where}: minKernel must look like \"4.8\", not {text!r}")
    return sc.kernel_version(text)


def _filter(source: str, obj: object, where: str) -> sc.Filter:
    if obj is None:
        return sc.Filter()
    if not isinstance(obj, dict):
        raise _bad(source, f"{where} must be an object")
    unknown = set(obj) - {"caps", "arches", "minKernel"}
    if unknown:
        raise _bad(source, f"{where}: unsupported field(s) {', '.join(sorted(unknown))}")
    caps = obj.get("caps") or []
    arches = obj.get("arches") or []
    if not all(isinstance(c, str) for c in caps) or not all(isinstance(a, str) for a in arches):
        raise _bad(source, f"{where}: caps and arches must be lists of strings")
    norm_caps = tuple(c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper() for c in caps)
    norm_arches = tuple(sc.ARCH_ALIASES.get(a.lower(), a.lower()) for a in arches)
    mk = _kernel(source, obj["minKernel"], where) if obj.get("minKernel") else None
    return sc.Filter(norm_caps, norm_arches, mk)


def _args(source: str, args: object, where: str) -> tuple[sc.ArgCheck, ...]:
    if args is None:
        return ()
    if not isinstance(args, list):
        raise _bad(source, f"{where}: args must be a list")
    out = []
    for a in args:
        if not isinstance(a, dict):
            raise _bad(source, f"{where}: each arg must be an object")
        idx, op = a.get("index"), a.get("op")
        value, value_two = a.get("value", 0), a.get("valueTwo", 0)
        if not isinstance(idx, int) or not 0 <= idx <= 5:
            raise _bad(source, f"{where}: arg index must be 0..5, not {idx!r}")
        if op not in _OPS:
            raise _bad(source, f"{where}: unknown comparison {op!r}", "known: " + ", ".join(_OPS))
        for v in (value, value_two):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
                raise _bad(source, f"{where}: arg values must be unsigned 64-bit integers, not {v!r}")
        out.append(sc.ArgCheck(idx, _OPS[op], value, value_two))
    return tuple(out)


def parse_docker_profile(doc: object, source: str = "<profile>") -> sc.Profile:
    """A parsed JSON document -> Profile. Pure."""
    if not isinstance(doc, dict):
        raise _bad(source, "the top level must be a JSON object")
    notes: list[str] = []
    unknown_top = set(doc) - _TOP_KEYS
    if unknown_top:
        raise _bad(source, f"unsupported field(s) {', '.join(sorted(unknown_top))}")
    if doc.get("listenerPath"):
        raise _bad(source, "listenerPath (seccomp user notification) is not supported",
                   "remove listenerPath and any SCMP_ACT_NOTIFY rule")
    derr = doc.get("defaultErrnoRet")
    default = _action(source, doc.get("defaultAction"), derr, "defaultAction", 1)
    default_errno = default.errno if default.kind == "errno" else 1  # EPERM, as runc
    if doc.get("flags"):
        notes.append(f"flags {doc['flags']} ignored")

    arches = []
    for a in doc.get("architectures") or []:
        arches.append(a)
    for entry in doc.get("archMap") or []:
        if isinstance(entry, dict):
            arches.append(entry.get("architecture"))
            arches.extend(entry.get("subArchitectures") or [])
    foreign = [a for a in arches if a not in _SCMP_ARCHES]
    if foreign:
        notes.append(
            "calls through other ABIs (" + ", ".join(str(a) for a in foreign[:4])
            + (", ..." if len(foreign) > 4 else "") + ") get the default action or are killed"
        )

    calls = doc.get("syscalls") or []
    if not isinstance(calls, list):
        raise _bad(source, "syscalls must be a list")
    rules = []
    for i, call in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            raise _bad(source, f"{where} must be an object")
        unknown = set(call) - _RULE_KEYS
        if unknown:
            raise _bad(source, f"{where}: unsupported field(s) {', '.join(sorted(unknown))}")
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if not names or not all(isinstance(n, str) and n for n in names):
            raise _bad(source, f"{where}: 'names' must be a non-empty list of syscall names")
        action = _action(source, call.get("action"), call.get("errnoRet"), where, default_errno)
        rules.append(
            sc.Rule(
                names=tuple(names),
                action=action,
                args=_args(source, call.get("args"), where),
                includes=_filter(source, call.get("includes"), f"{where}.includes"),
                excludes=_filter(source, call.get("excludes"), f"{where}.excludes"),
                why=str(call.get("comment") or ""),
            )
        )
    name = os.path.basename(source) if source else "custom"
    return sc.Profile(name=name, default_action=default, rules=tuple(rules), source=source, notes=tuple(notes))
