"""The device allow-list (cgroups/devices.py) and its eBPF assembler (cgroups/ebpf.py), without root.

The program's bytes are checked instruction by instruction, and its meaning by
running it: ``run_program`` below is a small eBPF interpreter for the
instructions the assembler knows, which answers allow (1) or deny (0) for a
device access the way the kernel's cgroup hook would.
"""

from __future__ import annotations

import itertools
import os
import stat

import pytest

from minicontainer.cgroups import devices, ebpf, manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.devices import (
    BPF_DEVCG_ACC_MKNOD as M,
    BPF_DEVCG_ACC_READ as R,
    BPF_DEVCG_ACC_WRITE as W,
    DEFAULT_RULES,
    Device,
    DeviceRule,
    filter_program,
    parse_device,
    parse_devices,
)
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import parse_resources
from minicontainer.errors import CgroupError, UsageError

pytestmark = pytest.mark.unit

BLOCK, CHAR = devices.BPF_DEVCG_DEV_BLOCK, devices.BPF_DEVCG_DEV_CHAR


# -- the assembler: bytes ----------------------------------------------------------------


@pytest.mark.parametrize("emit, hex_bytes, text", [
    (lambda a: a.ldx_w(2, 1, 0), "6112000000000000", "r2 = *(u32 *)(r1 + 0)"),
    (lambda a: a.ldx_w(5, 1, 8), "6115080000000000", "r5 = *(u32 *)(r1 + 8)"),
    (lambda a: a.and32(2, 0xFFFF), "54020000ffff0000", "w2 &= 0xffff"),
    (lambda a: a.rsh32(3, 16), "7403000010000000", "w3 >>= 16"),
    (lambda a: a.mov32(0, 1), "b400000001000000", "w0 = 1"),
    (lambda a: a.mov32_reg(1, 3), "bc31000000000000", "w1 = w3"),
    (lambda a: a.exit(), "9500000000000000", "exit"),
])
def test_each_instruction_encodes_as_the_kernel_reads_it(emit, hex_bytes, text):
    a = ebpf.Assembler()
    emit(a)
    if a.insns[-1].code != ebpf.EXIT:
        a.exit()
    out = a.assemble()
    assert out[:8].hex() == hex_bytes
    assert ebpf.disassemble(out)[0] == f"  0: {text}"


def test_jumps_count_from_the_next_instruction():
    a = ebpf.Assembler()
    skip = a.label("skip")
    a.jne(2, 2, skip)  # 0
    a.jne_reg(1, 3, skip)  # 1
    a.jeq(4, 136, skip)  # 2
    a.mov32(0, 1)  # 3
    a.exit()  # 4
    a.place(skip)
    a.mov32(0, 0)  # 5
    a.exit()
    out = a.assemble()
    assert out[0:8].hex() == "5502040002000000"  # off 4: 1 + 4 = 5
    assert out[8:16].hex() == "5d31030000000000"  # src r3 in the high nibble, dst r1 in the low
    assert out[16:24].hex() == "1504020088000000"
    assert ebpf.disassemble(out)[:3] == ["  0: if r2 != 0x2 goto pc+4", "  1: if r1 != r3 goto pc+3",
                                         "  2: if r4 == 0x88 goto pc+2"]


def test_a_large_immediate_is_stored_as_its_32_bits():
    a = ebpf.Assembler()
    a.and32(1, 0xFFFFFFFF)
    a.exit()
    assert a.assemble()[:8].hex() == "54010000ffffffff"


@pytest.mark.parametrize("build, message", [
    (lambda a: None, "empty"),
    (lambda a: a.mov32(0, 1), "end with exit"),
    (lambda a: (a.jne(2, 1, a.label("nowhere")), a.exit()), "never placed"),
    (lambda a: a.mov32(11, 0), "no register r11"),
    (lambda a: a.mov32(0, 1 << 33), "32 bits"),
])
def test_what_cannot_be_encoded_is_refused(build, message):
    a = ebpf.Assembler()
    with pytest.raises(ebpf.EbpfError, match=message):
        build(a)
        a.assemble()


def test_backward_jumps_and_labels_placed_twice_are_refused():
    a = ebpf.Assembler()
    top = a.label("top")
    a.place(top)
    a.jne(2, 1, top)
    a.exit()
    with pytest.raises(ebpf.EbpfError, match="backward"):
        a.assemble()
    with pytest.raises(ebpf.EbpfError, match="twice"):
        a.place(top)


def test_decode_refuses_a_partial_instruction():
    with pytest.raises(ebpf.EbpfError, match="8-byte"):
        ebpf.decode(b"\x95" * 12)


# -- the device program: its shape and what it allows ---------------------------------------


def run_program(program: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """A tiny eBPF interpreter for the instructions of ebpf.py, over
    struct bpf_cgroup_dev_ctx; returns r0 at exit."""
    ctx = {0: (access << 16) | dev_type, 4: major, 8: minor}
    regs = [0] * 11
    regs[1] = "ctx"
    insns = ebpf.decode(program)
    pc, steps = 0, 0
    while True:
        code, dst, src, off, imm = insns[pc]
        steps += 1
        assert steps <= len(insns), "a device filter never loops"
        pc += 1
        u32 = imm & 0xFFFFFFFF
        if code == ebpf.LDX_MEM_W:
            assert regs[src] == "ctx" and off in ctx, "only the context is read"
            regs[dst] = ctx[off]
        elif code == ebpf.AND32_K:
            regs[dst] = (regs[dst] & u32) & 0xFFFFFFFF
        elif code == ebpf.RSH32_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == ebpf.MOV32_K:
            regs[dst] = u32
        elif code == ebpf.MOV32_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == ebpf.JNE_K:
            pc += off if regs[dst] != u32 else 0
        elif code == ebpf.JEQ_K:
            pc += off if regs[dst] == u32 else 0
        elif code == ebpf.JNE_X:
            pc += off if regs[dst] != regs[src] else 0
        elif code == ebpf.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unknown instruction {code:#x}")


def reference(rules, dev_type: int, access: int, major: int, minor: int) -> int:
    """What the list means, said plainly: some rule covers type, numbers and every bit of the access."""
    kind = {BLOCK: "b", CHAR: "c"}[dev_type]
    for r in rules:
        bits = sum({"r": R, "w": W, "m": M}[c] for c in r.access)
        if r.kind in ("a", kind) and r.major in (None, major) and r.minor in (None, minor) and access & ~bits == 0:
            return 1
    return 0


def test_the_default_program_starts_by_unpacking_the_context():
    text = ebpf.disassemble(filter_program(DEFAULT_RULES))
    assert text[:6] == ["  0: r2 = *(u32 *)(r1 + 0)", "  1: w2 &= 0xffff", "  2: r3 = *(u32 *)(r1 + 0)",
                        "  3: w3 >>= 16", "  4: r4 = *(u32 *)(r1 + 4)", "  5: r5 = *(u32 *)(r1 + 8)"]
    assert text[-2:] == [f"{len(text) - 2:3}: w0 = 0", f"{len(text) - 1:3}: exit"]  # the default: deny


def test_a_rule_block_for_one_device():
    program = filter_program([DeviceRule("b", 7, 0, "r")])
    assert [line.split(": ", 1)[1] for line in ebpf.disassemble(program)[6:]] == [
        "if r2 != 0x1 goto pc+7",  # not a block device: next rule
        "w1 = w3", "w1 &= 0x2", "if r1 != r3 goto pc+4",  # an access bit beyond read: next rule
        "if r4 != 0x7 goto pc+3",
        "if r5 != 0x0 goto pc+2",
        "w0 = 1", "exit",
        "w0 = 0", "exit",
    ]


CASES = {
    "read the null device": ((CHAR, R, 1, 3), 1),
    "write and read /dev/zero": ((CHAR, R | W, 1, 5), 1),
    "a pty": ((CHAR, R | W, 136, 7), 1),
    "/dev/ptmx": ((CHAR, R | W, 5, 2), 1),
    "the console": ((CHAR, W, 5, 1), 1),
    "mknod of the host's disk": ((BLOCK, M, 254, 0), 1),
    "mknod of /dev/mem": ((CHAR, M, 1, 1), 1),
    "read the host's disk": ((BLOCK, R, 254, 0), 0),
    "write a loop device": ((BLOCK, W, 7, 0), 0),
    "read /dev/mem": ((CHAR, R, 1, 1), 0),
    "read /dev/kmsg": ((CHAR, R, 1, 11), 0),
    "block 1:3 is not the null device": ((BLOCK, R, 1, 3), 0),
    "mknod and read a disk in one access": ((BLOCK, M | R, 8, 0), 0),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_default_program_allows_the_standard_devices_only(case):
    (dev_type, access, major, minor), verdict = CASES[case]
    assert run_program(filter_program(DEFAULT_RULES), dev_type, access, major, minor) == verdict


def test_every_access_agrees_with_the_plain_reading_of_the_rules():
    rules = devices.rules_for([DeviceRule("b", 7, 0, "r"), DeviceRule("c", 10, None, "rw"),
                               DeviceRule("c", None, 200, "w")])
    program = filter_program(rules)
    for dev_type, access, major, minor in itertools.product((BLOCK, CHAR), range(1, 8), (1, 5, 7, 10, 136, 254),
                                                            (0, 1, 3, 200)):
        assert run_program(program, dev_type, access, major, minor) == reference(rules, dev_type, access, major,
                                                                               minor), (dev_type, access, major,
                                                                                        minor)


def test_a_device_rule_allows_only_its_access():
    program = filter_program(devices.rules_for([DeviceRule("b", 7, 0, "r")]))
    assert run_program(program, BLOCK, R, 7, 0) == 1
    assert run_program(program, BLOCK, W, 7, 0) == 0
    assert run_program(program, BLOCK, R | W, 7, 0) == 0  # O_RDWR asks for both
    assert run_program(program, BLOCK, R, 7, 1) == 0


def test_an_all_devices_rule_allows_everything():
    program = filter_program([devices.ALL_DEVICES])
    assert all(run_program(program, t, a, 8, 0) == 1 for t in (BLOCK, CHAR) for a in range(1, 8))


def test_rules_print_as_devices_allow_takes_them():
    assert [str(r) for r in DEFAULT_RULES] == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]
    assert str(devices.ALL_DEVICES) == "a"
    # a --device for a standard device adds nothing twice
    assert devices.rules_for([DeviceRule("c", 1, 3, "rwm", "--device /dev/null")]) == DEFAULT_RULES


# -- --device --------------------------------------------------------------------------------


class FakeStat:
    def __init__(self, mode, rdev=0):
        self.st_mode, self.st_rdev = mode, rdev


HOST = {
    "/dev/loop0": FakeStat(stat.S_IFBLK | 0o660, os.makedev(7, 0)),
    "/dev/null": FakeStat(stat.S_IFCHR | 0o666, os.makedev(1, 3)),
    "/etc/passwd": FakeStat(stat.S_IFREG | 0o644),
}


def fake_stat(path):
    if path not in HOST:
        raise FileNotFoundError(2, "No such file or directory", path)
    return HOST[path]


@pytest.mark.parametrize("text, path, access", [
    ("/dev/loop0", "/dev/loop0", "rwm"),
    ("/dev/loop0:/dev/disk0", "/dev/disk0", "rwm"),
    ("/dev/loop0:r", "/dev/loop0", "r"),  # Docker: a second part that is a mode is the mode
    ("/dev/loop0:/dev/disk0:mr", "/dev/disk0", "rm"),
    ("/dev/loop0:/dev/sub/../disk0x:w", None, None),
])
def test_parse_device_forms(text, path, access):
    if path is None:
        with pytest.raises(UsageError, match="without '..'"):
            parse_device(text, fake_stat)
        return
    d = parse_device(text, fake_stat)
    assert (d.path, d.access, d.kind, d.major, d.minor, d.mode) == (path, access, "b", 7, 0, 0o660)
    assert d.rule == DeviceRule("b", 7, 0, access)


@pytest.mark.parametrize("text, message", [
    ("", "needs a value"),
    ("/dev/nosuch", "No such file"),
    ("/etc/passwd", "not a device node"),
    ("dev/loop0", "not an absolute path"),
    ("/dev/loop0:/dev/x:rwx", "permissions 'rwx'"),
    ("/dev/loop0:/dev/x:rr", "permissions 'rr'"),
    ("/dev/loop0:relative", "must be an absolute path"),
    ("/dev/loop0:/dev", "must be an absolute path of a file"),
    ("/dev/loop0:/dev/x:r:w", "invalid --device value"),
    ("/dev/loop0::r", "invalid --device value"),
])
def test_bad_device_values_are_one_usage_error(text, message):
    with pytest.raises(UsageError, match=message) as exc:
        parse_device(text, fake_stat)
    assert exc.value.hint


def test_two_devices_for_one_path_are_refused():
    assert len(parse_devices(["/dev/null:/dev/x", "/dev/null:/dev/x"], fake_stat)) == 1
    with pytest.raises(UsageError, match="two devices for /dev/x"):
        parse_devices(["/dev/null:/dev/x", "/dev/loop0:/dev/x"], fake_stat)


def test_resources_keep_the_rules_and_stay_empty_of_limits():
    d = parse_device("/dev/loop0:r", fake_stat)
    r = parse_resources(devices=[d])
    assert r.devices == (d.rule,) and not r.all_devices
    assert r.is_empty()  # no limit: a host without cgroups still runs it (with a warning)
    assert parse_resources(all_devices=True).is_empty()


# -- the cgroup steps: v1 files, v2 program --------------------------------------------------


def v1_host(tmp_path, controllers=("freezer", "memory", "devices")):
    fake = FakeCgroupFs()
    mounts = {c: fake.add_v1(tmp_path / c, (c,)) for c in controllers}
    return fake, HostCgroups(mode="v1", v1_mounts=mounts)


def v2_host(tmp_path):
    fake = FakeCgroupFs()
    mount = fake.add_v2(tmp_path / "cg", ("memory", "pids"))
    return fake, HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("memory", "pids")))


def test_v1_denies_everything_then_allows_each_rule(tmp_path):
    fake, host = v1_host(tmp_path)
    extra = DeviceRule("b", 7, 0, "r", "--device /dev/loop0")
    m = manager_for("c1", parse_resources(devices=[extra]), host=host, fs=fake)
    steps = [s for s in m.plan() if s.file.endswith(("devices.deny", "devices.allow"))]
    assert [(os.path.basename(s.file), s.value) for s in steps] == \
        [("devices.deny", "a")] + [("devices.allow", str(r)) for r in (*DEFAULT_RULES, extra)]
    assert all(s.stage == "limit" and s.counterpart.startswith("the eBPF device program") for s in steps)
    assert steps[-1].flag == "--device" and "--device /dev/loop0" in steps[-1].why
    m.create()
    m.apply()
    listing = (tmp_path / "devices" / "minicontainer" / "c1" / "devices.list").read_text().splitlines()
    assert listing == [str(r) for r in (*DEFAULT_RULES, extra)]


def test_v1_privileged_keeps_the_parents_list(tmp_path):
    fake, host = v1_host(tmp_path)
    m = manager_for("c1", parse_resources(all_devices=True), host=host, fs=fake)
    assert not [s for s in m.plan() if "devices." in s.file]
    m.create()
    m.apply()
    assert (tmp_path / "devices" / "minicontainer" / "c1" / "devices.list").read_text() == "a *:* rwm\n"


def test_v1_without_the_devices_controller_is_refused_before_anything_exists(tmp_path):
    fake, host = v1_host(tmp_path, ("freezer", "memory"))
    m = manager_for("c1", parse_resources(), host=host, fs=fake)
    with pytest.raises(CgroupError, match="devices controller is not mounted") as exc:
        m.create()
    assert "mount -t cgroup -o devices" in exc.value.hint and "--privileged" in exc.value.hint
    assert fake.log == []
    # with --privileged there is nothing to enforce
    manager_for("c1", parse_resources(all_devices=True), host=host, fs=fake).create()


def test_v2_attaches_one_program_before_the_child_joins(tmp_path):
    fake, host = v2_host(tmp_path)
    m = manager_for("c1", parse_resources(pids_limit="5"), host=host, fs=fake)
    steps = m.plan()
    attach = [s for s in steps if s.action == "attach-device-filter"]
    assert len(attach) == 1
    a = attach[0]
    assert a.file == m.path and a.stage == "limit" and a.program == filter_program(DEFAULT_RULES)
    assert a.value == devices.summary(DEFAULT_RULES)
    actions = [s.action for s in steps]
    assert actions.index("attach-device-filter") < actions.index("join")
    m.create()
    m.apply()
    assert fake.device_filters == {m.path: [a.program]}
    m.destroy()
    assert fake.device_filters == {}  # removing the cgroup detaches it


def test_v2_describe_and_shell_of_the_attach_step(tmp_path):
    fake, host = v2_host(tmp_path)
    a = next(s for s in manager_for("c1", None, host=host, fs=fake).plan() if s.action == "attach-device-filter")
    n = len(a.program) // 8
    assert a.describe() == (f"attach an eBPF device filter ({n} instructions) to {a.file}: allow c *:* m, b *:* m, "
                            "c 1:3 rwm, c 1:5 rwm, c 1:7 rwm, c 1:8 rwm, c 1:9 rwm, c 5:0 rwm, c 5:1 rwm, "
                            "c 5:2 rwm, c 136:* rwm; every other device is refused (EPERM)")
    assert "BPF_PROG_TYPE_CGROUP_DEVICE" in a.why and "BPF_PROG_ATTACH" in a.why
    assert a.shell().endswith(f"bpftool cgroup attach {a.file} device pinned /sys/fs/bpf/devices multi")
    assert "devices.allow" in a.counterpart


def test_v2_privileged_has_no_program(tmp_path):
    fake, host = v2_host(tmp_path)
    m = manager_for("c1", parse_resources(all_devices=True), host=host, fs=fake)
    assert not [s for s in m.plan() if s.action == "attach-device-filter"]


def test_v2_a_device_adds_its_rule_to_the_program(tmp_path):
    fake, host = v2_host(tmp_path)
    d = Device(host="/dev/loop0", path="/dev/disk0", kind="b", major=7, minor=0, access="r")
    a = next(s for s in manager_for("c1", parse_resources(devices=[d]), host=host, fs=fake).plan()
             if s.action == "attach-device-filter")
    assert a.value.endswith(", b 7:0 r") and a.flag == "--device"
    assert run_program(a.program, BLOCK, R, 7, 0) == 1
    assert run_program(a.program, BLOCK, W, 7, 0) == 0


def test_resources_take_device_strings_as_the_cli_gives_them():
    r = parse_resources(devices=["/dev/loop0:/dev/disk0:r", "/dev/null"], stat=fake_stat)
    assert r.devices == (DeviceRule("b", 7, 0, "r"), DeviceRule("c", 1, 3, "rwm"))
