"""What a running container is, read back from the kernel (``minicontainer ns NAME``).

Everything here is read from /proc (proc(5)) for the container's PID 1, and
compared with the host's (this process's own, /proc/self: where the command
was typed; /proc/1's may be unreadable even to root under a sandbox), so a
learner sees what the runtime did, not what it meant to do:

- its namespaces: ``readlink /proc/PID/ns/*`` gives ``net:[4026532301]``, an
  inode number; the same number as the host's means the same namespace
  (shared), another means a new one (namespaces(7));
- its user namespace's maps (/proc/PID/uid_map, gid_map: inside, outside,
  count; ``0 0 4294967295`` is the identity of the host's);
- its cgroup (/proc/PID/cgroup) and the limits in force now, read from the
  cgroup's files (the managers' ``stats()``);
- its capability sets (CapInh/CapPrm/CapEff/CapBnd/CapAmb of
  /proc/PID/status: hex masks, decoded to names, capabilities(7)), seccomp
  (``Seccomp:`` 0 off, 1 strict, 2 filter) and no_new_privs;
- its mount table (/proc/PID/mountinfo), each mount marked by whether it is
  a filesystem the host has mounted too: a filesystem is known by its device
  number (mountinfo's field 3), the same in every mount namespace, unlike
  mount ids and paths; a new proc, sysfs, tmpfs or overlay gets a new one.
  ``+`` only the container has it (its overlay root, its own proc, tmpfs ...),
  ``=`` a filesystem of the host's, bound in (-v, /etc/hosts, /dev/null over
  a masked path); the host's mounts whose filesystem and directory the
  container does not have (fields 3 and 4) are listed as hidden (``-``).

The top half parses texts (unit-tested on fixed inputs), the bottom half
reads /proc.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
CAP_SETS = (("CapInh", "inheritable"), ("CapPrm", "permitted"), ("CapEff", "effective"),
            ("CapBnd", "bounding"), ("CapAmb", "ambient"))
SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


# --- pure: texts -> facts ----------------------------------------------------------


def ns_inode(link: str | None) -> int | None:
    """``'net:[4026531840]'`` (readlink of /proc/PID/ns/net) -> 4026531840."""
    if not link or "[" not in link:
        return None
    return int(link[link.index("[") + 1:link.rindex("]")])


def compare_namespaces(inside: dict[str, int | None], host: dict[str, int | None]) -> list[dict]:
    """One row per namespace type: both inodes and ``new`` / ``shared`` (or
    ``unknown`` where one side cannot be read, e.g. a kernel without time namespaces)."""
    rows = []
    for t in NS_TYPES:
        a, b = inside.get(t), host.get(t)
        how = "unknown" if a is None or b is None else ("shared" if a == b else "new")
        rows.append({"type": t, "container": a, "host": b, "is": how})
    return rows


def parse_id_map(text: str) -> list[dict]:
    """uid_map/gid_map lines ``inside outside count`` (user_namespaces(7))."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append({"inside": int(parts[0]), "outside": int(parts[1]), "count": int(parts[2])})
    return out


def status_fields(text: str) -> dict[str, str]:
    """/proc/PID/status as ``{"CapEff": "00000000a80425fb", "Seccomp": "2", ...}``."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def decode_caps(mask_hex: str) -> list[str]:
    """A CapEff-style hex mask -> capability names in number order."""
    from minicontainer.security.caps import cap_name

    mask = int(mask_hex, 16)
    return [cap_name(i) for i in range(mask.bit_length()) if mask >> i & 1]


def capabilities(status: dict[str, str]) -> dict[str, list[str]]:
    return {name: decode_caps(status[key]) for key, name in CAP_SETS if key in status}


def security(status: dict[str, str]) -> dict:
    mode = status.get("Seccomp", "")
    filters = status.get("Seccomp_filters")
    return {"seccomp": SECCOMP_MODES.get(mode, mode or "unknown"),
            "seccomp_filters": int(filters) if filters and filters.isdigit() else None,
            "no_new_privs": status.get("NoNewPrivs") == "1"}


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo (proc(5)): the fields a reader compares."""

    mount_point: str
    fstype: str
    source: str
    dev: str  # major:minor of the filesystem
    root: str  # the directory of that filesystem mounted here
    options: str

    @property
    def key(self) -> tuple[str, str]:
        """What is mounted, whatever the namespace: a filesystem and the directory of it."""
        return (self.dev, self.root)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 6 or len(r) < 2:
            continue
        out.append(MountEntry(mount_point=_unescape(f[4]), fstype=r[0], source=_unescape(r[1]), dev=f[2],
                              root=_unescape(f[3]), options=f[5]))
    return out


def compare_mounts(inside: list[MountEntry], host: list[MountEntry]) -> dict:
    """The container's mounts marked ``added`` (a filesystem only it has) or
    ``host`` (a filesystem of the host's, bound in), and the host's mounts
    it does not see (``hidden``: that filesystem and directory are mounted
    nowhere in the container)."""
    host_devs = {m.dev for m in host}
    inside_keys = {m.key for m in inside}
    table = [{**asdict(m), "is": "host" if m.dev in host_devs else "added"} for m in inside]
    hidden = [asdict(m) for m in host if m.key not in inside_keys]
    return {"container": table, "hidden": hidden}


def cgroup_paths(text: str) -> list[str]:
    """/proc/PID/cgroup ``0::/minicontainer/ID`` (v2) or ``4:memory:/...`` (v1) lines, as given."""
    return [line for line in text.splitlines() if line.strip()]


# --- text: what `ns` prints ----------------------------------------------------------

MARK = {"added": "+", "host": "="}


def _caps_text(names: list[str], every: int) -> str:
    if not names:
        return "(none)"
    if len(names) == every:
        return f"all {every}"
    return f"{len(names)} of {every}: " + " ".join(n.removeprefix("CAP_").lower() for n in names)


def render(view: dict) -> str:
    """The view as ``ns`` prints it: sections, namespaces side by side, marked mounts."""
    from minicontainer.security.caps import cap_last_cap

    every = cap_last_cap() + 1
    lines = [f"container {view['name']} ({view['id'][:12]}), PID 1 is host pid {view['pid']}", "",
             "NAMESPACE   CONTAINER      HOST (here)"]
    for r in view["namespaces"]:
        lines.append(f"{r['type']:<12}{r['container'] or '?'!s:<15}{r['host'] or '?'!s:<15}{r['is']}")
    lines.append("")
    for which in ("uid_map", "gid_map"):
        maps = view[which]
        shown = ", ".join(f"{m['inside']}->{m['outside']} (x{m['count']})" for m in maps) or "(none)"
        ident = maps == [{"inside": 0, "outside": 0, "count": 4294967295}]
        lines.append(f"{which}: {shown}" + ("  the host's identity map: no user namespace of its own" if ident else ""))
    lines.append("")
    lines.append("cgroup:" + "".join(f"\n  {p}" for p in view["cgroup"]["paths"]) if view["cgroup"]["paths"]
                 else "cgroup: (none)")
    limits = view["cgroup"]["limits"]
    if limits:
        from minicontainer.units import format_size

        mem = limits.get("memory_limit")
        shown = {"memory (-m)": format_size(mem) if isinstance(mem, int) else mem,
                 "cpus (--cpus)": limits.get("cpus"), "pids (--pids-limit)": limits.get("pids_limit")}
        lines.append("limits now: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    lines.append("")
    for name, names in view["capabilities"].items():
        lines.append(f"{name + ':':<13}{_caps_text(names, every)}")
    sec = view["security"]
    filters = f" ({sec['seccomp_filters']} filter{'s' if sec['seccomp_filters'] != 1 else ''})" \
        if sec["seccomp_filters"] is not None else ""
    lines.append(f"seccomp: {sec['seccomp']}{filters}; no_new_privs: {'on' if sec['no_new_privs'] else 'off'}")
    lines.append("")
    lines.append("MOUNTS (+ only in the container, = a filesystem of the host's, - the host's, hidden from it)")
    for m in view["mounts"]["container"]:
        lines.append(f"{MARK[m['is']]} {m['mount_point']:<28} {m['fstype']:<10} {m['source']}")
    for m in view["mounts"]["hidden"]:
        lines.append(f"- {m['mount_point']:<28} {m['fstype']:<10} {m['source']}")
    return "\n".join(lines)


# --- reading /proc ---------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _namespaces(pid: int | str, proc: str) -> dict[str, int | None]:
    out = {}
    for t in NS_TYPES:
        try:
            out[t] = ns_inode(os.readlink(f"{proc}/{pid}/ns/{t}"))
        except OSError:
            out[t] = None
    return out


def read_view(st, cgroup_manager=None, *, proc: str = "/proc", host_pid: int | str = "self") -> dict:
    """Everything above for running container ``st`` (its state; ``st.pid`` is
    its PID 1 as the host numbers it). Raises OSError if the process is gone."""
    pid = st.pid
    status = status_fields(_read(f"{proc}/{pid}/status"))
    inside_mounts = parse_mountinfo(_read(f"{proc}/{pid}/mountinfo"))
    host_mounts = parse_mountinfo(_read(f"{proc}/{host_pid}/mountinfo"))
    limits = {}
    if cgroup_manager is not None:
        try:
            counters = cgroup_manager.stats()
        except Exception:  # noqa: BLE001 - the cgroup went away meanwhile: show the rest
            counters = {}
        for key in ("memory_limit", "cpus", "pids_limit"):
            value = counters.get(key)
            limits[key] = value if value is not None else "unlimited"
    return {
        "id": st.id,
        "name": st.name,
        "pid": pid,
        "namespaces": compare_namespaces(_namespaces(pid, proc), _namespaces(host_pid, proc)),
        "uid_map": parse_id_map(_read(f"{proc}/{pid}/uid_map")),
        "gid_map": parse_id_map(_read(f"{proc}/{pid}/gid_map")),
        "cgroup": {"paths": cgroup_paths(_read(f"{proc}/{pid}/cgroup")), "limits": limits},
        "capabilities": capabilities(status),
        "security": security(status),
        "mounts": compare_mounts(inside_mounts, host_mounts),
    }
