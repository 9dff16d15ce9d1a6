"""The cgroup v2 manager against a fake unified cgroupfs in a temp dir (no root)."""

from __future__ import annotations

import os
import signal

import pytest

from minicontainer.cgroups import devices, manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import parse_resources
from minicontainer.cgroups.v2 import Level, V2Manager, cpu_weight, plan_v2
from minicontainer.errors import CgroupError, SyscallError

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
ALL = ("cpuset", "cpu", "io", "memory", "pids")


def res(**kw):
    kw.setdefault("cpus_available", {0, 1})
    kw.setdefault("mems_available", {0})
    return parse_resources(**kw)


def make(tmp_path, controllers=ALL, **kw):
    fake = FakeCgroupFs()
    mount = fake.add_v2(tmp_path / "cg", controllers, **kw)
    return fake, mount


def mgr(fake, mount, resources=None, cid="c1", timeout=10.0):
    h = HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(ALL))
    m = manager_for(cid, resources, host=h, fs=fake, timeout=timeout)
    assert isinstance(m, V2Manager)
    return m


def limits(steps):
    return {os.path.basename(s.file): s for s in steps if s.stage == "limit"}


def read(path):
    with open(path) as f:
        return f.read().strip()


@pytest.mark.parametrize("shares, weight", [(2, 1), (1024, 39), (512, 20), (262144, 10000)])
def test_cpu_weight_formula(shares, weight):
    assert cpu_weight(shares) == weight == 1 + ((shares - 2) * 9999) // 262142


def test_unified_host_gets_v2_at_minicontainer_id(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount)
    assert m.version == "v2"
    assert m.leaves() == [f"{mount}/minicontainer/c1"]


def test_plan_enables_controllers_down_the_path_then_limits_then_join(tmp_path):
    fake, mount = make(tmp_path)
    steps = mgr(fake, mount, res(memory="64m")).plan()
    assert [(s.action, s.file, s.value) for s in steps if s.stage != "limit"] == [
        ("write", f"{mount}/cgroup.subtree_control", "+cpu +cpuset +io +memory +pids"),
        ("create", f"{mount}/minicontainer", ""),
        ("write", f"{mount}/minicontainer/cgroup.subtree_control", "+cpu +cpuset +io +memory +pids"),
        ("create", f"{mount}/minicontainer/c1", ""),
        ("join", f"{mount}/minicontainer/c1/cgroup.procs", "<pid>"),
    ]
    assert fake.log == []  # plan changes nothing


def test_only_missing_controllers_are_enabled(tmp_path):
    fake, mount = make(tmp_path)
    with open(f"{mount}/cgroup.subtree_control", "w") as f:
        f.write("cpu memory")
    steps = mgr(fake, mount).plan()
    root_writes = [s.value for s in steps if s.file == f"{mount}/cgroup.subtree_control"]
    assert root_writes == ["+cpuset +io +pids"]


def test_plan_each_flag_with_counterparts(tmp_path):
    fake, mount = make(tmp_path)
    r = res(memory="64m", memory_swap="192m", memory_reservation="32m", cpus="0.05", cpu_shares="1024",
            cpuset_cpus="0", cpuset_mems="0", pids_limit="20",
            device_read_bps=[(8, 0, MIB)], device_write_bps=[(8, 0, 2 * MIB), (7, 1, 512)])
    steps = mgr(fake, mount, r).plan()
    w = limits(steps)
    assert (w["memory.max"].value, w["memory.max"].counterpart) == (str(64 * MIB), "memory.limit_in_bytes")
    assert w["memory.swap.max"].value == str(128 * MIB)  # swap alone = 192m - 64m
    assert "memory.memsw.limit_in_bytes" in w["memory.swap.max"].counterpart
    assert (w["memory.low"].value, w["memory.low"].counterpart) == (str(32 * MIB), "memory.soft_limit_in_bytes")
    assert w["cpu.max"].value == "5000 100000"
    assert "cpu.cfs_quota_us" in w["cpu.max"].counterpart
    assert (w["cpu.weight"].value, w["cpu.weight"].counterpart) == ("39", "cpu.shares")
    assert w["cpuset.cpus"].value == "0" and w["cpuset.mems"].value == "0"
    assert w["pids.max"].value == "20"
    io = [s.value for s in steps if s.file.endswith("io.max")]
    assert io == ["7:1 wbps=512", f"8:0 rbps={MIB} wbps={2 * MIB}"]


@pytest.mark.parametrize(
    "kw, value, optional",
    [
        ({"memory": "64m"}, str(64 * MIB), True),  # Docker's default: as much swap as memory
        ({"memory": "64m", "memory_swap": "64m"}, "0", False),  # equal: no swap
        ({"memory": "64m", "memory_swap": "-1"}, "max", False),
        ({"memory": "64m", "memory_swap": "100m"}, str(36 * MIB), False),
    ],
)
def test_swap_math(tmp_path, kw, value, optional):
    fake, mount = make(tmp_path)
    s = limits(mgr(fake, mount, res(**kw)).plan())["memory.swap.max"]
    assert (s.value, s.optional) == (value, optional)


def test_pids_unlimited_is_max(tmp_path):
    fake, mount = make(tmp_path)
    assert limits(mgr(fake, mount, res(pids_limit="-1")).plan())["pids.max"].value == "max"


def test_missing_controller_is_named_before_anything_is_created(tmp_path):
    fake, mount = make(tmp_path, controllers=("memory", "pids"))
    m = mgr(fake, mount, res(cpus="0.5"))
    with pytest.raises(CgroupError) as exc:
        m.create()
    assert "--cpus" in exc.value.message and "cpu controller" in exc.value.message
    assert "memory pids" in exc.value.hint
    assert fake.log == []


def test_create_apply_join(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount, res(memory="64m", cpus="0.2", pids_limit="20", cpu_shares="512", cpuset_cpus="1"))
    m.create()
    m.apply()
    m.add_process(321)
    leaf = f"{mount}/minicontainer/c1"
    assert read(f"{leaf}/memory.max") == str(64 * MIB)
    assert read(f"{leaf}/memory.swap.max") == str(64 * MIB)
    assert read(f"{leaf}/cpu.max") == "20000 100000"
    assert read(f"{leaf}/cpu.weight") == "20"
    assert read(f"{leaf}/cpuset.cpus") == "1"
    assert read(f"{leaf}/pids.max") == "20"
    assert read(f"{leaf}/cgroup.procs") == "321"
    assert m.procs() == [321]


def test_explicit_swap_without_swap_accounting_names_the_fix(tmp_path):
    fake, mount = make(tmp_path, swap=False)
    m = mgr(fake, mount, res(memory="64m", memory_swap="128m"))
    m.create()
    with pytest.raises(CgroupError) as exc:
        m.apply()
    assert "--memory-swap" in exc.value.message and "memory.swap.max" in exc.value.message
    assert "swap" in exc.value.hint


def test_default_swap_is_skipped_without_swap_accounting(tmp_path):
    fake, mount = make(tmp_path, swap=False)
    m = mgr(fake, mount, res(memory="64m"))
    m.create()
    m.apply()
    assert read(f"{m.path}/memory.max") == str(64 * MIB)


def test_no_internal_processes_moves_the_namespace_roots_processes_to_a_leaf(tmp_path):
    # Inside a privileged Docker container: the mount root is a cgroup
    # namespace root (a non-root cgroup, it has cgroup.type) with processes.
    fake, mount = make(tmp_path, ns_root=True, procs=(1, 50))
    m = mgr(fake, mount, res(memory="64m"))
    steps = m.plan()
    move = [s for s in steps if s.action == "move-out"]
    assert len(move) == 1
    assert move[0].file == f"{mount}/init/cgroup.procs"
    assert move[0].source == f"{mount}/cgroup.procs"
    assert "no internal processes" in move[0].why
    assert "for p in $(cat" in move[0].shell()
    files = [s.file for s in steps]
    assert files.index(f"{mount}/init") < files.index(move[0].file) < files.index(f"{mount}/cgroup.subtree_control")
    m.create()
    m.apply()
    assert sorted(int(p) for p in read(f"{mount}/init/cgroup.procs").split()) == [1, 50]
    assert read(f"{mount}/cgroup.procs") == ""
    assert "memory" in read(f"{mount}/cgroup.subtree_control").split()
    m.add_process(77)
    assert m.procs() == [77]
    m.destroy()
    assert not os.path.exists(f"{mount}/minicontainer")
    assert os.path.isdir(f"{mount}/init")  # the other processes stay where we put them


def test_the_fake_kernel_enforces_the_rule(tmp_path):
    fake, mount = make(tmp_path, ns_root=True, procs=(1,))
    with pytest.raises(SyscallError) as exc:
        fake.write(f"{mount}/cgroup.subtree_control", "+memory")
    assert "no internal processes" in exc.value.hint


def test_the_real_root_is_exempt(tmp_path):
    fake, mount = make(tmp_path, procs=(1, 2, 3))
    steps = mgr(fake, mount).plan()
    assert not [s for s in steps if s.action == "move-out"]


def test_a_cgroup_parent_with_processes_is_refused(tmp_path):
    fake, mount = make(tmp_path)
    fake.write(f"{mount}/cgroup.subtree_control", "+memory")
    fake.mkdir(f"{mount}/busy")
    fake.add_procs(f"{mount}/busy", 9)
    m = mgr(fake, mount, res(cgroup_parent="busy"))
    with pytest.raises(CgroupError) as exc:
        m.plan()
    assert "holds processes" in exc.value.message and "no internal processes" in exc.value.hint


def test_destroy_uses_cgroup_kill_and_removes_subcgroups(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount)
    m.create()
    m.add_process(10)
    leaf = m.path
    fake.mkdir(f"{leaf}/sub")
    fake.add_procs(f"{leaf}/sub", 11)
    m.destroy()
    assert ("write", f"{leaf}/cgroup.kill", "1") in fake.log
    assert {p for p, _ in fake.killed} == {10, 11}
    rmdirs = [p for op, p, _ in fake.log if op == "rmdir"]
    assert rmdirs[:2] == [f"{leaf}/sub", leaf]
    assert not os.path.exists(f"{mount}/minicontainer")


def test_without_cgroup_kill_it_freezes_kills_thaws(tmp_path):
    fake, mount = make(tmp_path, kill_file=False)
    m = mgr(fake, mount)
    m.create()
    m.add_process(10)
    m.kill_all()
    freezes = [v for op, p, v in fake.log if p == f"{m.path}/cgroup.freeze"]
    assert freezes == ["1", "0"]
    assert (10, signal.SIGKILL) in fake.killed
    assert m.procs() == []


def test_destroy_is_bounded(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount, timeout=3.0)
    m.create()
    m.add_process(13)
    fake.unkillable.add(13)
    with pytest.raises(CgroupError, match="survived"):
        m.destroy()
    assert fake.clock < 4.0


def test_create_refuses_busy_or_frozen_and_replaces_stale(tmp_path):
    fake, mount = make(tmp_path)
    a = mgr(fake, mount, res(pids_limit="5"))
    a.create()
    a.apply()
    a.add_process(1234)
    with pytest.raises(CgroupError, match="already holds processes"):
        mgr(fake, mount).create()
    a.kill_all()
    a.freeze()
    with pytest.raises(CgroupError, match="frozen"):
        mgr(fake, mount).create()
    a.thaw()
    b = mgr(fake, mount)
    b.create()  # the stale empty one is replaced: its pids.max does not carry over
    assert read(f"{b.path}/pids.max") == "max"


def test_freeze_thaw_via_cgroup_events(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount)
    m.create()
    m.freeze()
    assert m.is_frozen()
    assert "frozen 1" in fake.read(f"{m.path}/cgroup.events")
    m.thaw()
    assert not m.is_frozen()


def test_stats_and_reports(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount, res(memory="80m", pids_limit="20"))
    m.create()
    m.apply()
    leaf = m.path
    with open(f"{leaf}/memory.events", "w") as f:
        f.write("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    with open(f"{leaf}/memory.peak", "w") as f:
        f.write(str(80 * MIB))
    with open(f"{leaf}/cpu.stat", "w") as f:
        f.write("usage_usec 1500\nnr_throttled 4\nthrottled_usec 900\n")
    with open(f"{leaf}/io.stat", "w") as f:
        f.write("8:0 rbytes=100 wbytes=200 rios=1 wios=2\n7:1 rbytes=1 wbytes=2\n")
    with open(f"{leaf}/memory.stat", "w") as f:
        f.write("anon 100\nfile 300\nactive_file 100\ninactive_file 200\n")
    st = m.stats()
    assert st["memory_limit"] == 80 * MIB and st["memory_peak"] == 80 * MIB
    assert st["memory_inactive_file"] == 200
    assert st["cpus"] is None  # cpu.max "max 100000"
    assert (st["cpu_usage_usec"], st["cpu_throttled_usec"], st["cpu_nr_throttled"]) == (1500, 900, 4)
    assert (st["io_read_bytes"], st["io_write_bytes"]) == (101, 202)
    assert st["pids_limit"] == 20
    assert m.oom_killed()
    assert m.exit_report() == "killed by the OOM killer: memory limit 80 MiB, peak 80 MiB"
    with open(f"{leaf}/pids.events", "w") as f:
        f.write("max 7\n")
    assert "forks failed: pids limit 20 reached" in m.exit_report()


def test_stats_cpus_from_cpu_max(tmp_path):
    fake, mount = make(tmp_path)
    m = mgr(fake, mount, res(cpus="1.5"))
    m.create()
    m.apply()
    assert m.stats()["cpus"] == 1.5


def test_plan_v2_pure_with_a_hand_made_survey():
    levels = (Level(path="/cg", exists=True, controllers=frozenset({"memory", "pids"}), is_root=True),
              Level(path="/cg/minicontainer", exists=False))
    steps = plan_v2("/cg", "minicontainer/x", res(pids_limit="3"), levels)
    assert [(s.action, s.file, s.value) for s in steps] == [
        ("write", "/cg/cgroup.subtree_control", "+memory +pids"),
        ("create", "/cg/minicontainer", ""),
        ("write", "/cg/minicontainer/cgroup.subtree_control", "+memory +pids"),
        ("create", "/cg/minicontainer/x", ""),
        ("write", "/cg/minicontainer/x/pids.max", "3"),
        ("attach-device-filter", "/cg/minicontainer/x", devices.summary(devices.DEFAULT_RULES)),
        ("join", "/cg/minicontainer/x/cgroup.procs", "<pid>"),
    ]


def test_view_is_the_container_cgroup(tmp_path):
    # what the plan mounts at /sys/fs/cgroup inside (issue 11, item 3)
    fake, mount = make(tmp_path)
    v = mgr(fake, mount).view()
    assert v.version == "v2" and v.dirs == (("", f"{mount}/minicontainer/c1", ()),)
