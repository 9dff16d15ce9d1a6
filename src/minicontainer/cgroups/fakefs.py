"""A cgroup filesystem in an ordinary directory, for unit tests (no root needed).

:class:`FakeCgroupFs` is a :class:`~minicontainer.cgroups.files.CgroupFs`
whose "kernel" is a few lines of Python imitating the behaviour the managers
depend on, so tests exercise the real manager code:

- ``mkdir`` fills a new cgroup with its interface files (v2: only for the
  controllers the parent enabled in cgroup.subtree_control);
- ``rmdir`` removes a cgroup with its interface files, but fails with EBUSY
  while it has processes or child cgroups (like the kernel);
- writing a pid to cgroup.procs moves it within the hierarchy; v2 refuses a
  cgroup that has controllers enabled for children (no internal processes),
  v1 cpuset refuses a cgroup with empty cpuset.cpus (ENOSPC);
- cgroup.subtree_control refuses controllers the cgroup does not have and
  non-root cgroups holding processes (EBUSY);
- cgroup.kill and ``kill(pid, SIGKILL)`` remove processes (except those
  marked unkillable); cgroup.events reports ``populated`` and ``frozen``;
- v1 refuses memory.memsw below memory.limit and a cpuset outside the parent's;
  devices.deny/devices.allow edit devices.list as the kernel does (a new
  cgroup copies its parent's list);
- ``attach_device_filter`` keeps each cgroup's eBPF programs in
  ``device_filters`` (the tests run them with a small interpreter).

Time is fake too: ``sleep`` advances ``clock``, so deadline tests run
instantly. ``log`` records every mkdir/rmdir/write in order.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from minicontainer.cgroups.files import CgroupFs, write_hint
from minicontainer.errors import SyscallError

V1_UNLIMITED = "9223372036854771712"

V2_FILES = {
    "memory": {"memory.max": "max", "memory.low": "0", "memory.current": "0", "memory.peak": "0",
               "memory.stat": "anon 0\nfile 0\nactive_file 0\ninactive_file 0\n",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.max": "", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
}
V2_SWAP = {"memory.swap.max": "max", "memory.swap.current": "0"}

V1_FILES = {
    "memory": {"memory.limit_in_bytes": V1_UNLIMITED, "memory.soft_limit_in_bytes": V1_UNLIMITED,
               "memory.usage_in_bytes": "0", "memory.max_usage_in_bytes": "0", "memory.failcnt": "0",
               "memory.stat": "cache 0\nrss 0\ninactive_file 0\ntotal_cache 0\ntotal_inactive_file 0\n",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.shares": "1024",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.io_service_bytes_recursive": "Total 0\n"},
    "freezer": {"freezer.state": "THAWED"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
}
V1_MEMSW = {"memory.memsw.limit_in_bytes": V1_UNLIMITED, "memory.memsw.usage_in_bytes": "0"}
V1_NOT_ON_ROOT = {"pids.max", "pids.current", "pids.events", "freezer.state"}


@dataclass
class Hierarchy:
    mount: str
    version: int  # 1 or 2
    controllers: tuple[str, ...]
    memsw: bool = True  # v1: swap accounting
    swap: bool = True  # v2: memory.swap.* files
    kill_file: bool = True  # v2: cgroup.kill (Linux 5.14+)
    frozen_stuck: set[str] = field(default_factory=set)  # cgroups that never finish freezing


def _err(path: str, value: str, err: int) -> SyscallError:
    return SyscallError(f"writing {value!r} to", err, path, write_hint(path, err))


class FakeCgroupFs(CgroupFs):
    def __init__(self) -> None:
        self.hierarchies: dict[str, Hierarchy] = {}
        self.clock = 0.0
        self.killed: list[tuple[int, int]] = []
        self.unkillable: set[int] = set()
        self.log: list[tuple[str, str, str]] = []
        self.device_filters: dict[str, list[bytes]] = {}

    # -- building a host ------------------------------------------------------------
    def add_v2(self, mount: str | os.PathLike, controllers=("cpu", "cpuset", "io", "memory", "pids"), *,
               ns_root: bool = False, procs=(), swap: bool = True, kill_file: bool = True) -> str:
        """A unified hierarchy at ``mount``. ``ns_root``: the mount is the root of a
        cgroup namespace (a non-root cgroup, as inside Docker), not the real root."""
        mount = str(mount)
        Path(mount).mkdir(parents=True, exist_ok=True)
        h = Hierarchy(mount, 2, tuple(controllers), swap=swap, kill_file=kill_file)
        self.hierarchies[mount] = h
        files = {"cgroup.procs": "".join(f"{p}\n" for p in procs), "cgroup.controllers": " ".join(controllers),
                 "cgroup.subtree_control": "", "cgroup.max.depth": "max"}
        if ns_root:
            files.update({"cgroup.type": "domain", "cgroup.freeze": "0"})
            if kill_file:
                files["cgroup.kill"] = ""
        for name, text in files.items():
            Path(mount, name).write_text(text)
        return mount

    def add_v1(self, mount: str | os.PathLike, controllers: tuple[str, ...], *, memsw: bool = True,
               cpus: str = "0-1", mems: str = "0") -> str:
        """One v1 hierarchy (one controller, or co-mounted ones like cpu,cpuacct)."""
        mount = str(mount)
        Path(mount).mkdir(parents=True, exist_ok=True)
        h = Hierarchy(mount, 1, tuple(controllers), memsw=memsw)
        self.hierarchies[mount] = h
        for name, text in self._v1_files(h, root=True).items():
            Path(mount, name).write_text(text)
        if "cpuset" in controllers:
            Path(mount, "cpuset.cpus").write_text(cpus + "\n")
            Path(mount, "cpuset.mems").write_text(mems + "\n")
        return mount

    def add_procs(self, path: str | os.PathLike, *pids: int) -> None:
        """Pretend these processes run in the cgroup at ``path``."""
        for p in pids:
            self._move(str(path), p)

    def _v1_files(self, h: Hierarchy, root: bool) -> dict[str, str]:
        files = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0"}
        for c in h.controllers:
            files.update(V1_FILES.get(c, {}))
            if c == "memory" and h.memsw:
                files.update(V1_MEMSW)
        if root:
            for name in V1_NOT_ON_ROOT:
                files.pop(name, None)
        return files

    def _hier(self, path: str) -> Hierarchy:
        best = None
        for m, h in self.hierarchies.items():
            if path == m or path.startswith(m + "/"):
                if best is None or len(m) > len(best.mount):
                    best = h
        if best is None:
            raise AssertionError(f"{path} is not inside a fake hierarchy")
        return best

    # -- the "kernel" -----------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        h = self._hier(path)
        os.mkdir(path, 0o755)
        self.log.append(("mkdir", path, ""))
        if h.version == 1:
            files = self._v1_files(h, root=False)
            if "devices.list" in files:
                files["devices.list"] = Path(path).parent.joinpath("devices.list").read_text()
        else:
            parent_enabled = Path(path).parent.joinpath("cgroup.subtree_control").read_text().split()
            files = {"cgroup.procs": "", "cgroup.controllers": " ".join(parent_enabled),
                     "cgroup.subtree_control": "", "cgroup.type": "domain", "cgroup.freeze": "0",
                     "cgroup.events": "", "cpu.stat": "usage_usec 0\nnr_throttled 0\nthrottled_usec 0\n"}
            if h.kill_file:
                files["cgroup.kill"] = ""
            for c in parent_enabled:
                files.update(self._v2_ctrl_files(h, c))
        for name, text in files.items():
            Path(path, name).write_text(text)

    def _v2_ctrl_files(self, h: Hierarchy, c: str) -> dict[str, str]:
        files = dict(V2_FILES.get(c, {}))
        if c == "memory" and h.swap:
            files.update(V2_SWAP)
        return files

    def _rmdir(self, path: str) -> None:
        h = self._hier(path)
        if path == h.mount:
            raise OSError(errno.EBUSY, "the root cgroup cannot be removed", path)
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "no such cgroup", path)
        if self.subdirs(path) or self._own_pids(path):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for f in os.listdir(path):
            os.unlink(os.path.join(path, f))
        os.rmdir(path)
        self.log.append(("rmdir", path, ""))

    def read(self, path: str) -> str:
        name = os.path.basename(path)
        d = os.path.dirname(path)
        if name == "cgroup.events" and os.path.isdir(d) and os.path.exists(path):
            populated = 1 if self._subtree_pids(d) else 0
            frozen = 1 if Path(d, "cgroup.freeze").read_text().strip() == "1" and d not in self._hier(d).frozen_stuck else 0
            return f"populated {populated}\nfrozen {frozen}\n"
        if name == "freezer.state" and os.path.exists(path):
            state = Path(path).read_text().strip()
            if state == "FROZEN" and d in self._hier(d).frozen_stuck:
                return "FREEZING\n"
            return state + "\n"
        return super().read(path)

    def write(self, path: str, value: str) -> None:
        self.log.append(("write", path, value))
        name = os.path.basename(path)
        d = os.path.dirname(path)
        if not os.path.isfile(path):
            raise _err(path, value, errno.ENOENT)
        h = self._hier(path)
        if name in ("cgroup.procs", "tasks"):
            pid = int(value)
            if h.version == 2 and d != h.mount and Path(d, "cgroup.subtree_control").read_text().split():
                raise _err(path, value, errno.EBUSY)
            if h.version == 1 and "cpuset" in h.controllers:
                if not Path(d, "cpuset.cpus").read_text().strip() or not Path(d, "cpuset.mems").read_text().strip():
                    raise _err(path, value, errno.ENOSPC)
            self._move(d, pid)
            return
        if name == "cgroup.subtree_control":
            self._subtree_control(h, d, path, value)
            return
        if name == "cgroup.kill" and value.strip() == "1":
            for pid in self._subtree_pids(d):
                self.kill(pid, signal.SIGKILL)
            return
        if name == "cpuset.cpus" and h.version == 1 and value.strip():
            parent = set(_ids(Path(d).parent.joinpath("cpuset.cpus").read_text()))
            if not set(_ids(value)) <= parent:
                raise _err(path, value, errno.EINVAL)
        if name == "memory.memsw.limit_in_bytes":
            mem = int(Path(d, "memory.limit_in_bytes").read_text())
            if int(value) != -1 and int(value) < mem:
                raise _err(path, value, errno.EINVAL)
        if name == "memory.limit_in_bytes" and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
            if int(value) > int(Path(d, "memory.memsw.limit_in_bytes").read_text()):
                raise _err(path, value, errno.EINVAL)
        if name in ("devices.allow", "devices.deny") and h.version == 1:
            self._devices(d, name == "devices.allow", value)
            return
        if name == "io.max":
            # the kernel keeps one line per device
            dev = value.split()[0]
            lines = [ln for ln in Path(path).read_text().splitlines() if ln.split()[:1] != [dev]]
            Path(path).write_text("\n".join(lines + [value]) + "\n")
            return
        Path(path).write_text(value)

    def _subtree_control(self, h: Hierarchy, d: str, path: str, value: str) -> None:
        have = set(Path(d, "cgroup.controllers").read_text().split())
        enabled = Path(path).read_text().split()
        if d != h.mount or Path(d, "cgroup.type").exists():  # not the real root
            if self._own_pids(d):
                raise _err(path, value, errno.EBUSY)
        for tok in value.split():
            op, c = tok[0], tok[1:]
            if op not in "+-" or c not in have:
                raise _err(path, value, errno.ENOENT)
            if op == "+" and c not in enabled:
                enabled.append(c)
                for child in self.subdirs(d):
                    for name, text in self._v2_ctrl_files(h, c).items():
                        Path(child, name).write_text(text)
            elif op == "-" and c in enabled:
                enabled.remove(c)
        Path(path).write_text(" ".join(enabled))
        for child in self.subdirs(d):
            Path(child, "cgroup.controllers").write_text(" ".join(enabled))

    def _devices(self, d: str, allow: bool, value: str) -> None:
        """devices.rst: "a" to devices.deny empties the list, "a" to
        devices.allow allows everything, anything else adds or removes one
        entry of the form "TYPE MAJOR:MINOR ACCESS"."""
        rule = value.strip()
        listing = Path(d, "devices.list")
        entries = listing.read_text().splitlines()
        if rule == "a":
            entries = ["a *:* rwm"] if allow else []
        else:
            parts = rule.split()
            if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1] or not parts[2] or \
                    set(parts[2]) - set("rwm"):
                raise _err(str(listing.with_name("devices.allow" if allow else "devices.deny")), value, errno.EINVAL)
            if allow:
                if "a *:* rwm" not in entries and rule not in entries:
                    entries.append(rule)
            else:
                entries = [e for e in entries if e != rule]
        listing.write_text("".join(f"{e}\n" for e in entries))

    def attach_device_filter(self, path: str, program: bytes) -> None:
        self.log.append(("attach-device-filter", path, f"{len(program) // 8} instructions"))
        if not os.path.isdir(path) or self._hier(path).version != 2:
            raise SyscallError("attaching the device filter (bpf BPF_PROG_ATTACH) to", errno.EBADF, path)
        self.device_filters.setdefault(path, []).append(program)

    def rmdir(self, path: str) -> None:
        self._rmdir(path)
        self.device_filters.pop(path, None)  # the kernel detaches a removed cgroup's programs

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        self.killed.append((pid, sig))
        if sig == signal.SIGKILL and pid not in self.unkillable:
            for h in self.hierarchies.values():
                for d in self._all_dirs(h.mount):
                    self._remove_pid(d, pid)

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def monotonic(self) -> float:
        return self.clock

    # -- helpers ---------------------------------------------------------------------
    def _all_dirs(self, top: str) -> list[str]:
        out = [top]
        for sub in self.subdirs(top):
            out.extend(self._all_dirs(sub))
        return out

    def _own_pids(self, d: str) -> list[int]:
        p = Path(d, "cgroup.procs")
        return [int(x) for x in p.read_text().split()] if p.exists() else []

    def _subtree_pids(self, d: str) -> list[int]:
        return [p for sub in self._all_dirs(d) for p in self._own_pids(sub)]

    def _remove_pid(self, d: str, pid: int) -> None:
        for name in ("cgroup.procs", "tasks"):
            p = Path(d, name)
            if p.exists():
                pids = [x for x in p.read_text().split() if int(x) != pid]
                p.write_text("".join(f"{x}\n" for x in pids))

    def _move(self, d: str, pid: int) -> None:
        h = self._hier(d)
        for other in self._all_dirs(h.mount):
            self._remove_pid(other, pid)
        for name in ("cgroup.procs", "tasks"):
            p = Path(d, name)
            if p.exists():
                p.write_text(p.read_text() + f"{pid}\n")


def _ids(text: str) -> list[int]:
    from minicontainer.units import parse_cpuset

    return list(parse_cpuset(text.strip())) if text.strip() else []
