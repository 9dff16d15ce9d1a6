"""The device allow-list on cgroup v2 (the VM of scripts/vm-test): an eBPF program, through `minicontainer run`.

With ``--security-opt seccomp=unconfined`` root in the container may mknod any
device (it keeps CAP_MKNOD, and the list allows ``b *:* m``), but opening one
needs a rule: the BPF_PROG_TYPE_CGROUP_DEVICE program attached to the
container's cgroup refuses the VM's disk /dev/vda with EPERM, while root
outside opens it. ``--device`` adds a rule, ``--privileged`` attaches nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]

ROOT = Path("/sys/fs/cgroup")
UNCONFINED = ("--security-opt", "seccomp=unconfined")


@pytest.fixture
def disk() -> tuple[str, int, int]:
    """A disk root outside the container can open: the VM's scratch disk."""
    for path in ("/dev/vda", "/dev/loop0"):
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError:
            continue
        st = os.stat(path)
        return path, os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("no disk that root can open here")


def sh(script: str, *flags: str):
    return mc("run", "--rm", *flags, "mini", "/bin/sh", "-c", script, timeout=scale(60))


PROBE = "mknod /dev/probe b {ma} {mi} && echo made; head -c1 /dev/probe >/dev/null 2>/tmp/err; echo rc=$?; cat /tmp/err"


def test_a_disk_made_inside_does_not_open_and_privileged_opens_it(disk):
    _, ma, mi = disk
    refused = sh(PROBE.format(ma=ma, mi=mi), *UNCONFINED)
    assert refused.returncode == 0, refused.stderr
    assert "made" in refused.stdout and "rc=1" in refused.stdout, refused.stdout
    assert "Operation not permitted" in refused.stdout, refused.stdout
    allowed = sh(PROBE.format(ma=ma, mi=mi), "--privileged")
    assert "made" in allowed.stdout and "rc=0" in allowed.stdout, allowed.stdout + allowed.stderr


def test_the_program_is_attached_to_the_container_cgroup_only(containers):
    from minicontainer.syscalls.linux import device_filters

    containers.start("dev", "mini", "sleep", "60")
    leaf = ROOT / "minicontainer" / containers.state("dev").id
    assert len(device_filters(str(leaf))) == 1
    assert device_filters(str(ROOT / "minicontainer")) == []
    containers.start("priv", "--privileged", "mini", "sleep", "60")
    assert device_filters(str(ROOT / "minicontainer" / containers.state("priv").id)) == []
    containers.rm("dev")
    containers.rm("priv")


def test_device_flag_allows_its_device_with_its_permissions(disk):
    path, _, _ = disk
    proc = sh("echo hi > /dev/mynull && echo null-writable; "
              "head -c1 /dev/disk0 >/dev/null && echo disk-readable; "
              "{ echo x > /dev/disk0; } 2>/dev/null || echo disk-not-writable",
              "--device", "/dev/null:/dev/mynull", "--device", f"{path}:/dev/disk0:r")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["null-writable", "disk-readable", "disk-not-writable"], proc.stdout


def test_explain_shows_the_device_filter():
    proc = sh("true", "--explain")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "attach an eBPF device filter" in ln)
    assert "allow c *:* m, b *:* m, c 1:3 rwm" in line and "every other device is refused (EPERM)" in line
    assert "bpftool cgroup attach" in proc.stderr and "BPF_PROG_TYPE_CGROUP_DEVICE" in proc.stderr
