"""Seccomp: a filter the kernel runs on every system call of the container.

Capabilities decide *who* may do something; seccomp decides which kernel
entry points can be reached at all. Even with few capabilities a container
can reach a lot of kernel code (keyrings, user namespaces, io_uring...), and
most kernel exploits start from a call a normal program never makes. The
filter returns EPERM for those calls, as Docker's default profile does.

How it is built
    We write the classic BPF program ourselves (bpf.py) from a list of
    rules, with syscall numbers from syscall_tables.py, instead of linking
    libseccomp: one C dependency less on a fresh machine, and a learner can
    print the whole program (``format_program``) and read what the kernel
    will run. The price is that we only know the architectures in our tables
    (x86_64, aarch64).

What the program does (seccomp(2), "Filter programs")
    1. Check ``seccomp_data.arch``. The same number means different calls on
       different ABIs (on x86_64, ``int 0x80`` enters the i386 table where
       165 is not mount): a filter that forgets this can be bypassed by
       switching ABI. A foreign architecture gets the profile's default
       action, or is *killed* when the default is "allow": a deny-list
       written in x86_64 numbers cannot protect an i386 call, and killing is
       the only answer that cannot be misread.
    2. On x86_64, refuse numbers with the x32 bit (0x40000000) set. x32
       calls arrive with the x86_64 arch value but ``nr | 0x40000000``, so an
       equality check on ``nr`` would miss them.
    3. One block per (rule, syscall): compare ``nr``, then the arguments,
       then return the rule's action. The first block that matches wins.
    4. Otherwise return the profile's default action.

Argument checks compare the raw register values. For an ``unsigned int``
parameter (ioctl's request, personality) only the low 32 bits are compared:
the kernel ignores the high half, so a 64-bit comparison could be bypassed
by setting garbage there (flatpak CVE-2019-10063, TIOCSTI).

Docker's profile is an allow-list (default ERRNO, ~370 calls allowed). Our
default is a deny-list of the dangerous calls (default ALLOW): shorter to
read and explain, at the cost that a brand-new dangerous syscall is allowed
until we list it. ``--security-opt seccomp=PROFILE.json`` loads Docker's own
profile (seccomp_profile.py) for those who want the allow-list.

Like Docker, a rule can depend on capabilities: ``--cap-add SYS_ADMIN``
re-enables mount(2), ``--cap-add SYS_TIME`` the clock calls, and so on.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer.errors import SecurityError
from minicontainer.security import bpf
from minicontainer.security.syscall_tables import TABLES

# Return values (linux/seccomp.h). The action is in the high 16 bits, data
# (an errno) in the low 16.
SECCOMP_RET_KILL_PROCESS = 0x80000000  # Linux 4.14; older kernels read it as KILL_THREAD
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

CLONE_NEWUSER = 0x10000000
# mknod's mode is a umode_t: the kernel keeps only 16 bits, the file type is bits 12-15.
S_IFMT, S_IFCHR, S_IFBLK = 0o170000, 0o020000, 0o060000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

# Go's architecture names (used in Docker profiles) and uname's.
ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


# -- the rule language ----------------------------------------------------------


@dataclass(frozen=True)
class Action:
    kind: str  # allow | errno | kill_process | kill_thread | trap | log
    errno: int = 0

    def value(self) -> int:
        return {
            "allow": SECCOMP_RET_ALLOW,
            "errno": SECCOMP_RET_ERRNO | (self.errno & 0xFFFF),
            "kill_process": SECCOMP_RET_KILL_PROCESS,
            "kill_thread": SECCOMP_RET_KILL_THREAD,
            "trap": SECCOMP_RET_TRAP,
            "log": SECCOMP_RET_LOG,
        }[self.kind]

    def __str__(self) -> str:
        if self.kind == "errno":
            return _errno.errorcode.get(self.errno, str(self.errno))
        return self.kind.upper()


ALLOW = Action("allow")
EPERM = Action("errno", _errno.EPERM)
ENOSYS = Action("errno", _errno.ENOSYS)
KILL_PROCESS = Action("kill_process")

ARG_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "masked_eq")


@dataclass(frozen=True)
class ArgCheck:
    """``args[index] <op> value``; for masked_eq: ``args[index] & value == value_two``.

    ``width`` 32 compares only the low half (for ``unsigned int`` parameters).
    """

    index: int
    op: str
    value: int
    value_two: int = 0
    width: int = 64

    def __str__(self) -> str:
        if self.op == "masked_eq":
            return f"arg{self.index} & {self.value:#x} == {self.value_two:#x}"
        sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[self.op]
        return f"arg{self.index} {sym} {self.value:#x}"


@dataclass(frozen=True)
class Filter:
    """Docker's includes/excludes: capabilities, architectures, a kernel version."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None

    def empty(self) -> bool:
        return not (self.caps or self.arches or self.min_kernel)


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCheck, ...] = ()
    includes: Filter = Filter()  # the rule exists only if ALL of these hold
    excludes: Filter = Filter()  # ... and NONE of these
    why: str = ""

    def applies(self, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
        inc, exc = self.includes, self.excludes
        if inc.caps and not set(inc.caps) <= caps:
            return False
        if inc.arches and arch not in inc.arches:
            return False
        if inc.min_kernel and kernel < inc.min_kernel:
            return False
        if exc.caps and set(exc.caps) & caps:
            return False
        if exc.arches and arch in exc.arches:
            return False
        if exc.min_kernel and kernel >= exc.min_kernel:
            return False
        return True


@dataclass(frozen=True)
class Profile:
    name: str
    default_action: Action
    rules: tuple[Rule, ...]
    source: str = ""  # the JSON file it came from, if any
    notes: tuple[str, ...] = ()  # what was simplified while loading it


def _deny(names: str, why: str, unless: tuple[str, ...] = (), **kw) -> Rule:
    excl = kw.pop("excludes", None) or Filter(caps=unless)
    return Rule(tuple(names.split()), kw.pop("action", EPERM), excludes=excl, why=why, **kw)


# Docker's default profile "in spirit", as a deny-list. Order matters only
# for personality (its allowed values come before the catch-all refusal).
DEFAULT_RULES: tuple[Rule, ...] = (
    *(
        Rule(("personality",), ALLOW, (ArgCheck(0, "eq", v, width=32),))
        for v in (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)
    ),
    _deny(
        "personality",
        "other personalities switch off ASLR (ADDR_NO_RANDOMIZE) or make data executable "
        "(READ_IMPLIES_EXEC): exploit helpers; only PER_LINUX(32), UNAME26 and the query are allowed",
    ),
    Rule(
        ("ioctl",),
        EPERM,
        (ArgCheck(1, "eq", TIOCSTI, width=32),),
        why="TIOCSTI (and TIOCLINUX) push keystrokes into a terminal: a container given the host tty "
        "could type commands into the host shell (CVE-2017-5226)",
    ),
    Rule(("ioctl",), EPERM, (ArgCheck(1, "eq", TIOCLINUX, width=32),)),
    Rule(
        ("unshare", "clone"),
        EPERM,
        (ArgCheck(0, "masked_eq", CLONE_NEWUSER, CLONE_NEWUSER, width=32),),
        excludes=Filter(caps=("CAP_SYS_ADMIN",)),
        why="a new user namespace needs no privilege and makes the caller root inside it, "
        "opening kernel code paths only root could reach (many privilege-escalation bugs start here)",
    ),
    *(
        Rule(
            (name,),
            EPERM,
            (ArgCheck(idx, "masked_eq", S_IFMT, kind, width=32),),
            why="creating device nodes: without a device cgroup (cgroup v2 needs eBPF for one) a node "
            "such as 'b 8 0' would give raw access to the host's disk. A deliberate difference from "
            "Docker, which allows mknod and denies the open in the device cgroup; FIFOs and sockets "
            "can still be created",
        )
        for name, idx in (("mknod", 1), ("mknodat", 2))
        for kind in (S_IFCHR, S_IFBLK)
    ),
    _deny(
        "clone3",
        "its flags live in memory a filter cannot read; ENOSYS makes libc fall back to clone(2), which is checked",
        ("CAP_SYS_ADMIN",),
        action=ENOSYS,
    ),
    _deny(
        "mount umount2 pivot_root fsopen fsconfig fsmount fspick move_mount open_tree "
        "open_tree_attr mount_setattr",
        "new mounts could uncover masked paths or the host; the runtime builds the filesystem once, before exec",
        ("CAP_SYS_ADMIN",),
    ),
    _deny("setns", "joining another namespace through an fd could leave the container", ("CAP_SYS_ADMIN",)),
    _deny(
        "init_module finit_module delete_module create_module",
        "loading or removing kernel code",
        ("CAP_SYS_MODULE",),
    ),
    _deny("reboot", "rebooting the host (or, in a PID namespace, killing the container)", ("CAP_SYS_BOOT",)),
    _deny("kexec_load kexec_file_load", "replacing the host kernel"),
    _deny(
        "keyctl add_key request_key",
        "the kernel keyring is not namespaced: keys of the host and other containers could be read or exhausted",
    ),
    _deny(
        "open_by_handle_at",
        "opens any inode of a filesystem by number, outside the container root (the 'shocker' escape)",
        ("CAP_DAC_READ_SEARCH",),
    ),
    _deny("name_to_handle_at", "the other half of open_by_handle_at", ("CAP_SYS_ADMIN",)),
    _deny("bpf", "eBPF programs run inside the kernel", ("CAP_SYS_ADMIN", "CAP_BPF")),
    _deny(
        "perf_event_open",
        "performance counters observe the kernel and other processes (side channels)",
        ("CAP_SYS_ADMIN", "CAP_PERFMON"),
    ),
    _deny(
        "settimeofday clock_settime clock_adjtime",
        "the system clock is not namespaced: it would change for the whole host",
        ("CAP_SYS_TIME",),
    ),
    _deny("swapon swapoff", "swap is a host-wide setting", ("CAP_SYS_ADMIN",)),
    _deny("acct", "process accounting is host-wide", ("CAP_SYS_PACCT",)),
    _deny("quotactl quotactl_fd lookup_dcookie", "host filesystem quotas and profiling internals", ("CAP_SYS_ADMIN",)),
    _deny("iopl ioperm", "direct access to hardware I/O ports", ("CAP_SYS_RAWIO",)),
    _deny(
        "ptrace process_vm_readv process_vm_writev",
        "before Linux 4.8 a tracer could change a syscall after the filter had checked it",
        excludes=Filter(caps=("CAP_SYS_PTRACE",), min_kernel=(4, 8)),
    ),
    _deny(
        "kcmp pidfd_getfd process_madvise",
        "inspecting or stealing resources of other processes",
        ("CAP_SYS_PTRACE",),
    ),
    _deny(
        "userfaultfd",
        "lets a process pause the kernel in the middle of copying memory, a classic way to win exploit races",
        ("CAP_SYS_PTRACE",),
    ),
    _deny(
        "mbind set_mempolicy set_mempolicy_home_node migrate_pages move_pages",
        "NUMA memory placement affects the whole machine",
        ("CAP_SYS_NICE",),
    ),
    _deny("syslog", "the kernel log leaks kernel addresses and host activity", ("CAP_SYSLOG",)),
    _deny(
        "io_uring_setup io_uring_enter io_uring_register",
        "operations submitted through io_uring bypass seccomp, and it has been a rich source of kernel bugs",
    ),
    _deny(
        "uselib ustat sysfs _sysctl nfsservctl get_kernel_syms query_module",
        "obsolete interfaces nothing modern uses: less kernel code within reach",
    ),
)

DEFAULT_PROFILE = Profile(name="default", default_action=ALLOW, rules=DEFAULT_RULES)


# -- compiling --------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledFilter:
    program: bytes  # struct sock_filter[], ready for PR_SET_SECCOMP
    arch: str
    profile: Profile
    rules: tuple[Rule, ...]  # the rules that apply with these caps / arch / kernel
    unknown: tuple[str, ...] = ()  # names this architecture does not have (skipped)

    @property
    def length(self) -> int:
        return len(self.program) // bpf.INSN_SIZE


def native_arch() -> str:
    return ARCH_ALIASES.get(os.uname().machine, os.uname().machine)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """``6.1.0-18-amd64`` -> (6, 1)."""
    rel = release if release is not None else os.uname().release
    nums = [int(m.group()) if (m := re.match(r"\d+", piece)) else 0 for piece in rel.split(".")[:2]]
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


def _emit_arg_check(asm: bpf.Assembler, chk: ArgCheck, fail: bpf.Label) -> None:
    """Leave the block through ``fail`` unless the check holds (A is clobbered)."""
    lo, hi = chk.value & 0xFFFFFFFF, (chk.value >> 32) & 0xFFFFFFFF
    wide = chk.width == 64
    if chk.op == "masked_eq":
        exp_lo, exp_hi = chk.value_two & 0xFFFFFFFF, (chk.value_two >> 32) & 0xFFFFFFFF
        asm.ld(bpf.arg_lo(chk.index))
        asm.and_(lo)
        asm.jump(bpf.JEQ, exp_lo, 0, fail)
        if wide:
            asm.ld(bpf.arg_hi(chk.index))
            asm.and_(hi)
            asm.jump(bpf.JEQ, exp_hi, 0, fail)
        return
    if chk.op == "eq":
        asm.ld(bpf.arg_lo(chk.index))
        asm.jump(bpf.JEQ, lo, 0, fail)
        if wide:
            asm.ld(bpf.arg_hi(chk.index))
            asm.jump(bpf.JEQ, hi, 0, fail)
        return
    ok = bpf.Label("ok")
    if chk.op == "ne":
        asm.ld(bpf.arg_lo(chk.index))
        if wide:
            asm.jump(bpf.JEQ, lo, 0, ok)  # low halves differ: not equal
            asm.ld(bpf.arg_hi(chk.index))
            asm.jump(bpf.JEQ, hi, fail, 0)
        else:
            asm.jump(bpf.JEQ, lo, fail, 0)
    elif chk.op in ("gt", "ge"):
        low_jump = bpf.JGT if chk.op == "gt" else bpf.JGE
        if wide:
            asm.ld(bpf.arg_hi(chk.index))
            asm.jump(bpf.JGT, hi, ok, 0)  # high half bigger: the whole value is bigger
            asm.jump(bpf.JEQ, hi, 0, fail)  # high half smaller: fail
        asm.ld(bpf.arg_lo(chk.index))
        asm.jump(low_jump, lo, 0, fail)
    elif chk.op in ("lt", "le"):
        # a < v is "not a >= v"; a <= v is "not a > v".
        low_jump = bpf.JGE if chk.op == "lt" else bpf.JGT
        if wide:
            asm.ld(bpf.arg_hi(chk.index))
            asm.jump(bpf.JGT, hi, fail, 0)
            asm.jump(bpf.JEQ, hi, 0, ok)  # high half smaller: the whole value is smaller
        asm.ld(bpf.arg_lo(chk.index))
        asm.jump(low_jump, lo, fail, 0)
    else:
        raise SecurityError(f"unknown seccomp argument operator {chk.op!r}")
    asm.place(ok)


def compile_filter(
    profile: Profile,
    caps: frozenset[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> CompiledFilter:
    """Turn ``profile`` into a BPF program for ``arch``. Pure: no syscalls."""
    arch = arch or native_arch()
    kernel = kernel or kernel_version()
    if arch not in TABLES:
        raise SecurityError(
            f"no seccomp syscall table for architecture {arch}",
            "use --security-opt seccomp=unconfined on this machine (only x86_64 and aarch64 are known)",
        )
    table = TABLES[arch]
    default = profile.default_action
    lenient = default.kind in ("allow", "log")
    foreign = KILL_PROCESS if lenient else default
    rules = tuple(r for r in profile.rules if r.applies(caps, arch, kernel))

    asm = bpf.Assembler()
    asm.ld(bpf.OFF_ARCH)
    asm.jump(bpf.JEQ, AUDIT_ARCH[arch], 1, 0)
    asm.ret(foreign.value())
    asm.ld(bpf.OFF_NR)
    if arch == "x86_64":
        asm.jump(bpf.JGE, X32_SYSCALL_BIT, 0, 1)
        asm.ret((EPERM if lenient else default).value())

    unknown: list[str] = []
    decided: set[str] = set()  # names an unconditional rule already answered
    a_is_nr = True
    for rule in rules:
        for name in rule.names:
            if name not in table:
                if name not in unknown:
                    unknown.append(name)
                continue
            if name in decided:
                continue  # unreachable: an earlier rule always matches first
            nr = table[name]
            if not a_is_nr:
                asm.ld(bpf.OFF_NR)
                a_is_nr = True
            if not rule.args:
                asm.jump(bpf.JEQ, nr, 0, 1)
                asm.ret(rule.action.value())
                decided.add(name)
                continue
            nxt = bpf.Label(f"after-{name}")
            asm.jump(bpf.JEQ, nr, 0, nxt)
            for chk in rule.args:
                _emit_arg_check(asm, chk, nxt)
            asm.ret(rule.action.value())
            asm.place(nxt)
            a_is_nr = False
    asm.ret(default.value())
    try:
        program = asm.assemble()
    except bpf.BpfError as e:
        raise SecurityError(f"cannot build the seccomp filter: {e}", "simplify the seccomp profile") from None
    return CompiledFilter(program, arch, profile, rules, tuple(unknown))


# -- choosing and explaining -------------------------------------------------------


def profile_for(config) -> Profile | None:
    """The profile a SecurityConfig asks for; None for ``seccomp=unconfined``."""
    if config.seccomp == "unconfined":
        return None
    return config.seccomp_profile if config.seccomp_profile is not None else DEFAULT_PROFILE


def _outcome(action: Action) -> str:
    """What happens to a call that gets ``action``, as the end of a sentence."""
    return {"allow": "is allowed", "log": "is allowed and logged", "kill_process": "kills the process",
            "kill_thread": "kills the thread", "trap": "gets SIGSYS"}.get(action.kind, f"fails with {action}")


def explain_filter(compiled: CompiledFilter) -> str:
    """The filter's defaults as sentences (the seccomp step's "why" in --explain)."""
    prof = compiled.profile
    where = f" (from {prof.source})" if prof.source else ""
    lenient = prof.default_action.kind in ("allow", "log")
    text = (f"The {prof.name} profile{where} is {compiled.length} BPF instructions for {compiled.arch}. "
            f"A call it does not list {_outcome(prof.default_action)}; a call made through another architecture "
            + ("kills the process, because a deny-list written in this architecture's numbers cannot cover "
               "another's" if lenient else _outcome(prof.default_action)))
    if compiled.arch == "x86_64":
        text += "; an x32 call (nr >= 0x40000000) " + (_outcome(EPERM) if lenient else _outcome(prof.default_action))
    return text + "."


def describe_filter(compiled: CompiledFilter) -> list[str]:
    """What the filter blocks and why, one line per rule (for --explain)."""
    prof = compiled.profile
    where = f" from {prof.source}" if prof.source else ""
    lines = [
        f"seccomp profile {prof.name}{where}: {compiled.length} BPF instructions for {compiled.arch}; "
        f"any other call: {prof.default_action}"
    ]
    lenient = prof.default_action.kind in ("allow", "log")
    lines.append(
        "  other architectures: " + ("killed (a deny-list cannot cover their numbers)" if lenient else
                                     str(prof.default_action))
    )
    if compiled.arch == "x86_64":
        lines.append("  x32 system calls (nr >= 0x40000000): " + ("EPERM" if lenient else str(prof.default_action)))
    # Consecutive rules for the same calls and action read as one line
    # ("personality when arg0 == 0x0 or arg0 == 0x8 ...").
    groups: list[tuple[Rule, list[str]]] = []
    for r in compiled.rules:
        cond = " and ".join(str(a) for a in r.args)
        if groups and groups[-1][0].names == r.names and groups[-1][0].action == r.action and cond:
            groups[-1][1].append(cond)
        else:
            groups.append((r, [cond] if cond else []))
    for r, conds in groups:
        names = ", ".join(n for n in r.names if n not in compiled.unknown)
        if not names:
            continue
        when = (" when " + " or ".join(conds)) if conds else ""
        why = f": {r.why}" if r.why else ""
        unless = f" (allowed with {' or '.join(c[4:] for c in r.excludes.caps)})" if r.excludes.caps else ""
        lines.append(f"  {r.action}: {names}{when}{why}{unless}")
    if compiled.unknown:
        lines.append(f"  skipped (not on {compiled.arch}): {', '.join(compiled.unknown)}")
    lines.extend(f"  note: {n}" for n in prof.notes)
    return lines
