"""--userns as root on cgroup v2 (the VM of scripts/vm-test): the runtime, root
outside the container's user namespace, writes its cgroup and attaches the
eBPF device program, and the container reads its own limits from a cgroup2
mounted inside its cgroup namespace (which belongs to its user namespace).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc, subordinate_range

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]

ROOT = Path("/sys/fs/cgroup")
USER, START = "mc-remap-v2", 1_600_000_000


@pytest.fixture
def remap_range(monkeypatch):
    monkeypatch.setenv("MINICONTAINER_USERNS_REMAP", USER)
    with subordinate_range(USER, START):
        yield START


def test_the_limits_read_back_inside_and_cannot_be_raised(remap_range):
    proc = mc("run", "--rm", "--userns", "-m", "64m", "--pids-limit", "20", "mini", "/bin/sh", "-c",
              "cat /proc/self/uid_map; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; "
              "echo 99 > /sys/fs/cgroup/pids.max || echo refused; grep ' /sys/fs/cgroup ' /proc/self/mountinfo",
              timeout=scale(60))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["0", str(START), "65536"]
    assert lines[1:4] == [str(64 * 1024 * 1024), "20", "refused"], proc.stdout
    assert " - cgroup2 " in lines[4] and " / /sys/fs/cgroup " in lines[4]  # its own cgroup is the root


def test_the_device_program_is_attached_from_outside(remap_range, containers):
    from minicontainer.syscalls.linux import device_filters

    containers.start("dev", "--userns", "mini", "sleep", "60")
    leaf = ROOT / "minicontainer" / containers.state("dev").id
    assert len(device_filters(str(leaf))) == 1
    pid = containers.state("dev").pid
    assert Path(f"/proc/{pid}/status").read_text().count(str(START)) >= 4  # Uid: and Gid: lines
    containers.rm("dev")
