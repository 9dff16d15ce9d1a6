"""cgroups/detect.py: the mode comes from filesystem types in mountinfo."""

from __future__ import annotations

import pytest

from minicontainer.cgroups.detect import detect, host_from_mounts, parse_mountinfo

pytestmark = pytest.mark.unit

# This project's machines: systemd "hybrid" layout, cpu and cpuacct mounted apart.
HYBRID = """\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# A modern distribution (Debian 12, Ubuntu 22.04+): unified only.
UNIFIED = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# An older v1-only host with the usual co-mounts and no cgroup2.
V1_ONLY = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
"""

# Inside an unprivileged docker container: cgroup namespace, read-only mount.
DOCKER_RO = """\
700 690 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
"""


def ctrls(mapping):
    return lambda path: frozenset(mapping.get(path, ()))


def test_hybrid_like_this_machine():
    h = host_from_mounts(parse_mountinfo(HYBRID), ctrls({"/sys/fs/cgroup/unified": []}))
    assert h.mode == "hybrid"
    assert h.v2_mount == "/sys/fs/cgroup/unified"
    assert h.v2_controllers == frozenset()
    assert h.v1_mounts["memory"] == "/sys/fs/cgroup/memory"
    assert h.v1_mounts["cpu"] == "/sys/fs/cgroup/cpu"
    assert h.v1_mounts["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert "systemd" not in h.v1_mounts and "name=systemd" not in h.v1_mounts  # a name= hierarchy has no controller
    assert set(h.v1_mounts) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
    assert not h.read_only


def test_unified():
    h = host_from_mounts(parse_mountinfo(UNIFIED), ctrls({"/sys/fs/cgroup": ["cpuset", "cpu", "io", "memory", "pids"]}))
    assert h.mode == "v2"
    assert h.v2_mount == "/sys/fs/cgroup"
    assert h.v1_mounts == {}
    assert h.v2_controllers == {"cpuset", "cpu", "io", "memory", "pids"}


def test_v1_only_with_comounts():
    h = host_from_mounts(parse_mountinfo(V1_ONLY))
    assert h.mode == "v1"
    assert h.v2_mount is None
    assert h.v1_mounts["cpu"] == h.v1_mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert h.v1_mounts["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"


def test_read_only_mount_is_reported():
    h = host_from_mounts(parse_mountinfo(DOCKER_RO), ctrls({}))
    assert h.mode == "v2"
    assert "/sys/fs/cgroup" in h.read_only


def test_no_cgroups_at_all():
    h = host_from_mounts(parse_mountinfo("22 1 0:21 / /sys rw - sysfs sysfs rw\n"))
    assert h.mode == "none"


def test_the_type_decides_not_the_path():
    # A tmpfs at /sys/fs/cgroup/memory is not a memory controller.
    text = "31 23 0:28 / /sys/fs/cgroup/memory rw - tmpfs tmpfs rw,memory\n"
    assert host_from_mounts(parse_mountinfo(text)).mode == "none"


def test_a_later_mount_on_the_same_point_hides_the_earlier():
    text = HYBRID + "90 31 0:50 / /sys/fs/cgroup/pids rw - tmpfs tmpfs rw\n"
    h = host_from_mounts(parse_mountinfo(text), ctrls({}))
    assert "pids" not in h.v1_mounts


def test_escaped_mount_points(tmp_path):
    d = tmp_path / "cg root"
    d.mkdir()
    (d / "cgroup.controllers").write_text("memory pids\n")
    escaped = str(d).replace(" ", "\\040")
    mi = tmp_path / "mountinfo"
    mi.write_text(f"26 22 0:23 / {escaped} rw,relatime shared:4 - cgroup2 cgroup2 rw\n")
    h = detect(str(mi))
    assert h.mode == "v2"
    assert h.v2_mount == str(d)
    assert h.v2_controllers == {"memory", "pids"}


def test_detect_on_this_host_finds_a_mode():
    h = detect()
    assert h.mode in ("v1", "v2", "hybrid")
