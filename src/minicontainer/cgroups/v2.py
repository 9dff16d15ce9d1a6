"""The cgroup v2 (unified hierarchy) manager.

One directory per container, ``<mount>/minicontainer/<id>``, with the limits
written to the files of Documentation/admin-guide/cgroup-v2.rst (quoted
below as "cgroup-v2 docs"). Two rules of v2 shape the plan:

- **Controllers are handed down.** A cgroup's children can use a controller
  only if it is listed in the cgroup's ``cgroup.subtree_control``, so we
  write ``+cpu +memory ...`` there at each level from the mount down to the
  container's parent ("Enabling and Disabling", cgroup-v2 docs).
- **No internal processes.** A non-root cgroup that holds processes cannot
  hand controllers down (the write fails with EBUSY; cgroups(7), "Cgroups v2
  'no internal processes' rule"). The real root is exempt, but inside a
  privileged Docker container the mount root is the root of a cgroup
  *namespace*: a non-root cgroup holding the container's own processes
  (docker's init, our runtime). The plan then first moves those processes
  into a leaf, ``<mount>/init``, as Docker-in-Docker and the seed's "other
  procs" step do.

The survey (what exists, what is enabled, who is inside) is read first;
``plan_v2`` is a pure function of it, so unit tests feed it by hand.
"""

from __future__ import annotations

import errno
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer import units
from minicontainer.cgroups import devices
from minicontainer.cgroups.base import CgroupManager, CgroupView, CgroupWrite, required_controllers, wait_until
from minicontainer.cgroups.files import CgroupFs, read_int, read_keyed, read_pids
from minicontainer.cgroups.resources import CPU_PERIOD_US, UNLIMITED, Resources
from minicontainer.errors import CgroupError, SyscallError

# The controllers we enable for every container when the host offers them
# (like runc: stats and later updates need them even without a limit).
CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
INIT_LEAF = "init"

DOC = "cgroup-v2 docs"


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) -> cpu.weight (1..10000, default 100).

    The linear map of runc/crun and the kernel's cgroup-v2 conversion notes:
    1 + ((shares - 2) * 9999) / 262142, in integer arithmetic.
    """
    return 1 + ((shares - 2) * 9999) // 262142


@dataclass(frozen=True)
class Level:
    """One directory on the way from the mount to the container's parent."""

    path: str
    exists: bool
    controllers: frozenset[str] = frozenset()  # cgroup.controllers
    subtree: frozenset[str] = frozenset()  # cgroup.subtree_control
    procs: tuple[int, ...] = ()
    is_root: bool = False  # the hierarchy's real root: no cgroup.type file, exempt from the rule


def survey(fs: CgroupFs, mount: str, parent_relative: str) -> tuple[Level, ...]:
    """Read each level from ``mount`` down to ``mount/parent_relative``."""
    paths = [mount]
    for part in [p for p in parent_relative.split("/") if p]:
        paths.append(f"{paths[-1]}/{part}")
    levels = []
    for p in paths:
        if not fs.is_dir(p):
            levels.append(Level(path=p, exists=False))
            continue
        levels.append(Level(
            path=p,
            exists=True,
            controllers=frozenset(_read_words(fs, f"{p}/cgroup.controllers")),
            subtree=frozenset(_read_words(fs, f"{p}/cgroup.subtree_control")),
            procs=tuple(read_pids(fs, f"{p}/cgroup.procs")),
            is_root=not fs.exists(f"{p}/cgroup.type"),
        ))
    return tuple(levels)


def _read_words(fs: CgroupFs, path: str) -> list[str]:
    try:
        return fs.read(path).split()
    except SyscallError:
        return []


def plan_v2(mount: str, relative: str, r: Resources, levels: tuple[Level, ...]) -> list[CgroupWrite]:
    """The steps for a container cgroup at ``mount/relative`` (pure)."""
    leaf = f"{mount}/{relative}"
    available = levels[0].controllers
    for ctrl, flag in required_controllers(r).items():
        if ctrl not in available:
            raise CgroupError(
                f"{flag} needs the {ctrl} controller, which the cgroup v2 hierarchy at {mount} does not offer",
                f"{mount}/cgroup.controllers lists only: {' '.join(sorted(available)) or 'nothing'}; "
                f"on a hybrid host the controller is taken by cgroup v1, elsewhere enable it in the parent's "
                f"cgroup.subtree_control",
            )
    want = [c for c in CONTROLLERS if c in available]
    steps: list[CgroupWrite] = []

    for i, lvl in enumerate(levels):
        if not lvl.exists:
            steps.append(CgroupWrite(file=lvl.path, value="", action="create", stage="create",
                                     why="a cgroup is a directory in cgroupfs; the kernel fills in its files"))
        need = [c for c in want if c not in lvl.subtree]
        if not need:
            continue
        if lvl.exists and lvl.procs and not lvl.is_root:
            if i > 0:
                raise CgroupError(
                    f"cannot enable controllers in {lvl.path}: it holds processes "
                    f"({', '.join(map(str, lvl.procs[:5]))})",
                    "cgroup v2's 'no internal processes' rule (cgroups(7)) forbids it; "
                    "choose a --cgroup-parent that has no processes of its own",
                )
            init = f"{lvl.path}/{INIT_LEAF}"
            steps.append(CgroupWrite(
                file=init, value="", action="create", stage="create",
                why="a leaf for the processes that live in the root of this cgroup namespace",
            ))
            steps.append(CgroupWrite(
                file=f"{init}/cgroup.procs", value="", action="move-out", stage="create",
                source=f"{lvl.path}/cgroup.procs",
                why=("cgroups(7) 'no internal processes': this cgroup namespace's root is not the real root "
                     "(we run inside a container), and a cgroup holding processes cannot enable controllers "
                     "for its children, so its processes move into a leaf first"),
            ))
        steps.append(CgroupWrite(
            file=f"{lvl.path}/cgroup.subtree_control",
            value=" ".join(f"+{c}" for c in need),
            stage="create",
            why=f"let the cgroups below use these controllers ({DOC}, 'Enabling and Disabling')",
            counterpart="none: v1 mounts each controller as a hierarchy of its own",
        ))
    steps.append(CgroupWrite(file=leaf, value="", action="create", stage="create",
                             why="the container's own cgroup"))
    steps.extend(_limits(leaf, r))
    steps.extend(_device_filter(leaf, r))
    steps.append(CgroupWrite(
        file=f"{leaf}/cgroup.procs", value="<pid>", action="join", stage="join",
        why="the child joins its cgroup before it execs, so it never runs without its limits",
        counterpart="cgroup.procs (in each v1 hierarchy)",
    ))
    return steps


def _limits(leaf: str, r: Resources) -> list[CgroupWrite]:
    out: list[CgroupWrite] = []

    def w(name: str, value: object, why: str, counterpart: str, flag: str, optional: bool = False) -> None:
        out.append(CgroupWrite(file=f"{leaf}/{name}", value=str(value), why=why, counterpart=counterpart,
                               flag=flag, optional=optional))

    if r.memory is not None:
        w("memory.max", r.memory,
          f"hard memory limit of {units.format_size(r.memory)}: above it the kernel reclaims, then the OOM "
          f"killer kills a process of this cgroup ({DOC}, memory.max)",
          "memory.limit_in_bytes", "--memory")
    if r.memory_swap is not None:
        swap = r.swap_only
        w("memory.swap.max", "max" if swap == UNLIMITED else swap,
          "swap allowed besides memory: --memory-swap minus --memory (v2 counts swap alone)",
          "memory.memsw.limit_in_bytes (memory + swap)", "--memory-swap")
    elif r.memory is not None:
        w("memory.swap.max", r.memory,
          "Docker's default without --memory-swap: as much swap as memory (skipped if the host has no swap "
          "accounting)",
          "memory.memsw.limit_in_bytes (memory + swap)", "--memory", optional=True)
    if r.memory_reservation is not None:
        w("memory.low", r.memory_reservation,
          "best-effort memory protection: reclaimed only when nothing else can be (memory.low)",
          "memory.soft_limit_in_bytes", "--memory-reservation")
    if r.cpus is not None:
        w("cpu.max", f"{r.cpu_quota_us} {CPU_PERIOD_US}",
          f"at most {r.cpu_quota_us} us of CPU time every {CPU_PERIOD_US} us = "
          f"{r.cpus / 1e9:g} CPUs (CFS bandwidth control)",
          "cpu.cfs_quota_us + cpu.cfs_period_us", "--cpus")
    if r.cpu_shares is not None:
        w("cpu.weight", cpu_weight(r.cpu_shares),
          f"relative CPU weight: shares {r.cpu_shares} -> 1 + ((shares - 2) * 9999) / 262142",
          "cpu.shares", "--cpu-shares")
    if r.cpuset_cpus is not None:
        w("cpuset.cpus", units.format_cpuset(r.cpuset_cpus), "the CPUs the container may run on (cpuset(7))",
          "cpuset.cpus", "--cpuset-cpus")
    if r.cpuset_mems is not None:
        w("cpuset.mems", units.format_cpuset(r.cpuset_mems), "the memory nodes it may allocate from (cpuset(7))",
          "cpuset.mems", "--cpuset-mems")
    if r.pids_limit is not None:
        w("pids.max", "max" if r.pids_limit == UNLIMITED else r.pids_limit,
          "the most processes and threads at once; fork() fails with EAGAIN beyond it (pids.max)",
          "pids.max", "--pids-limit")
    devices: dict[tuple[int, int], dict[str, int]] = {}
    for ma, mi, rate in r.device_read_bps:
        devices.setdefault((ma, mi), {})["rbps"] = rate
    for ma, mi, rate in r.device_write_bps:
        devices.setdefault((ma, mi), {})["wbps"] = rate
    for (ma, mi), rates in sorted(devices.items()):
        value = f"{ma}:{mi} " + " ".join(f"{k}={v}" for k, v in sorted(rates.items()))
        flag = "--device-read-bps" if "rbps" in rates else "--device-write-bps"
        w("io.max", value, f"throttle block I/O on device {ma}:{mi} (bytes per second, io.max)",
          "blkio.throttle.read_bps_device / write_bps_device", flag)
    return out


def _device_filter(leaf: str, r: Resources) -> list[CgroupWrite]:
    """The device allow-list as an eBPF program (devices.py); none with --privileged."""
    if r.all_devices:
        return []
    rules = devices.rules_for(r.devices)
    return [CgroupWrite(
        file=leaf, value=devices.summary(rules), action="attach-device-filter",
        program=devices.filter_program(rules),
        why=("root in the container keeps CAP_MKNOD, so any device node it makes would open (a host disk "
             "too): v2 has no devices.allow file, so, as runc and crun do, an eBPF program of type "
             "BPF_PROG_TYPE_CGROUP_DEVICE decides every open and mknod; bpf(2) BPF_PROG_LOAD, then "
             "BPF_PROG_ATTACH to the cgroup's directory fd (cgroup-v2 docs, 'Device controller')"),
        counterpart="devices.deny 'a' then devices.allow per rule (v1)",
        flag="--device" if r.devices else "",
    )]


class V2Manager(CgroupManager):
    version = "v2"

    def __init__(self, container_id: str, resources: Resources | None = None, *, mount: str,
                 fs: CgroupFs | None = None, timeout: float = 10.0):
        super().__init__(container_id, resources, fs=fs, timeout=timeout)
        self.mount = mount.rstrip("/") or "/"

    def leaves(self) -> list[str]:
        return [f"{self.mount}/{self.relative_path}"]

    def view(self) -> CgroupView:
        return CgroupView("v2", (("", self.path, ()),))

    def plan(self, resources: Resources | None = None) -> list[CgroupWrite]:
        r = resources if resources is not None else self.resources
        parent_rel = self.relative_path.rsplit("/", 1)[0]
        return plan_v2(self.mount, self.relative_path, r, survey(self.fs, self.mount, parent_rel))

    def missing_hint(self, name: str, controller: str) -> str:
        if name.startswith("memory.swap"):
            return ("the kernel does not account swap here (CONFIG_MEMCG_SWAP, or swapaccount=0 on the "
                    "kernel command line); drop --memory-swap or enable swap accounting")
        return (f"enable the {controller} controller: echo +{controller} > <parent>/cgroup.subtree_control, "
                f"or run on a host whose cgroup2 offers it")

    # -- freezer -------------------------------------------------------------------
    def _events(self, path: str | None = None) -> dict[str, int]:
        try:
            return read_keyed(self.fs, f"{path or self.path}/cgroup.events")
        except SyscallError:
            return {}

    def is_frozen(self) -> bool:
        try:
            return self.fs.read(f"{self.path}/cgroup.freeze").strip() == "1"
        except SyscallError:
            return False

    def freeze(self) -> None:
        self.fs.write(f"{self.path}/cgroup.freeze", "1")
        # cgroup.freeze is a request; "frozen 1" in cgroup.events is the answer (cgroup-v2 docs, cgroup.freeze)
        if not wait_until(self.fs, lambda: self._events().get("frozen") == 1, self.timeout):
            self.fs.write(f"{self.path}/cgroup.freeze", "0")
            raise CgroupError(f"{self.path} did not freeze within {self.timeout:g}s",
                              "a process may be stuck in the kernel; it was thawed again")

    def thaw(self) -> None:
        self.fs.write(f"{self.path}/cgroup.freeze", "0")
        if not wait_until(self.fs, lambda: self._events().get("frozen") == 0, self.timeout):
            raise CgroupError(f"{self.path} did not thaw within {self.timeout:g}s")

    # -- killing and removal ------------------------------------------------------
    def _kill_everything_once(self) -> None:
        kill_file = f"{self.path}/cgroup.kill"
        if self.fs.exists(kill_file):
            # Linux 5.14+: SIGKILL to the whole subtree at once, racing forks
            # included (cgroup-v2 docs, cgroup.kill).
            try:
                self.fs.write(kill_file, "1")
            except SyscallError as e:
                if e.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
            return
        # Older kernels: freeze so nothing forks or exits (a pid read from
        # cgroup.procs cannot be reused while its process is frozen), SIGKILL
        # each one, thaw so the kills take effect. Fatal signals reach frozen
        # v2 tasks anyway; freezing is about the race.
        freeze = f"{self.path}/cgroup.freeze"
        try:
            self.fs.write(freeze, "1")
            wait_until(self.fs, lambda: self._events().get("frozen") == 1, min(1.0, self.timeout))
        except SyscallError:
            pass
        self._signal_all(self.procs())
        try:
            self.fs.write(freeze, "0")
        except SyscallError:
            pass

    def _wait_empty(self, path: str, deadline: float) -> None:
        # rmdir right after the last process exits can fail with EBUSY until
        # the kernel has finished its exit; "populated 0" says it has.
        wait_until(self.fs, lambda: self._events(path).get("populated", 0) == 0,
                   max(0.0, deadline - self.fs.monotonic()))

    # -- numbers ------------------------------------------------------------------
    def _opt_int(self, name: str) -> int | None:
        try:
            return read_int(self.fs, f"{self.path}/{name}")
        except (SyscallError, ValueError):
            return None

    def _opt_keyed(self, name: str) -> dict[str, int]:
        try:
            return read_keyed(self.fs, f"{self.path}/{name}")
        except SyscallError:
            return {}

    def stats(self) -> dict:
        cpu = self._opt_keyed("cpu.stat")
        read = write = None
        try:
            text = self.fs.read(f"{self.path}/io.stat")
            read = write = 0
            for line in text.splitlines():
                for field in line.split()[1:]:
                    key, _, val = field.partition("=")
                    if key == "rbytes":
                        read += int(val)
                    elif key == "wbytes":
                        write += int(val)
        except (SyscallError, ValueError):
            pass
        return {
            "memory_current": self._opt_int("memory.current"),
            "memory_limit": self._opt_int("memory.max"),
            "memory_peak": self._opt_int("memory.peak"),  # Linux 5.19+
            # page cache the kernel drops first; docker stats leaves it out of "usage"
            "memory_inactive_file": self._opt_keyed("memory.stat").get("inactive_file"),
            "cpus": self._cpus(),
            "cpu_usage_usec": cpu.get("usage_usec"),
            "cpu_throttled_usec": cpu.get("throttled_usec"),
            "cpu_nr_throttled": cpu.get("nr_throttled"),
            "pids_current": self._opt_int("pids.current"),
            "pids_limit": self._opt_int("pids.max"),
            "io_read_bytes": read,
            "io_write_bytes": write,
        }

    def _cpus(self) -> float | None:
        """cpu.max "QUOTA PERIOD" as a number of CPUs; None for "max" (no limit)."""
        try:
            quota, _, period = self.fs.read(f"{self.path}/cpu.max").strip().partition(" ")
            return int(quota) / int(period) if quota != "max" else None
        except (SyscallError, ValueError, ZeroDivisionError):
            return None

    def _oom_kills(self) -> int:
        return self._opt_keyed("memory.events").get("oom_kill", 0)

    def _pids_max_hits(self) -> int:
        return self._opt_keyed("pids.events").get("max", 0)
