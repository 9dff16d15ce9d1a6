"""The device allow-list: which device nodes a container may create and open.

Root in a container keeps CAP_MKNOD (Docker's default), so without a device
cgroup it could ``mknod /dev/vda b 254 0`` and read the host's disk; seccomp
would be the only thing in the way, and ``--security-opt seccomp=unconfined``
or a Docker JSON profile allows mknod. Like runc and crun, every container
gets an allow-list, enforced by the kernel at open(2) and mknod(2):

- creating any device node is allowed (``c *:* m``, ``b *:* m``): only
  *opening* one needs a rule of its own, so a node made inside fails to open
  with EPERM;
- the standard devices may be read, written and created (``rwm``): null,
  zero, full, random, urandom, tty, console, ptmx and the ptys (136:*);
- ``--device HOST[:CONTAINER][:rwm]`` adds the host's device (the node is
  made inside by the plan, the rule allowed here); ``--privileged`` allows
  every device, with no list at all (as Docker): the cgroup keeps its
  parent's access.

In a user namespace (rootless, ``--userns``) there is no list either: the
runtime writes the cgroup from inside it, where devices.allow and bpf(2)
are refused, and none is needed for mknod, which the kernel refuses there
(CAP_MKNOD counts only in the host's user namespace).

How the kernel is told differs by cgroup version (v1.py and v2.py ask for
:func:`v1_writes`' values and :func:`filter_program`):

- v1: the ``devices`` controller's files, ``echo a > devices.deny`` (deny
  everything) then one ``devices.allow`` write per rule (the kernel's
  Documentation/admin-guide/cgroup-v1/devices.rst);
- v2: there are no such files. An eBPF program of type
  ``BPF_PROG_TYPE_CGROUP_DEVICE`` attached to the cgroup is run on every
  access and returns 1 (allow) or 0 (deny, EPERM); this module writes that
  program with the small assembler in ebpf.py, in the same shape as runc's
  (libcontainer/cgroups/devices/devicefilter.go).
"""

from __future__ import annotations

import os
import stat as _stat
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

from minicontainer.cgroups import ebpf
from minicontainer.cgroups.ebpf import R0, R1, R2, R3, R4, R5
from minicontainer.errors import UsageError

# typing only for annotations (strings here): importing it costs ~3 ms of each OCI verb (issue 15)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable

# struct bpf_cgroup_dev_ctx (linux/bpf.h): access_type = (access << 16) | type.
CTX_ACCESS_TYPE, CTX_MAJOR, CTX_MINOR = 0, 4, 8
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
_TYPE = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}
_ACCESS = {"r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE, "m": BPF_DEVCG_ACC_MKNOD}


@dataclass(frozen=True)
class DeviceRule:
    """One entry of the allow-list, as devices.allow writes it: ``c 1:3 rwm``.

    ``kind`` is ``c`` (character), ``b`` (block) or ``a`` (every device);
    ``major``/``minor`` None mean any (``*``); ``access`` is a subset of
    ``rwm``: read, write, mknod.
    """

    kind: str
    major: int | None
    minor: int | None
    access: str = "rwm"
    name: str = field(default="", compare=False)  # what it is, for --explain

    def __str__(self) -> str:
        if self.kind == "a":
            return "a"
        ma = "*" if self.major is None else str(self.major)
        mi = "*" if self.minor is None else str(self.minor)
        return f"{self.kind} {ma}:{mi} {self.access}"


DEFAULT_RULES = (
    DeviceRule("c", None, None, "m", "mknod of any character device"),
    DeviceRule("b", None, None, "m", "mknod of any block device"),
    DeviceRule("c", 1, 3, "rwm", "/dev/null"),
    DeviceRule("c", 1, 5, "rwm", "/dev/zero"),
    DeviceRule("c", 1, 7, "rwm", "/dev/full"),
    DeviceRule("c", 1, 8, "rwm", "/dev/random"),
    DeviceRule("c", 1, 9, "rwm", "/dev/urandom"),
    DeviceRule("c", 5, 0, "rwm", "/dev/tty"),
    DeviceRule("c", 5, 1, "rwm", "/dev/console"),
    DeviceRule("c", 5, 2, "rwm", "/dev/ptmx"),
    DeviceRule("c", 136, None, "rwm", "/dev/pts/*"),
)
ALL_DEVICES = DeviceRule("a", None, None, "rwm", "every device (--privileged)")


def rules_for(extra: Iterable[DeviceRule] = ()) -> tuple[DeviceRule, ...]:
    """The default list plus the ``--device`` rules, each rule once."""
    return tuple(dict.fromkeys((*DEFAULT_RULES, *extra)))


def summary(rules: Iterable[DeviceRule]) -> str:
    return ", ".join(str(r) for r in rules)


# -- v2: the eBPF program ---------------------------------------------------------


def filter_program(rules: Iterable[DeviceRule]) -> bytes:
    """A BPF_PROG_TYPE_CGROUP_DEVICE program that returns 1 (allow) for an
    access matching one of ``rules`` and 0 (EPERM) for everything else.

    The prologue unpacks the context into registers; each rule is then a
    block of tests that jump to the next block on a mismatch and end in
    ``return 1``; after the last block, ``return 0``::

        r2 = type (access_type & 0xffff)   r3 = access (access_type >> 16)
        r4 = major                         r5 = minor
        if r2 != TYPE goto next            (unless the rule is for every type)
        w1 = w3; w1 &= ALLOWED; if r1 != r3 goto next    (unless rwm: an access
                                           with a bit outside ALLOWED fails)
        if r4 != MAJOR goto next           (unless *)
        if r5 != MINOR goto next           (unless *)
        w0 = 1; exit
    """
    a = ebpf.Assembler()
    a.ldx_w(R2, R1, CTX_ACCESS_TYPE)
    a.and32(R2, 0xFFFF)
    a.ldx_w(R3, R1, CTX_ACCESS_TYPE)
    a.rsh32(R3, 16)
    a.ldx_w(R4, R1, CTX_MAJOR)
    a.ldx_w(R5, R1, CTX_MINOR)
    for rule in rules:
        allowed = 0
        for ch in rule.access:
            allowed |= _ACCESS[ch]
        nxt = a.label(str(rule))
        if rule.kind != "a":
            a.jne(R2, _TYPE[rule.kind], nxt)
        if allowed != 0b111:
            a.mov32_reg(R1, R3)
            a.and32(R1, allowed)
            a.jne_reg(R1, R3, nxt)
        if rule.major is not None:
            a.jne(R4, rule.major, nxt)
        if rule.minor is not None:
            a.jne(R5, rule.minor, nxt)
        a.mov32(R0, 1)
        a.exit()
        a.place(nxt)
    a.mov32(R0, 0)
    a.exit()
    return a.assemble()


# -- --device -------------------------------------------------------------------------

DEVICE_HINT = "use --device /dev/HOST[:/dev/CONTAINER][:PERMS], PERMS a combination of r, w and m (default rwm)"


@dataclass(frozen=True)
class Device:
    """``--device HOST[:CONTAINER][:rwm]``: a host device made available inside."""

    host: str  # the host's node (symlinks resolved)
    path: str  # where it appears in the container
    kind: str  # "c" | "b"
    major: int
    minor: int
    access: str = "rwm"
    mode: int = 0o600  # the host node's permission bits, given to the node inside

    @property
    def rule(self) -> DeviceRule:
        return DeviceRule(self.kind, self.major, self.minor, self.access, f"--device {self.host}")


def valid_access(text: str) -> bool:
    """Docker's rule: one or more of r, w, m, each at most once."""
    return bool(text) and set(text) <= set("rwm") and len(set(text)) == len(text)


def parse_device(text: str, stat: Callable[[str], os.stat_result] = os.stat) -> Device:
    """Docker's parsing: ``HOST``, ``HOST:CONTAINER``, ``HOST:PERMS`` or
    ``HOST:CONTAINER:PERMS``; CONTAINER defaults to HOST."""
    if not isinstance(text, str) or not text:
        raise UsageError("--device needs a value", DEVICE_HINT)
    parts = text.split(":")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise UsageError(f"invalid --device value {text!r}", DEVICE_HINT)
    host, target, access = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if valid_access(parts[1]):
            access = parts[1]
        else:
            target = parts[1]
    elif len(parts) == 3:
        target, access = parts[1], parts[2]
    if not valid_access(access):
        raise UsageError(f"invalid --device permissions {access!r} in {text!r}", DEVICE_HINT)
    access = "".join(c for c in "rwm" if c in access)
    if not os.path.isabs(host):
        raise UsageError(f"invalid --device value {text!r}: {host} is not an absolute path", DEVICE_HINT)
    norm = os.path.normpath(target)
    if not target.startswith("/") or ".." in target.split("/") or norm in ("/", "/dev") or "\0" in target:
        raise UsageError(f"invalid --device value {text!r}: the container path {target!r} must be an absolute "
                         "path of a file, without '..'", DEVICE_HINT)
    try:
        st = stat(host)
    except OSError as e:
        raise UsageError(f"invalid --device value {text!r}: {host}: {os.strerror(e.errno or 0)}",
                         "name an existing device node on the host, e.g. /dev/fuse or /dev/loop0") from None
    if _stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif _stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise UsageError(f"invalid --device value {text!r}: {host} is not a device node",
                         "name a character or block device, e.g. /dev/fuse or /dev/loop0 (ls -l shows c or b)")
    return Device(host=os.path.realpath(host), path=norm, kind=kind, major=os.major(st.st_rdev),
                  minor=os.minor(st.st_rdev), access=access, mode=_stat.S_IMODE(st.st_mode))


def parse_devices(values: Iterable[str | Device], stat: Callable[[str], os.stat_result] = os.stat
                  ) -> tuple[Device, ...]:
    out: dict[str, Device] = {}
    for v in values:
        d = v if isinstance(v, Device) else parse_device(v, stat)
        if d.path in out and out[d.path] != d:
            raise UsageError(f"--device: two devices for {d.path} in the container", "give each container path once")
        out[d.path] = d
    return tuple(out.values())
