"""The eBPF device program in the real kernel, on this host's cgroup2 mount.

On a hybrid host like this one the v1 manager enforces the device list with
devices.allow, so the cgroup v2 program is not used by ``run`` here; but the
kernel runs a BPF_PROG_TYPE_CGROUP_DEVICE program for every process of a
cgroup in the unified hierarchy (/sys/fs/cgroup/unified) all the same. So
this loads our bytes through the verifier, attaches them with bpf(2), and
checks their effect on a child process: the same calls the v2 manager makes
(tests/cgroup2/test_devices_v2.py checks them through ``run`` in the VM).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from minicontainer.cgroups import devices
from minicontainer.cgroups.detect import detect
from minicontainer.errors import SyscallError
from minicontainer.syscalls import linux

pytestmark = pytest.mark.root

# Devices that root on the host can open (tested first) and that the default list refuses.
CANDIDATES = ("/dev/loop0", "/dev/loop1", "/dev/vda", "/dev/zram0", "/dev/loop-control")


def _openable(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


@pytest.fixture
def cgroup2_dir():
    mount = detect().v2_mount
    if not mount:
        pytest.skip("this host has no cgroup2 mount")
    path = Path(mount) / f"mc-devfilter-test-{os.getpid()}"
    try:
        path.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a cgroup in {mount}: {e}")
    try:
        yield str(path)
    finally:
        deadline = time.monotonic() + 5
        while True:
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _in_cgroup(cgroup: str, paths: list[str]) -> dict[str, str]:
    """Fork a child into ``cgroup``; it opens each path and reports ok or the errno name."""
    import errno

    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait until it is in the cgroup
        try:
            os.close(r)
            os.read(go_r, 1)
            out = []
            for p in paths:
                try:
                    os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))
                    out.append(f"{p}=ok")
                except OSError as e:
                    out.append(f"{p}={errno.errorcode.get(e.errno, e.errno)}")
            os.write(w, "\n".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    try:
        Path(cgroup, "cgroup.procs").write_text(str(pid))
    finally:
        os.write(go_w, b"1")
        os.close(go_w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


def test_the_kernel_accepts_the_program_and_enforces_it(cgroup2_dir):
    extra = [c for c in CANDIDATES if os.path.exists(c) and _openable(c)]
    if not extra:
        pytest.skip("no device here that root can open to test a refusal with")
    program = devices.filter_program(devices.rules_for())
    linux.attach_device_filter(cgroup2_dir, program)
    assert len(linux.device_filters(cgroup2_dir)) == 1
    got = _in_cgroup(cgroup2_dir, ["/dev/null", "/dev/zero", "/dev/urandom", *extra])
    assert got["/dev/null"] == got["/dev/zero"] == got["/dev/urandom"] == "ok", got
    assert all(got[p] == "EPERM" for p in extra), got


def test_a_device_rule_opens_that_device_only(cgroup2_dir):
    blocks = [c for c in CANDIDATES if os.path.exists(c) and _openable(c)
              and os.path.realpath(c).startswith("/dev/loop") and c != "/dev/loop-control"]
    if len(blocks) < 2:
        pytest.skip("needs two loop devices that root can open")
    first, second = blocks[:2]
    st = os.stat(first)
    rule = devices.DeviceRule("b", os.major(st.st_rdev), os.minor(st.st_rdev), "r")
    linux.attach_device_filter(cgroup2_dir, devices.filter_program(devices.rules_for([rule])))
    got = _in_cgroup(cgroup2_dir, [first, second])
    assert got == {first: "ok", second: "EPERM"}


def test_a_program_the_verifier_refuses_is_one_error_with_its_reason():
    # no exit: the verifier refuses to run off the end
    bad = bytes.fromhex("b400000001000000")
    with pytest.raises(SyscallError) as exc:
        fd = linux.load_device_filter(bad)
        os.close(fd)
    assert "BPF_PROG_LOAD" in str(exc.value)
    assert exc.value.hint and "verifier" in exc.value.hint
