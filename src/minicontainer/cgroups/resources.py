"""Resource limits as data: parse and check every flag before anything exists.

``parse_resources`` takes what the user typed (strings, or ints from a saved
spec) and returns a frozen :class:`Resources`, or raises
:class:`~minicontainer.errors.UsageError`. It is the only place that knows
Docker's rules for these flags (docker-run(1), "Runtime constraints on
resources"), so the cgroup managers can trust what they get:

- ``--memory`` at least 6 MiB (Docker's minimum: less cannot even start a
  shell); ``--memory-reservation`` the same, and not above ``--memory``.
- ``--memory-swap`` is memory *plus* swap, ``-1`` means unlimited swap, ``0``
  means "not set" (Docker documents both); it needs ``--memory`` and must not
  be smaller than it.
- ``--cpus`` becomes a CFS quota over a 100 ms period; the kernel refuses
  quotas under 1 ms (sched(7), "CFS bandwidth control"), so 0.01 is the least,
  and more CPUs than the host has is refused.
- ``--cpu-shares`` within the kernel's 2..262144 (cpu.shares in cgroups(7)).
- ``--cpuset-cpus`` / ``--cpuset-mems`` must name CPUs and memory nodes the
  host has (read through injectable functions, so unit tests pick the host).
- ``--pids-limit`` is ``-1`` (unlimited) or at least 1. ``0`` is refused:
  Docker reads it as unlimited and runc as "only the first process", and a
  flag that means opposite things in the two tools learners compare is better
  spelled out.
- ``--device-read-bps`` / ``--device-write-bps`` need a block device; the path
  becomes major:minor, which is what the kernel files take.
- ``--cgroup-parent`` is a relative path of plain names (no ``..``).
- ``--device`` (parsed by devices.py) adds its rule to the device
  allow-list, ``--privileged`` (``all_devices``) drops the list.
"""

from __future__ import annotations

import os
import re
import stat as _stat

from minicontainer.records import dataclass, fields  # dataclasses without exec (records.py, issue 15)
from minicontainer import units
from minicontainer.cgroups.devices import Device, DeviceRule, parse_device
from minicontainer.errors import UsageError

# typing only for annotations (strings here): importing it costs ~3 ms of each OCI verb (issue 15)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable

CPU_PERIOD_US = 100_000  # the CFS period Docker uses; cpu.max's default too
MIN_QUOTA_US = 1_000  # the kernel's minimum cfs_quota_us / cpu.max quota
MIN_MEMORY = 6 * units.MIB  # Docker's linuxMinMemory
MIN_SHARES, MAX_SHARES = 2, 262_144  # kernel bounds for cpu.shares
UNLIMITED = -1

DeviceRate = tuple[int, int, int]  # (major, minor, bytes per second)


@dataclass(frozen=True)
class Resources:
    """Validated limits. ``None`` (or an empty tuple) means "not set"."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory + swap, or UNLIMITED
    memory_reservation: int | None = None  # bytes (soft limit / memory.low)
    cpus: int | None = None  # nano-CPUs
    cpu_shares: int | None = None
    cpuset_cpus: tuple[int, ...] | None = None
    cpuset_mems: tuple[int, ...] | None = None
    pids_limit: int | None = None  # count, or UNLIMITED
    device_read_bps: tuple[DeviceRate, ...] = ()
    device_write_bps: tuple[DeviceRate, ...] = ()
    cgroup_parent: str | None = None  # relative to the cgroup mount
    # The container's own cgroup, whole (an OCI bundle's linux.cgroupsPath),
    # relative to the mount: instead of <cgroup_parent>/<id>.
    cgroup_path: str | None = None
    # The device allow-list (devices.py): rules of --device besides the
    # defaults, and --privileged's "every device" (no list at all).
    devices: tuple[DeviceRule, ...] = ()
    all_devices: bool = False

    def is_empty(self) -> bool:
        """True when no limit is set (``cgroup_parent`` is a place, not a
        limit; the device rules only ever allow more than a host without a
        cgroup would refuse, which is nothing)."""
        return all(
            getattr(self, f.name) in (None, ())
            for f in fields(self)
            if f.name not in ("cgroup_parent", "cgroup_path", "devices", "all_devices")
        )

    @property
    def cpu_quota_us(self) -> int | None:
        """The CFS quota per ``CPU_PERIOD_US`` for ``cpus``: 0.05 CPUs -> 5000."""
        if self.cpus is None:
            return None
        return self.cpus * CPU_PERIOD_US // units.NANO

    @property
    def swap_only(self) -> int | None:
        """Swap alone (cgroup v2's memory.swap.max): memory_swap - memory.

        ``UNLIMITED`` stays ``UNLIMITED``; ``None`` when --memory-swap was not
        given (the managers then apply Docker's default, swap = memory).
        """
        if self.memory_swap is None or self.memory is None:
            return None
        if self.memory_swap == UNLIMITED:
            return UNLIMITED
        return self.memory_swap - self.memory


def read_online(path: str, default: frozenset[int] | None = None) -> frozenset[int]:
    """Parse a kernel list file such as /sys/devices/system/cpu/online."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        if default is not None:
            return default
        raise
    return frozenset(units.parse_cpuset(text, path))


def host_cpus() -> frozenset[int]:
    """The CPUs this process may use (what Docker's NumCPU counts)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover - always available on Linux
        return read_online("/sys/devices/system/cpu/online")


def host_mems() -> frozenset[int]:
    """The online memory (NUMA) nodes; a kernel without NUMA has node 0 only."""
    return read_online("/sys/devices/system/node/online", default=frozenset({0}))


_PARENT_PART = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@:-]{0,254}")  # fullmatch: '$' matches before a final newline


def _parse_cgroup_parent(text: str, flag: str = "--cgroup-parent") -> str:
    hint = "use a relative path of plain names, e.g. mygroup or lab/limits"
    s = text.strip() if isinstance(text, str) else ""
    parts = s.strip("/").split("/")
    if not s.strip("/") or len(parts) > 16:
        raise UsageError(f"invalid {flag} value {text!r}", hint)
    for part in parts:
        # "cgroup.*" names are the kernel's own interface files.
        if not _PARENT_PART.fullmatch(part) or part.startswith("cgroup."):
            raise UsageError(f"invalid {flag} value {text!r}", hint)
    return "/".join(parts)


def _size(value: str | int, flag: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"invalid {flag} value {value!r}", units.SIZE_HINT)
    if isinstance(value, int):
        if value < 0:
            raise UsageError(f"invalid {flag} value '{value}'", units.SIZE_HINT)
        return value
    return units.parse_size(value, flag)


def _device_rates(values: Iterable[str | tuple[int, int, int]], flag: str,
                  stat: Callable[[str], os.stat_result]) -> tuple[DeviceRate, ...]:
    by_dev: dict[tuple[int, int], int] = {}
    if isinstance(values, str):
        values = [values]
    for v in values:
        if isinstance(v, tuple):  # already (major, minor, rate), e.g. from a saved spec
            major, minor, rate = v
        else:
            path, rate = units.split_device_rate(v, flag)
            try:
                st = stat(path)
            except OSError as e:
                raise UsageError(f"invalid {flag} value {v!r}: {path}: {os.strerror(e.errno or 0)}",
                                 "name an existing block device, e.g. /dev/sda (see lsblk)") from None
            if not _stat.S_ISBLK(st.st_mode):
                raise UsageError(f"invalid {flag} value {v!r}: {path} is not a block device",
                                 "I/O limits apply to block devices, e.g. /dev/sda or /dev/loop0 (see lsblk)")
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        by_dev[(major, minor)] = rate  # the last one for a device wins, as in the kernel file
    return tuple((ma, mi, r) for (ma, mi), r in sorted(by_dev.items()))


def _device_rules(values: Iterable[str | Device | DeviceRule], stat: Callable[[str], os.stat_result]
                  ) -> tuple[DeviceRule, ...]:
    """``--device`` values (``/dev/loop0:r``, or parsed already) as allow-list rules."""
    rules = []
    for v in values:
        if isinstance(v, str):
            v = parse_device(v, stat)
        rules.append(v.rule if isinstance(v, Device) else v)
    return tuple(dict.fromkeys(rules))


def _resolve(source: frozenset[int] | Iterable[int] | Callable[[], Iterable[int]]) -> frozenset[int]:
    return frozenset(source() if callable(source) else source)


def parse_resources(
    memory: str | int | None = None,
    memory_swap: str | int | None = None,
    memory_reservation: str | int | None = None,
    cpus: str | int | None = None,
    cpu_shares: str | int | None = None,
    cpuset_cpus: str | None = None,
    cpuset_mems: str | None = None,
    pids_limit: str | int | None = None,
    device_read_bps: Iterable[str] = (),
    device_write_bps: Iterable[str] = (),
    cgroup_parent: str | None = None,
    cgroup_path: str | None = None,
    devices: Iterable[str | Device | DeviceRule] = (),
    all_devices: bool = False,
    *,
    cpus_available: Iterable[int] | Callable[[], Iterable[int]] = host_cpus,
    mems_available: Iterable[int] | Callable[[], Iterable[int]] = host_mems,
    stat: Callable[[str], os.stat_result] = os.stat,
) -> Resources:
    """Check every flag and return :class:`Resources`; nothing is created here.

    ``cpus`` as a string is a number of CPUs (``"0.5"``), as an int it is
    already nano-CPUs (a saved spec). The host's CPUs, memory nodes and
    devices are looked up through ``cpus_available``, ``mems_available`` and
    ``stat``, only when a flag needs them.
    """
    mem = _size(memory, "--memory") if memory is not None else None
    if mem is not None and mem < MIN_MEMORY:
        raise UsageError(f"invalid --memory value {str(memory)!r}: below the minimum of 6 MiB",
                         "a container needs at least 6m to start; use e.g. -m 64m")

    swap: int | None = None
    if memory_swap is not None:
        if str(memory_swap).strip() == "-1":
            swap = UNLIMITED
        else:
            swap = _size(memory_swap, "--memory-swap")
            if swap == 0:
                swap = None  # docker-run(1): "--memory-swap 0 ... is treated as unset"
        if swap is not None and mem is None:
            raise UsageError(f"--memory-swap {memory_swap} needs --memory as well",
                             "--memory-swap is memory plus swap; give -m too, e.g. -m 64m --memory-swap 128m")
        if swap is not None and swap != UNLIMITED and mem is not None and swap < mem:
            raise UsageError(
                f"invalid --memory-swap value {str(memory_swap)!r}: smaller than --memory "
                f"({units.format_size(mem)})",
                "--memory-swap counts memory plus swap, so it must be at least --memory; "
                "equal means no swap, -1 means unlimited swap",
            )

    reservation = _size(memory_reservation, "--memory-reservation") if memory_reservation is not None else None
    if reservation is not None:
        if reservation < MIN_MEMORY:
            raise UsageError(f"invalid --memory-reservation value {str(memory_reservation)!r}: below 6 MiB",
                             "use at least 6m")
        if mem is not None and reservation > mem:
            raise UsageError("--memory-reservation is larger than --memory",
                             "the reservation is a soft floor under the hard limit; make it smaller")

    nano: int | None = None
    if cpus is not None:
        if isinstance(cpus, int) and not isinstance(cpus, bool):
            if cpus <= 0:
                raise UsageError(f"invalid --cpus value '{cpus}'", "use a positive number of CPUs, e.g. 0.5")
            nano = cpus
        else:
            nano = units.parse_cpus(cpus, "--cpus")  # type: ignore[arg-type]
        if nano * CPU_PERIOD_US // units.NANO < MIN_QUOTA_US:
            raise UsageError(
                f"invalid --cpus value {str(cpus)!r}: below the kernel's minimum quota",
                f"the kernel needs at least {MIN_QUOTA_US} us of CPU per {CPU_PERIOD_US} us period, "
                "so use --cpus 0.01 or more",
            )
        ncpu = len(_resolve(cpus_available))
        if nano > ncpu * units.NANO:
            raise UsageError(f"invalid --cpus value {str(cpus)!r}: this host has only {ncpu} CPUs",
                             f"use a number from 0.01 to {ncpu}")

    shares = None
    if cpu_shares is not None:
        shares = units.parse_int(cpu_shares, "--cpu-shares", minimum=MIN_SHARES, maximum=MAX_SHARES,
                                 hint="use a weight from 2 to 262144; 1024 is the default")

    cpu_list = mem_list = None
    if cpuset_cpus is not None:
        cpu_list = units.parse_cpuset(cpuset_cpus, "--cpuset-cpus")
        have = _resolve(cpus_available)
        missing = sorted(set(cpu_list) - have)
        if missing:
            raise UsageError(
                f"invalid --cpuset-cpus value {cpuset_cpus!r}: this host has no CPU {units.format_cpuset(missing)}",
                f"the CPUs available are {units.format_cpuset(have)}",
            )
    if cpuset_mems is not None:
        mem_list = units.parse_cpuset(cpuset_mems, "--cpuset-mems")
        have = _resolve(mems_available)
        missing = sorted(set(mem_list) - have)
        if missing:
            raise UsageError(
                f"invalid --cpuset-mems value {cpuset_mems!r}: this host has no memory node "
                f"{units.format_cpuset(missing)}",
                f"the memory nodes available are {units.format_cpuset(have)}",
            )

    pids = None
    if pids_limit is not None:
        pids = units.parse_int(pids_limit, "--pids-limit", minimum=-1,
                               hint="use -1 for unlimited or a number of processes from 1 up")
        if pids == 0:
            raise UsageError(
                "invalid --pids-limit value '0'",
                "0 is ambiguous (docker reads it as unlimited, runc as only the first process); "
                "use -1 for unlimited or 1 for a single process",
            )

    read_bps = _device_rates(device_read_bps, "--device-read-bps", stat)
    write_bps = _device_rates(device_write_bps, "--device-write-bps", stat)
    parent = _parse_cgroup_parent(cgroup_parent) if cgroup_parent is not None else None

    return Resources(
        memory=mem,
        memory_swap=swap,
        memory_reservation=reservation,
        cpus=nano,
        cpu_shares=shares,
        cpuset_cpus=cpu_list,
        cpuset_mems=mem_list,
        pids_limit=pids,
        device_read_bps=read_bps,
        device_write_bps=write_bps,
        cgroup_parent=parent,
        cgroup_path=_parse_cgroup_parent(cgroup_path, "cgroupsPath") if cgroup_path is not None else None,
        devices=_device_rules(devices, stat),
        all_devices=bool(all_devices),
    )
