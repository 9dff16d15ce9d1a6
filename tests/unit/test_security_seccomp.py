"""The seccomp compiler, checked by running its BPF programs in a small interpreter.

The interpreter below implements the part of classic BPF our compiler emits
(and refuses anything else), over a ``struct seccomp_data`` we pack
ourselves, so every verdict here is what the kernel would compute.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import struct

import pytest

from minicontainer.errors import SecurityError, UsageError
from minicontainer.security import bpf, seccomp as sc
from minicontainer.security.caps import DEFAULT_CAPS
from minicontainer.security.config import parse_security
from minicontainer.security.seccomp_profile import parse_docker_profile
from minicontainer.security.syscall_tables import AARCH64, X86_64

pytestmark = pytest.mark.unit

ARCH_X86_64 = 0xC000003E
ARCH_I386 = 0x40000003
ARCH_AARCH64 = 0xC00000B7


def run_bpf(program: bytes, nr: int, arch: int = ARCH_X86_64, args=(), ip: int = 0) -> int:
    """Run ``program`` on one seccomp_data, like the kernel's classic BPF interpreter."""
    full = list(args) + [0] * (6 - len(args))
    data = struct.pack("=iIQ6Q", nr, arch, ip, *[a & (2**64 - 1) for a in full])
    insns = bpf.disassemble(program)
    assert 0 < len(insns) <= bpf.BPF_MAXINSNS
    pc, acc = 0, 0
    while True:
        assert 0 <= pc < len(insns), "jumped out of the program"
        code, jt, jf, k = insns[pc]
        if code == bpf.LD_ABS:
            assert k % 4 == 0 and k + 4 <= len(data), f"bad load offset {k}"
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == bpf.AND:
            acc &= k
            pc += 1
        elif code in (bpf.JEQ, bpf.JGT, bpf.JGE, bpf.JSET):
            test = {bpf.JEQ: acc == k, bpf.JGT: acc > k, bpf.JGE: acc >= k, bpf.JSET: bool(acc & k)}[code]
            pc += 1 + (jt if test else jf)
        elif code == bpf.RET:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc}")


def verdict(ret: int) -> str:
    action = ret & 0xFFFF0000
    if ret == sc.SECCOMP_RET_KILL_PROCESS:
        return "kill_process"
    if action == sc.SECCOMP_RET_ALLOW:
        return "allow"
    if action == sc.SECCOMP_RET_ERRNO:
        return errno.errorcode[ret & 0xFFFF]
    if action == sc.SECCOMP_RET_LOG:
        return "log"
    if action == sc.SECCOMP_RET_TRAP:
        return "trap"
    if ret == sc.SECCOMP_RET_KILL_THREAD:
        return "kill_thread"
    return hex(ret)


def default_program(caps=DEFAULT_CAPS, arch="x86_64", kernel=(6, 1)) -> bytes:
    return sc.compile_filter(sc.DEFAULT_PROFILE, frozenset(caps), arch, kernel).program


def call(program: bytes, name: str, *args: int, table=X86_64, arch=ARCH_X86_64) -> str:
    return verdict(run_bpf(program, table[name], arch, args))


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17


# -- the default filter ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["mount", "umount2", "pivot_root", "kexec_load", "kexec_file_load", "init_module", "finit_module",
     "delete_module", "open_by_handle_at", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
     "reboot", "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "acct", "lookup_dcookie",
     "quotactl", "iopl", "ioperm", "userfaultfd", "fsopen", "fsmount", "move_mount", "open_tree", "setns",
     "name_to_handle_at", "io_uring_setup"],
)
def test_default_blocks_dangerous_calls_with_eperm(name):
    assert call(default_program(), name) == "EPERM"


@pytest.mark.parametrize("name", ["read", "write", "openat", "execve", "exit_group", "chroot", "setuid", "capset",
                                  "prctl", "close_range", "adjtimex", "socket", "ptrace"])
def test_default_allows_ordinary_calls(name):
    assert call(default_program(), name) == "allow"


def test_unshare_user_namespace_refused_but_other_namespaces_left_to_capabilities():
    prog = default_program()
    assert call(prog, "unshare", CLONE_NEWUSER) == "EPERM"
    assert call(prog, "unshare", CLONE_NEWUSER | CLONE_NEWNS) == "EPERM"
    # The kernel itself refuses CLONE_NEWNS without CAP_SYS_ADMIN; the filter lets it through.
    assert call(prog, "unshare", CLONE_NEWNS) == "allow"
    # Garbage in the high half does not hide the flag (it is in the low word).
    assert call(prog, "unshare", (0xFFFF << 32) | CLONE_NEWUSER) == "EPERM"


def test_clone_with_new_user_namespace_refused_plain_fork_allowed():
    prog = default_program()
    assert call(prog, "clone", CLONE_NEWUSER | SIGCHLD) == "EPERM"
    assert call(prog, "clone", SIGCHLD) == "allow"
    assert call(prog, "clone3") == "ENOSYS"  # libc falls back to clone(2)


def test_foreign_architecture_is_killed_and_x32_refused():
    prog = default_program()
    # i386's 21 is mount; with a deny-list in x86_64 numbers the only safe answer is to kill.
    assert verdict(run_bpf(prog, 21, ARCH_I386)) == "kill_process"
    assert verdict(run_bpf(prog, 0, ARCH_I386)) == "kill_process"
    assert verdict(run_bpf(prog, X86_64["read"] | sc.X32_SYSCALL_BIT)) == "EPERM"
    assert verdict(run_bpf(prog, X86_64["mount"] | sc.X32_SYSCALL_BIT)) == "EPERM"


def test_tiocsti_refused_even_with_high_bits_set():
    prog = default_program()
    assert call(prog, "ioctl", 0, sc.TIOCSTI) == "EPERM"
    assert call(prog, "ioctl", 0, sc.TIOCLINUX) == "EPERM"
    # flatpak CVE-2019-10063: the kernel ignores the high half of the request.
    assert call(prog, "ioctl", 0, (1 << 32) | sc.TIOCSTI) == "EPERM"
    assert call(prog, "ioctl", 0, 0x5401) == "allow"  # TCGETS


def test_personality_only_linux_personalities():
    prog = default_program()
    for ok in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert call(prog, "personality", ok) == "allow", hex(ok)
    assert call(prog, "personality", 0x0040000) == "EPERM"  # ADDR_NO_RANDOMIZE
    assert call(prog, "personality", 0x0400000) == "EPERM"  # READ_IMPLIES_EXEC


def test_device_nodes_refused_fifos_allowed():
    prog = default_program()
    blk, chr_, fifo = 0o060600, 0o020600, 0o010600
    assert call(prog, "mknod", 0, blk, os.makedev(8, 0)) == "EPERM"
    assert call(prog, "mknod", 0, chr_, os.makedev(1, 1)) == "EPERM"
    assert call(prog, "mknodat", 0, 0, blk) == "EPERM"
    assert call(prog, "mknod", 0, fifo) == "allow"
    assert call(prog, "mknodat", 0, 0, 0o140600) == "allow"  # a socket


def test_capabilities_reenable_calls_like_docker():
    with_admin = default_program(DEFAULT_CAPS | {"CAP_SYS_ADMIN"})
    assert call(with_admin, "mount") == "allow"
    assert call(with_admin, "unshare", CLONE_NEWUSER) == "allow"
    assert call(with_admin, "keyctl") == "EPERM"  # never re-enabled
    assert call(default_program(DEFAULT_CAPS | {"CAP_SYS_TIME"}), "settimeofday") == "allow"
    assert call(default_program(DEFAULT_CAPS | {"CAP_SYS_BOOT"}), "reboot") == "allow"
    assert call(default_program(DEFAULT_CAPS | {"CAP_BPF"}), "bpf") == "allow"


def test_ptrace_blocked_only_before_linux_4_8():
    assert call(default_program(kernel=(4, 4)), "ptrace") == "EPERM"
    assert call(default_program(kernel=(4, 8)), "ptrace") == "allow"
    assert call(default_program(DEFAULT_CAPS | {"CAP_SYS_PTRACE"}, kernel=(4, 4)), "ptrace") == "allow"


def test_aarch64_program_uses_aarch64_numbers_and_arch():
    prog = default_program(arch="aarch64")
    assert verdict(run_bpf(prog, AARCH64["mount"], ARCH_AARCH64)) == "EPERM"
    assert verdict(run_bpf(prog, AARCH64["read"], ARCH_AARCH64)) == "allow"
    assert verdict(run_bpf(prog, AARCH64["keyctl"], ARCH_AARCH64)) == "EPERM"
    assert verdict(run_bpf(prog, X86_64["read"], ARCH_X86_64)) == "kill_process"
    # No x32 range check on aarch64: a high number is just an unknown call.
    assert verdict(run_bpf(prog, 0x40000000, ARCH_AARCH64)) == "allow"


def test_every_default_rule_name_exists_somewhere():
    for rule in sc.DEFAULT_RULES:
        for name in rule.names:
            assert name in X86_64 or name in AARCH64, f"typo in the default profile: {name}"


def test_program_structure_checks_arch_first():
    insns = bpf.disassemble(default_program())
    assert insns[0] == (bpf.LD_ABS, 0, 0, bpf.OFF_ARCH)
    assert insns[1][0] == bpf.JEQ and insns[1][3] == ARCH_X86_64
    assert insns[-1] == (bpf.RET, 0, 0, sc.SECCOMP_RET_ALLOW)
    assert all(code != bpf.BPF_JMP | bpf.BPF_JA for code, *_ in insns)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(SecurityError, match="riscv64"):
        sc.compile_filter(sc.DEFAULT_PROFILE, frozenset(), "riscv64", (6, 1))


# -- argument comparisons, checked against Python's own arithmetic ------------------


def _python_cmp(op, a, v, v2):
    return {
        "eq": a == v, "ne": a != v, "lt": a < v, "le": a <= v, "gt": a > v, "ge": a >= v,
        "masked_eq": (a & v) == v2,
    }[op]


@pytest.mark.parametrize("op", sc.ARG_OPS)
def test_64bit_argument_comparisons_match_python(op):
    rng = random.Random(op)
    edge = [0, 1, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, 2**64 - 1, 0x1_0000_0005, 0x5_0000_0001]
    values = edge + [rng.getrandbits(64) for _ in range(10)] + [rng.getrandbits(3) << 32 | rng.getrandbits(2) for _ in range(8)]
    for v in values[:12]:
        v2 = v & 0xF0F0F0F0F0F0F0F0
        profile = sc.Profile("t", sc.Action("errno", 1), (sc.Rule(("read",), sc.ALLOW, (sc.ArgCheck(0, op, v, v2),)),))
        prog = sc.compile_filter(profile, frozenset(), "x86_64", (6, 1)).program
        for a in values + [v, v + 1, max(v - 1, 0), v ^ (1 << 32), v2]:
            a &= 2**64 - 1
            got = call(prog, "read", a) == "allow"
            assert got == _python_cmp(op, a, v, v2), f"{op}: a={a:#x} v={v:#x} v2={v2:#x}"


def test_several_conditions_in_one_rule_all_must_hold():
    rule = sc.Rule(("read",), sc.ALLOW, (sc.ArgCheck(0, "eq", 3), sc.ArgCheck(2, "lt", 100)))
    prog = sc.compile_filter(sc.Profile("t", sc.EPERM, (rule,)), frozenset(), "x86_64", (6, 1)).program
    assert call(prog, "read", 3, 0, 99) == "allow"
    assert call(prog, "read", 3, 0, 100) == "EPERM"
    assert call(prog, "read", 4, 0, 1) == "EPERM"


# -- the assembler -----------------------------------------------------------------


def test_assembler_refuses_long_jumps_and_long_programs():
    asm = bpf.Assembler()
    far = bpf.Label("far")
    asm.jump(bpf.JEQ, 1, far, 0)
    for _ in range(300):
        asm.ret(0)
    asm.place(far)
    asm.ret(0)
    with pytest.raises(bpf.BpfError, match="0..255"):
        asm.assemble()
    asm = bpf.Assembler()
    for _ in range(bpf.BPF_MAXINSNS + 1):
        asm.ret(0)
    with pytest.raises(bpf.BpfError, match="4096"):
        asm.assemble()


def test_format_program_is_readable():
    lines = bpf.format_program(default_program())
    assert lines[0].strip() == "0: ld   [4]"
    assert "ret" in lines[-1]


def test_describe_names_blocked_calls_and_reasons():
    compiled = sc.compile_filter(sc.DEFAULT_PROFILE, frozenset(DEFAULT_CAPS), "x86_64", (6, 1))
    text = "\n".join(sc.describe_filter(compiled))
    assert "keyctl" in text and "not namespaced" in text
    assert "killed" in text and "x32" in text
    assert "allowed with SYS_ADMIN" in text


# -- syscall tables ----------------------------------------------------------------


def test_x86_64_table_matches_installed_kernel_headers():
    header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    if not os.path.exists(header):
        pytest.skip("linux-libc-dev headers not installed")
    found = dict(re.findall(r"#define __NR_(\w+) (\d+)", open(header).read()))
    assert found, "no syscall numbers in the header"
    for name, nr in found.items():
        assert X86_64.get(name) == int(nr), name


def test_tables_have_no_duplicate_numbers():
    for table in (X86_64, AARCH64):
        assert len(set(table.values())) == len(table)


# -- Docker JSON profiles ----------------------------------------------------------


def _docker_style_profile(**over):
    """A profile in Docker's format, written for these tests (an allow-list)."""
    allowed = sorted(set(X86_64) - {"mount", "umount2", "keyctl", "reboot", "socket", "personality", "ptrace"})
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": allowed + ["made_up_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["keyctl"], "action": "SCMP_ACT_KILL_PROCESS", "includes": {"arches": ["amd64"]}},
            {"names": ["umount2"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["amd64"]}},
        ],
    }
    doc.update(over)
    return doc


def test_docker_profile_compiles_and_behaves():
    profile = parse_docker_profile(_docker_style_profile(), "test.json")
    compiled = sc.compile_filter(profile, frozenset(DEFAULT_CAPS), "x86_64", (6, 1))
    prog = compiled.program
    assert compiled.length < bpf.BPF_MAXINSNS
    assert "made_up_call" in compiled.unknown
    assert call(prog, "read") == "allow"
    assert call(prog, "mount") == "EPERM"  # default errno 1, no CAP_SYS_ADMIN
    assert call(prog, "socket", 2) == "allow"
    assert call(prog, "socket", 40) == "EPERM"  # AF_VSOCK
    assert call(prog, "personality", 0) == "allow"
    assert call(prog, "personality", 8) == "EPERM"
    assert call(prog, "ptrace") == "allow"
    assert call(prog, "reboot") == "ENOSYS"
    assert call(prog, "keyctl") == "kill_process"
    assert call(prog, "umount2") == "EPERM"  # excluded on amd64 -> default
    # A non-allow default applies to foreign ABIs too (not kill).
    assert verdict(run_bpf(prog, 3, ARCH_I386)) == "EPERM"
    assert verdict(run_bpf(prog, X86_64["read"] | sc.X32_SYSCALL_BIT)) == "EPERM"
    with_admin = sc.compile_filter(profile, frozenset(DEFAULT_CAPS | {"CAP_SYS_ADMIN"}), "x86_64", (6, 1))
    assert call(with_admin.program, "mount") == "allow"
    old = sc.compile_filter(profile, frozenset(DEFAULT_CAPS), "x86_64", (4, 4))
    assert call(old.program, "ptrace") == "EPERM"
    assert any("SCMP_ARCH_X86" in n for n in profile.notes)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"defaultAction": "SCMP_ACT_TRACE"}, "not supported"),
        ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
        ({"listenerPath": "/run/x.sock"}, "listenerPath"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}, "not supported"),
        ({"syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}, "names"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}, "comparison"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "unsigned"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": "x"}]}, "errnoRet"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}, "minKernel"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "priority": 3}]}, "priority"),
        ({"someNewField": 1}, "someNewField"),
    ],
)
def test_docker_profile_errors_are_clear(change, message):
    with pytest.raises(UsageError, match=message) as exc:
        parse_docker_profile(_docker_style_profile(**change), "bad.json")
    assert exc.value.hint
    assert "bad.json" in exc.value.message


def test_profile_file_through_security_opt(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_docker_style_profile()))
    cfg = parse_security(security_opt=[f"seccomp={path}"])
    assert cfg.seccomp == str(path)
    assert cfg.seccomp_profile is not None and cfg.seccomp_profile.default_action == sc.Action("errno", 1)

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_security(security_opt=[f"seccomp={tmp_path / 'broken.json'}"])
    with pytest.raises(UsageError, match="cannot read"):
        parse_security(security_opt=[f"seccomp={tmp_path / 'missing.json'}"])
    with pytest.raises(UsageError, match="cannot read"):
        parse_security(security_opt=[f"seccomp={tmp_path}"])  # a directory


def test_kernel_version_parsing():
    assert sc.kernel_version("6.1.0-18-amd64") == (6, 1)
    assert sc.kernel_version("4.8") == (4, 8)
    assert sc.kernel_version("5.15.0+") == (5, 15)
    assert sc.kernel_version("6") == (6, 0)
