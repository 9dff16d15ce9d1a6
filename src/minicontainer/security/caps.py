"""Linux capabilities: the name table, Docker's default set, and applying it.

Root's power is split into about forty capabilities (capabilities(7)). A
process has five sets:

- *bounding*: the ceiling; nothing can ever be gained outside it, not even
  by running a setuid-root or file-capability binary. Dropping from it
  (PR_CAPBSET_DROP) is permanent for the process and all its children.
- *permitted*: what the process may switch on; *effective*: what the
  kernel checks right now.
- *inheritable* and *ambient*: what survives execve(2). Docker keeps both
  empty (inheritable since CVE-2022-24769), so a program cannot pass
  capabilities on to a non-root child.

A container keeps Docker's fourteen default capabilities (enough to run
package managers and daemons that change users) and loses the rest, most
importantly CAP_SYS_ADMIN (mount, namespaces...), CAP_SYS_MODULE,
CAP_SYS_PTRACE, CAP_SYS_RAWIO and CAP_DAC_READ_SEARCH (the "shocker"
open_by_handle_at escape).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of every run, issue 15)

from minicontainer.errors import SecurityError, UsageError

if TYPE_CHECKING:
    from typing import Iterable

    from minicontainer.security.config import SecurityConfig

# Index = capability number (linux/capability.h). The kernel may be newer
# than this table: cap_last_cap() tells how far it goes, and numbers beyond
# the table are still handled (dropped, or kept with --privileged).
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",  # 0
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",  # 5
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",  # 10
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",  # 15
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",  # 20
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",  # 25
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",  # 30
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",  # 35
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",  # 40
)
CAP_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(CAP_NAMES)}

# Docker's default set (moby oci/caps/defaults.go), in its order.
DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)

_CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"


def normalize_cap(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` or ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``.

    Docker's flag syntax: case-insensitive, the ``CAP_`` prefix optional.
    """
    n = (name or "").strip().upper()
    if n == "ALL":
        return "ALL"
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in CAP_NUMBERS:
        raise UsageError(
            f"unknown capability {name!r}",
            "use a name from capabilities(7) such as NET_ADMIN or CAP_SYS_TIME, or ALL",
        )
    return n


def cap_last_cap(path: str = _CAP_LAST_CAP_FILE) -> int:
    """The highest capability number this kernel knows (Linux 3.2+)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        # Older kernels: assume our table matches the kernel.
        return len(CAP_NAMES) - 1


def all_caps(last_cap: int | None = None) -> frozenset[str]:
    """Every capability up to ``last_cap`` by name (unknown numbers as ``CAP_<n>``)."""
    last = cap_last_cap() if last_cap is None else last_cap
    return frozenset(cap_name(i) for i in range(last + 1))


def cap_name(number: int) -> str:
    return CAP_NAMES[number] if number < len(CAP_NAMES) else f"CAP_{number}"


def cap_number(name: str) -> int:
    if name in CAP_NUMBERS:
        return CAP_NUMBERS[name]
    return int(name[len("CAP_"):])  # the CAP_<n> form of all_caps()


def caps_to_mask(names: Iterable[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << cap_number(n)
    return mask


def mask_to_caps(mask: int) -> frozenset[str]:
    return frozenset(cap_name(i) for i in range(mask.bit_length()) if mask >> i & 1)


def tweak_caps(
    base: Iterable[str],
    cap_add: Iterable[str],
    cap_drop: Iterable[str],
    privileged: bool,
    every: Iterable[str],
) -> frozenset[str]:
    """Docker's rules for --cap-add / --cap-drop / --privileged (names normalized).

    - --privileged: every capability;
    - --cap-add ALL: every capability except those dropped;
    - --cap-drop ALL: only what is added;
    - otherwise: the base set, minus drops, plus adds (so ``--cap-drop X
      --cap-add X`` keeps X, as in Docker).
    """
    adds, drops = set(cap_add), set(cap_drop)
    if privileged:
        return frozenset(every)
    if "ALL" in adds:
        return frozenset(c for c in every if c not in drops)
    if "ALL" in drops:
        return frozenset(adds)
    return frozenset((set(base) - drops) | adds)


def effective_caps(config: "SecurityConfig", last_cap: int | None = None) -> frozenset[str]:
    """The capability set a container with ``config`` runs with (as root)."""
    return tweak_caps(DEFAULT_CAPS, config.cap_add, config.cap_drop, config.privileged, all_caps(last_cap))


# -- reading the host --------------------------------------------------------


def read_bounding(last_cap: int, status: str = "/proc/self/status") -> int:
    """This process's bounding set as a mask, from the CapBnd line of
    /proc/self/status (proc(5)): one read, where asking PR_CAPBSET_READ for
    each capability would load python-prctl into every run (issue 15)."""
    with open(status) as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16) & ((1 << (last_cap + 1)) - 1)
    raise SecurityError(f"{status} has no CapBnd line", "is /proc mounted? minicontainer reads the bounding set there")
