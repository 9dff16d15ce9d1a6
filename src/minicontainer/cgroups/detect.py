"""Which cgroup hierarchies this host has, read from /proc/self/mountinfo.

The mode is decided by filesystem types, never guessed from paths
(cgroups(7), "Cgroups version 1 and version 2"; proc(5), /proc/pid/mountinfo):

- ``v2``     a ``cgroup2`` mount and no v1 controller mounts (unified);
- ``v1``     ``cgroup`` mounts with controllers and no ``cgroup2`` mount;
- ``hybrid`` both: v1 controllers at /sys/fs/cgroup/<controller> and an
  (often controller-less) cgroup2 at /sys/fs/cgroup/unified, as on this
  project's CI machines and systemd's "hybrid" setup;
- ``none``   no cgroup filesystem at all.

A controller can be attached to only one hierarchy at a time, so on a hybrid
host the v2 mount lists only the controllers v1 did not take (read from its
``cgroup.controllers``).
"""

from __future__ import annotations

import os
import re
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

# The v1 controllers the kernel may offer (cgroups(7), "Cgroups version 1
# controllers"). Other mount options (rw, noexec, name=systemd, ...) are not
# controllers; ``name=`` hierarchies carry no controller at all.
V1_CONTROLLERS = frozenset({
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
    "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
})


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo, the parts we need."""

    mount_point: str
    root: str  # the directory of the filesystem shown at mount_point
    fstype: str
    options: tuple[str, ...]  # per-mount options (rw/ro, nosuid, ...)
    super_options: tuple[str, ...]  # filesystem options (the v1 controllers)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options or "ro" in self.super_options


@dataclass(frozen=True)
class HostCgroups:
    mode: str  # "v2" | "v1" | "hybrid" | "none"
    v2_mount: str | None = None
    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2_controllers: frozenset[str] = frozenset()  # from <v2_mount>/cgroup.controllers
    read_only: frozenset[str] = frozenset()  # mount points mounted read-only

    def __hash__(self) -> int:  # the dict field is not hashable by itself
        return hash((self.mode, self.v2_mount, tuple(sorted(self.v1_mounts.items())), self.v2_controllers))


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (proc(5))."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text (proc(5)): ``id parent maj:min root point opts [tags] - type source superopts``."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 6 or len(rf) < 1:
            continue
        mounts.append(Mount(
            mount_point=_unescape(lf[4]),
            root=_unescape(lf[3]),
            fstype=rf[0],
            options=tuple(lf[5].split(",")),
            super_options=tuple(rf[2].split(",")) if len(rf) > 2 else (),
        ))
    return mounts


def _visible(mounts: list[Mount]) -> list[Mount]:
    """The last mount on a mount point hides the earlier ones."""
    last: dict[str, Mount] = {}
    for m in mounts:
        last.pop(m.mount_point, None)
        last[m.mount_point] = m
    return list(last.values())


def _pick_v2(mounts: list[Mount]) -> Mount | None:
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    if not v2:
        return None
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        for m in v2:
            if m.mount_point == preferred:
                return m
    return v2[0]


def host_from_mounts(mounts: list[Mount], read_controllers=None) -> HostCgroups:
    """Decide the mode from parsed mounts; ``read_controllers(path)`` reads cgroup.controllers."""
    mounts = _visible(mounts)
    v1: dict[str, str] = {}
    read_only: set[str] = set()
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        ctrls = [o for o in m.super_options if o in V1_CONTROLLERS]
        for c in ctrls:
            v1.setdefault(c, m.mount_point)  # a controller is attached to one hierarchy only
        if ctrls and m.read_only:
            read_only.add(m.mount_point)
    v2 = _pick_v2(mounts)
    v2_ctrls: frozenset[str] = frozenset()
    if v2 is not None:
        if v2.read_only:
            read_only.add(v2.mount_point)
        reader = read_controllers or _read_controllers
        v2_ctrls = reader(v2.mount_point)
    if v2 is not None and not v1:
        mode = "v2"
    elif v2 is not None:
        mode = "hybrid"
    elif v1:
        mode = "v1"
    else:
        mode = "none"
    return HostCgroups(
        mode=mode,
        v2_mount=v2.mount_point if v2 is not None else None,
        v1_mounts=v1,
        v2_controllers=v2_ctrls,
        read_only=frozenset(read_only),
    )


def _read_controllers(mount_point: str) -> frozenset[str]:
    try:
        return frozenset(Path(mount_point, "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def detect(mountinfo_path: str = "/proc/self/mountinfo") -> HostCgroups:
    """Read the host's cgroup layout from ``mountinfo_path``."""
    with open(mountinfo_path) as f:
        text = f.read()
    return host_from_mounts(parse_mountinfo(text))


def controllers_at(path: str | os.PathLike) -> frozenset[str]:
    """The v2 controllers a cgroup's children may use (its cgroup.controllers)."""
    return _read_controllers(str(path))
