"""Masked and read-only paths under /proc and /sys, as data.

A fresh procfs or sysfs in the container still shows host-wide things:
/proc/kcore is the host's memory, /proc/sys/kernel/core_pattern names a
program the *host* kernel runs as root when anything crashes, writing ``b``
to /proc/sysrq-trigger reboots the machine. Namespaces do not hide them, and
root in the container may open them. Like runc (its default spec's
``maskedPaths`` and ``readonlyPaths``), we cover them right after /proc and
/sys are mounted in the new root, before pivot_root:

- ``mask_file``: bind-mount /dev/null over the file: it reads as empty;
- ``mask_dir``: mount an empty read-only tmpfs over the directory;
- ``readonly``: bind-mount the path onto itself, then remount that bind
  read-only (and nosuid, nodev, noexec). A bind mount's flags are its own
  (mount(2), "Creating a bind mount"), so the original mount stays as it is.

This module is the data; the interpreter's MaskPath handler
(container/interpreter.py) carries each one out. A missing path is skipped
(not every kernel has /proc/timer_stats), and what the path really is (file
or directory) decides how it is masked. Every mount targets ``/proc/self/fd/N`` of an ``O_PATH`` descriptor opened without
following any symlink, so nothing planted in the image can redirect a mount
(reliability lesson 1; runc CVE-2019-19921, CVE-2025-31133).

``--privileged`` and ``--security-opt systempaths=unconfined`` turn both
lists off, as in Docker.
"""

from __future__ import annotations

from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of every run, issue 15)

if TYPE_CHECKING:
    from minicontainer.security.config import SecurityConfig

# (path, kind, why). Kinds are what the path is on current kernels; the
# applier checks the real type and uses that.
DEFAULT_MASKED: tuple[tuple[str, str, str], ...] = (
    ("/proc/asound", "mask_dir", "the host's sound cards"),
    ("/proc/acpi", "mask_dir", "ACPI state and controls of the host machine"),
    ("/proc/kcore", "mask_file", "the host's physical memory, as an ELF core file"),
    ("/proc/keys", "mask_file", "keys in the kernel keyring, which is not namespaced"),
    ("/proc/latency_stats", "mask_file", "latency records of every process on the host"),
    ("/proc/timer_list", "mask_file", "host timers with the names and pids of their tasks"),
    ("/proc/timer_stats", "mask_file", "timer usage of every process on the host (old kernels)"),
    ("/proc/sched_debug", "mask_file", "scheduler state of every process on the host"),
    ("/proc/scsi", "mask_dir", "the host's SCSI devices, with a write interface to add and remove them"),
    ("/sys/firmware", "mask_dir", "firmware tables of the host: ACPI, DMI, EFI variables"),
    ("/sys/devices/virtual/powercap", "mask_dir", "CPU energy counters, a side channel (CVE-2020-8694)"),
)
DEFAULT_READONLY: tuple[tuple[str, str], ...] = (
    ("/proc/bus", "PCI and USB configuration of the host's devices"),
    ("/proc/fs", "filesystem tunables that are host-wide"),
    ("/proc/irq", "interrupt routing of the host's CPUs"),
    ("/proc/sys", "sysctls, mostly host-wide: kernel/core_pattern runs a program as host root on any crash"),
    ("/proc/sysrq-trigger", "writing b reboots the host, c crashes it"),
)
# (/sys/fs/cgroup is not in the list: the plan mounts the container's own
# cgroup there read-only itself, plan.cgroup_mounts.)
DEFAULT_MASKED_PATHS: tuple[str, ...] = tuple(p for p, _, _ in DEFAULT_MASKED)
DEFAULT_READONLY_PATHS: tuple[str, ...] = tuple(p for p, _ in DEFAULT_READONLY)

_KIND = {p: k for p, k, _ in DEFAULT_MASKED}
_WHY = {**{p: w for p, _, w in DEFAULT_MASKED}, **dict(DEFAULT_READONLY)}


@dataclass(frozen=True)
class MaskOp:
    kind: str  # "mask_file" | "mask_dir" | "readonly"
    path: str  # absolute, inside the container
    why: str

    def shell(self) -> str:
        """The command a person would type (for --explain)."""
        if self.kind == "mask_file":
            return f"mount --bind /dev/null {self.path}"
        if self.kind == "mask_dir":
            return f"mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=0555 tmpfs {self.path}"
        return f"mount --bind {self.path} {self.path} && mount -o remount,bind,ro,nosuid,nodev,noexec {self.path}"


def masked_path_ops(config: "SecurityConfig") -> list[MaskOp]:
    """The mount steps for ``config``: masks first, then read-only paths."""
    ops = [MaskOp(_KIND.get(p, "mask_file"), p, _WHY.get(p, "masked by request")) for p in config.masked_paths]
    ops += [MaskOp("readonly", p, _WHY.get(p, "read-only by request")) for p in config.readonly_paths]
    return ops
