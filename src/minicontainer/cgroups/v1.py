"""The cgroup v1 manager (v1 and hybrid hosts, like this project's CI).

In v1 every controller (or group of co-mounted controllers, e.g.
``cpu,cpuacct``) is its own hierarchy, mounted at
/sys/fs/cgroup/<controller>, so a container gets one directory in each:
``/sys/fs/cgroup/memory/minicontainer/<id>``, ``.../pids/minicontainer/<id>``
and so on, and its pid is written to the ``cgroup.procs`` of each
(cgroups(7), "Cgroups version 1"). The limit files are those of the kernel's
Documentation/admin-guide/cgroup-v1/ ("v1 docs" below).

Two v1 quirks the plan handles:

- A new **cpuset** cgroup starts with empty ``cpuset.cpus`` and
  ``cpuset.mems``, and a cgroup with either empty cannot take a process
  (ENOSPC). Each level we create copies them from its parent first.
- **memory.memsw.limit_in_bytes** (memory + swap) exists only with swap
  accounting, and must never be below ``memory.limit_in_bytes``; the memory
  limit is written first.
"""

from __future__ import annotations

from minicontainer import units
from minicontainer.cgroups import devices
from minicontainer.cgroups.base import CgroupManager, CgroupView, CgroupWrite, required_controllers, wait_until
from minicontainer.cgroups.files import CgroupFs, read_int, read_keyed
from minicontainer.cgroups.resources import CPU_PERIOD_US, UNLIMITED, Resources
from minicontainer.errors import CgroupError, SyscallError

# The v1 controllers a container joins, when the host has them mounted.
# freezer is for pause and for a race-free kill; cpuacct for CPU statistics;
# devices for the device allow-list (devices.py), which must be there.
CONTROLLERS = ("freezer", "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices")

DOC = "v1 docs"

# v1 prints "no limit" as the largest page-aligned 63-bit number.
_UNLIMITED_V1 = 2**62


def hierarchies(mounts: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """mount point -> the controllers we use on it, freezer's hierarchy first."""
    out: dict[str, list[str]] = {}
    for c in CONTROLLERS:
        if c in mounts:
            out.setdefault(mounts[c].rstrip("/"), []).append(c)
    return {m: tuple(cs) for m, cs in out.items()}


def plan_v1(mounts: dict[str, str], relative: str, r: Resources, *, memsw: bool) -> list[CgroupWrite]:
    """The steps for a container cgroup at ``<each mount>/relative`` (pure).

    ``memsw``: whether the host has swap accounting (memory.memsw.* files).
    """
    for ctrl, flag in required_controllers(r, io="blkio").items():
        if ctrl not in mounts:
            raise CgroupError(
                f"{flag} needs the {ctrl} controller, which is not mounted on this host",
                f"mount it: mkdir -p /sys/fs/cgroup/{ctrl} && mount -t cgroup -o {ctrl} cgroup /sys/fs/cgroup/{ctrl}",
            )
    if "devices" not in mounts and not r.all_devices:
        # runc: "The non-presence of the devices subsystem is considered fatal for security reasons."
        raise CgroupError(
            "the devices controller is not mounted on this host: without it root in the container could open "
            "any device node it creates (a host disk too)",
            "mount it: mkdir -p /sys/fs/cgroup/devices && mount -t cgroup -o devices cgroup /sys/fs/cgroup/devices "
            "(or --privileged, which allows every device)",
        )
    if r.memory_swap is not None and not memsw:
        raise CgroupError(
            "--memory-swap needs swap accounting (memory.memsw.limit_in_bytes), which this kernel has off",
            "boot with swapaccount=1 on the kernel command line, or drop --memory-swap",
        )
    steps: list[CgroupWrite] = []
    parts = relative.split("/")
    for mount, ctrls in hierarchies(mounts).items():
        path = mount
        for i, part in enumerate(parts):
            parent, path = path, f"{path}/{part}"
            is_leaf = i == len(parts) - 1
            steps.append(CgroupWrite(
                file=path, value="", action="create", stage="create",
                why=(f"the container's cgroup in the {','.join(ctrls)} hierarchy" if is_leaf else
                     f"a parent cgroup in the {','.join(ctrls)} hierarchy (v1: one tree per controller)"),
                counterpart="one directory in the unified v2 tree",
            ))
            if "cpuset" in ctrls:
                for name in ("cpuset.cpus", "cpuset.mems"):
                    steps.append(CgroupWrite(
                        file=f"{path}/{name}", value="", source=f"{parent}/{name}", stage="create",
                        why=(f"a new v1 cpuset cgroup starts with an empty {name} and refuses processes "
                             "(ENOSPC) until it is set: copy the parent's (v1 docs, cpusets.rst)"),
                        counterpart=f"{name} (v2 inherits the parent's when empty)",
                    ))
    leaf = {c: f"{m.rstrip('/')}/{relative}" for c, m in mounts.items()}
    steps.extend(_limits(leaf, r, memsw))
    if "devices" in mounts:
        steps.extend(_device_rules(leaf["devices"], r))
    for mount in hierarchies(mounts):
        steps.append(CgroupWrite(
            file=f"{mount}/{relative}/cgroup.procs", value="<pid>", action="join", stage="join",
            why="the child joins its cgroup in every hierarchy before it execs",
            counterpart="cgroup.procs (once, in the unified tree)",
        ))
    return steps


def _limits(leaf: dict[str, str], r: Resources, memsw: bool) -> list[CgroupWrite]:
    out: list[CgroupWrite] = []

    def w(ctrl: str, name: str, value: object, why: str, counterpart: str, flag: str,
          optional: bool = False) -> None:
        out.append(CgroupWrite(file=f"{leaf[ctrl]}/{name}", value=str(value), why=why,
                               counterpart=counterpart, flag=flag, optional=optional))

    if r.memory is not None:
        w("memory", "memory.limit_in_bytes", r.memory,
          f"hard memory limit of {units.format_size(r.memory)}: above it the kernel reclaims, then the OOM "
          f"killer kills a process of this cgroup ({DOC}, memory.rst)",
          "memory.max", "--memory")
    if r.memory_swap is not None:
        w("memory", "memory.memsw.limit_in_bytes", "-1" if r.memory_swap == UNLIMITED else r.memory_swap,
          "memory plus swap (v1 counts them together; written after the memory limit, which it must not be "
          "below)",
          "memory.swap.max (swap alone = --memory-swap - --memory)", "--memory-swap")
    elif r.memory is not None and memsw:
        w("memory", "memory.memsw.limit_in_bytes", 2 * r.memory,
          "Docker's default without --memory-swap: memory + swap = twice the memory limit",
          "memory.swap.max (swap alone)", "--memory", optional=True)
    if r.memory_reservation is not None:
        w("memory", "memory.soft_limit_in_bytes", r.memory_reservation,
          "soft limit: under memory pressure the kernel pushes the cgroup back towards it",
          "memory.low", "--memory-reservation")
    if r.cpus is not None:
        w("cpu", "cpu.cfs_period_us", CPU_PERIOD_US, "the CFS bandwidth period (sched(7))",
          "cpu.max (second number)", "--cpus")
        w("cpu", "cpu.cfs_quota_us", r.cpu_quota_us,
          f"at most {r.cpu_quota_us} us of CPU time per period = {r.cpus / 1e9:g} CPUs (CFS bandwidth control)",
          "cpu.max (first number)", "--cpus")
    if r.cpu_shares is not None:
        w("cpu", "cpu.shares", r.cpu_shares, "relative CPU weight under contention (1024 is the default)",
          "cpu.weight (converted)", "--cpu-shares")
    if r.cpuset_cpus is not None:
        w("cpuset", "cpuset.cpus", units.format_cpuset(r.cpuset_cpus), "the CPUs the container may run on",
          "cpuset.cpus", "--cpuset-cpus")
    if r.cpuset_mems is not None:
        w("cpuset", "cpuset.mems", units.format_cpuset(r.cpuset_mems), "the memory nodes it may use",
          "cpuset.mems", "--cpuset-mems")
    if r.pids_limit is not None:
        w("pids", "pids.max", "max" if r.pids_limit == UNLIMITED else r.pids_limit,
          "the most processes and threads at once; fork() fails with EAGAIN beyond it (pids.rst)",
          "pids.max", "--pids-limit")
    for ma, mi, rate in r.device_read_bps:
        w("blkio", "blkio.throttle.read_bps_device", f"{ma}:{mi} {rate}",
          f"throttle reads from device {ma}:{mi} to {units.format_size(rate)}/s (blkio-controller.rst)",
          "io.max rbps=", "--device-read-bps")
    for ma, mi, rate in r.device_write_bps:
        w("blkio", "blkio.throttle.write_bps_device", f"{ma}:{mi} {rate}",
          f"throttle writes to device {ma}:{mi} to {units.format_size(rate)}/s (blkio-controller.rst)",
          "io.max wbps=", "--device-write-bps")
    return out


def _device_rules(leaf: str, r: Resources) -> list[CgroupWrite]:
    """The device allow-list (devices.py): deny everything, then allow each rule
    (v1 docs, devices.rst: a new cgroup starts with its parent's list)."""
    v2 = "the eBPF device program (attached with bpf(2))"
    if r.all_devices:
        return []  # --privileged: the cgroup keeps its parent's list, as v2 attaches no program
    out = [CgroupWrite(
        file=f"{leaf}/devices.deny", value="a",
        why=("root in the container keeps CAP_MKNOD, so any device node it makes would open (a host disk "
             "too): empty the allow-list first, as runc and crun do (devices.rst)"),
        counterpart=v2,
    )]
    extra = set(r.devices)
    for rule in devices.rules_for(r.devices):
        out.append(CgroupWrite(
            file=f"{leaf}/devices.allow", value=str(rule),
            why=f"allow {rule.name or 'this device'}" + (
                " (asked by --device too)" if rule in extra and not rule.name.startswith("--device") else ""),
            counterpart=v2, flag="--device" if rule in extra else "",
        ))
    return out


class V1Manager(CgroupManager):
    version = "v1"

    def __init__(self, container_id: str, resources: Resources | None = None, *, mounts: dict[str, str],
                 fs: CgroupFs | None = None, timeout: float = 10.0):
        super().__init__(container_id, resources, fs=fs, timeout=timeout)
        self.mounts = {c: m.rstrip("/") for c, m in mounts.items() if c in CONTROLLERS}
        if not self.mounts:
            raise CgroupError("no cgroup v1 controller is mounted",
                              "mount them under /sys/fs/cgroup/<controller>, or use a cgroup v2 host")

    def leaves(self) -> list[str]:
        return [f"{m}/{self.relative_path}" for m in hierarchies(self.mounts)]

    def view(self) -> CgroupView:
        return CgroupView("v1", tuple((m.rsplit("/", 1)[-1], f"{m}/{self.relative_path}", ctrls)
                                      for m, ctrls in hierarchies(self.mounts).items()))

    def _leaf(self, ctrl: str) -> str | None:
        m = self.mounts.get(ctrl)
        return f"{m}/{self.relative_path}" if m else None

    def plan(self, resources: Resources | None = None) -> list[CgroupWrite]:
        r = resources if resources is not None else self.resources
        memsw = "memory" in self.mounts and self.fs.exists(f"{self.mounts['memory']}/memory.memsw.limit_in_bytes")
        return plan_v1(self.mounts, self.relative_path, r, memsw=memsw)

    def update_order(self, writes: list[CgroupWrite]) -> list[CgroupWrite]:
        """v1 refuses memory.limit_in_bytes above memory.memsw.limit_in_bytes
        (EINVAL, v1 docs memory.rst 2.5): when the memory limit grows, the
        memory+swap limit has to grow first."""
        memory = [s for s in writes if s.file.endswith("/memory.limit_in_bytes")]
        memsw = [s for s in writes if s.file.endswith("/memory.memsw.limit_in_bytes")]
        if not memory or not memsw:
            return writes
        current = self._opt_int("memory", "memory.limit_in_bytes")
        if current is not None and int(memory[0].value) <= current:
            return writes  # shrinking: memory first, then memory+swap (as planned)
        rest = [s for s in writes if s not in memsw]
        i = rest.index(memory[0])
        return rest[:i] + memsw + rest[i:]

    def missing_hint(self, name: str, controller: str) -> str:
        if name.startswith("memory.memsw"):
            return "swap accounting is off: boot with swapaccount=1, or drop --memory-swap"
        return f"mount it: mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}"

    # -- freezer -------------------------------------------------------------------
    def _state(self) -> str:
        leaf = self._leaf("freezer")
        try:
            return self.fs.read(f"{leaf}/freezer.state").strip() if leaf else "THAWED"
        except SyscallError:
            return "THAWED"

    def is_frozen(self) -> bool:
        return self._state() != "THAWED"

    def _need_freezer(self) -> str:
        leaf = self._leaf("freezer")
        if leaf is None:
            raise CgroupError("pause needs the freezer controller, which is not mounted on this host",
                              "mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer")
        return leaf

    def freeze(self) -> None:
        leaf = self._need_freezer()
        self.fs.write(f"{leaf}/freezer.state", "FROZEN")
        # FREEZING means some task has not stopped yet (freezer-subsystem.rst)
        if not wait_until(self.fs, lambda: self._state() == "FROZEN", self.timeout):
            self.fs.write(f"{leaf}/freezer.state", "THAWED")
            raise CgroupError(f"{leaf} did not freeze within {self.timeout:g}s",
                              "a process may be stuck in the kernel; it was thawed again")

    def thaw(self) -> None:
        leaf = self._need_freezer()
        self.fs.write(f"{leaf}/freezer.state", "THAWED")
        if not wait_until(self.fs, lambda: self._state() == "THAWED", self.timeout):
            raise CgroupError(f"{leaf} did not thaw within {self.timeout:g}s")

    # -- killing ------------------------------------------------------------------
    def _kill_everything_once(self) -> None:
        leaf = self._leaf("freezer")
        if leaf is None or not self.fs.is_dir(leaf):
            self._signal_all(self.procs())
            return
        # v1 has no cgroup.kill. Freeze so nothing forks or exits meanwhile
        # (a frozen process keeps its pid, so we never signal a reused one),
        # SIGKILL everyone, then thaw: frozen v1 tasks die when thawed.
        state = f"{leaf}/freezer.state"
        try:
            self.fs.write(state, "FROZEN")
            wait_until(self.fs, lambda: self._state() == "FROZEN", min(1.0, self.timeout))
        except SyscallError:
            pass
        self._signal_all(self.procs())
        try:
            self.fs.write(state, "THAWED")
        except SyscallError:
            pass

    # -- numbers ------------------------------------------------------------------
    def _opt_int(self, ctrl: str, name: str) -> int | None:
        leaf = self._leaf(ctrl)
        if leaf is None:
            return None
        try:
            return read_int(self.fs, f"{leaf}/{name}")
        except (SyscallError, ValueError):
            return None

    def _opt_keyed(self, ctrl: str, name: str) -> dict[str, int]:
        leaf = self._leaf(ctrl)
        if leaf is None:
            return {}
        try:
            return read_keyed(self.fs, f"{leaf}/{name}")
        except SyscallError:
            return {}

    def stats(self) -> dict:
        limit = self._opt_int("memory", "memory.limit_in_bytes")
        if limit is not None and limit >= _UNLIMITED_V1:
            limit = None
        usage_ns = self._opt_int("cpuacct", "cpuacct.usage")
        cpu = self._opt_keyed("cpu", "cpu.stat")
        throttled_ns = cpu.get("throttled_time")
        read = write = None
        leaf = self._leaf("blkio")
        if leaf is not None:
            try:
                text = self.fs.read(f"{leaf}/blkio.throttle.io_service_bytes_recursive")
                read = write = 0
                for line in text.splitlines():
                    f = line.split()
                    if len(f) == 3 and f[1] == "Read":
                        read += int(f[2])
                    elif len(f) == 3 and f[1] == "Write":
                        write += int(f[2])
            except (SyscallError, ValueError):
                pass
        quota = self._opt_int("cpu", "cpu.cfs_quota_us")
        period = self._opt_int("cpu", "cpu.cfs_period_us")
        return {
            "memory_current": self._opt_int("memory", "memory.usage_in_bytes"),
            "memory_limit": limit,
            "memory_peak": self._opt_int("memory", "memory.max_usage_in_bytes"),
            # page cache the kernel drops first; docker stats leaves it out
            # of "usage" (memory.rst: "total_" = this cgroup and below)
            "memory_inactive_file": self._opt_keyed("memory", "memory.stat").get("total_inactive_file"),
            "cpus": quota / period if quota is not None and quota > 0 and period else None,
            "cpu_usage_usec": usage_ns // 1000 if usage_ns is not None else None,
            "cpu_throttled_usec": throttled_ns // 1000 if throttled_ns is not None else None,
            "cpu_nr_throttled": cpu.get("nr_throttled"),
            "pids_current": self._opt_int("pids", "pids.current"),
            "pids_limit": self._opt_int("pids", "pids.max"),
            "io_read_bytes": read,
            "io_write_bytes": write,
        }

    def _oom_kills(self) -> int:
        # "oom_kill N" in memory.oom_control since Linux 4.13 (memory.rst).
        # Older kernels only count how often the limit was hit (failcnt): a
        # hit is not always a kill, so this is a best guess there.
        oom = self._opt_keyed("memory", "memory.oom_control")
        if "oom_kill" in oom:
            return oom["oom_kill"]
        return 1 if (self._opt_int("memory", "memory.failcnt") or 0) > 0 else 0

    def _pids_max_hits(self) -> int:
        return self._opt_keyed("pids", "pids.events").get("max", 0)
