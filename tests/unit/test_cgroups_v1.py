"""The cgroup v1 manager against a fake cgroupfs in a temp dir (no root)."""

from __future__ import annotations

import os
import signal

import pytest

from minicontainer.cgroups import devices, manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import parse_resources
from minicontainer.cgroups.v1 import CONTROLLERS, V1Manager, plan_v1
from minicontainer.errors import CgroupError

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def res(**kw):
    kw.setdefault("cpus_available", {0, 1})
    kw.setdefault("mems_available", {0})
    return parse_resources(**kw)


@pytest.fixture
def host(tmp_path):
    """A hybrid-like host: one v1 hierarchy per controller under tmp/cg."""
    fake = FakeCgroupFs()
    mounts = {}
    for c in CONTROLLERS:
        mounts[c] = fake.add_v1(tmp_path / "cg" / c, (c,))
    return fake, HostCgroups(mode="hybrid", v2_mount=str(tmp_path / "cg" / "unified"), v1_mounts=mounts)


def _devices(fake, tmp_path):
    return fake.add_v1(tmp_path / "devices", ("devices",))


def mgr(host, resources=None, cid="c1", timeout=10.0):
    fake, h = host
    m = manager_for(cid, resources, host=h, fs=fake, timeout=timeout)
    assert isinstance(m, V1Manager)
    return m


def writes(steps):
    return {os.path.basename(s.file): s for s in steps if s.action == "write" and s.stage == "limit"}


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_hybrid_host_gets_the_v1_manager_and_one_dir_per_hierarchy(host):
    m = mgr(host)
    fake, h = host
    assert m.version == "v1"
    assert m.leaves()[0] == f"{h.v1_mounts['freezer']}/minicontainer/c1"  # freezer first: pause and kill use it
    assert sorted(m.leaves()) == sorted(f"{h.v1_mounts[c]}/minicontainer/c1" for c in CONTROLLERS)


def test_comounted_controllers_share_one_directory(tmp_path):
    fake = FakeCgroupFs()
    both = fake.add_v1(tmp_path / "cpu,cpuacct", ("cpu", "cpuacct"))
    mem = fake.add_v1(tmp_path / "memory", ("memory",))
    dev = fake.add_v1(tmp_path / "devices", ("devices",))
    m = V1Manager("c1", res(cpus="0.5"), mounts={"cpu": both, "cpuacct": both, "memory": mem, "devices": dev},
                  fs=fake)
    assert m.leaves() == [f"{mem}/minicontainer/c1", f"{both}/minicontainer/c1", f"{dev}/minicontainer/c1"]
    joins = [s.file for s in m.plan() if s.action == "join"]
    assert len(joins) == 3


def test_plan_is_pure(host):
    fake, _ = host
    m = mgr(host, res(memory="64m", cpuset_cpus="0", pids_limit="20"))
    steps = m.plan()
    assert steps
    assert fake.log == []
    assert not m.exists()


def test_plan_memory_and_counterparts(host):
    w = writes(mgr(host, res(memory="64m", memory_reservation="32m")).plan())
    assert w["memory.limit_in_bytes"].value == str(64 * MIB)
    assert w["memory.limit_in_bytes"].counterpart == "memory.max"
    assert w["memory.limit_in_bytes"].flag == "--memory"
    # Docker's default without --memory-swap: total = 2 x memory, only if the host accounts swap
    assert w["memory.memsw.limit_in_bytes"].value == str(128 * MIB)
    assert w["memory.memsw.limit_in_bytes"].optional
    assert w["memory.memsw.limit_in_bytes"].counterpart.startswith("memory.swap.max")
    assert w["memory.soft_limit_in_bytes"].value == str(32 * MIB)
    assert w["memory.soft_limit_in_bytes"].counterpart == "memory.low"


@pytest.mark.parametrize("swap, value", [("256m", str(256 * MIB)), ("-1", "-1"), ("64m", str(64 * MIB))])
def test_plan_memory_swap_is_the_total(host, swap, value):
    steps = mgr(host, res(memory="64m", memory_swap=swap)).plan()
    w = writes(steps)
    assert w["memory.memsw.limit_in_bytes"].value == value
    assert not w["memory.memsw.limit_in_bytes"].optional
    names = [os.path.basename(s.file) for s in steps]
    # memsw may never be below the memory limit: memory goes first
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")


def test_plan_cpu(host):
    steps = mgr(host, res(cpus="0.2", cpu_shares="512")).plan()
    w = writes(steps)
    assert w["cpu.cfs_period_us"].value == "100000"
    assert w["cpu.cfs_quota_us"].value == "20000"
    assert "cpu.max" in w["cpu.cfs_quota_us"].counterpart
    assert w["cpu.shares"].value == "512"
    assert "cpu.weight" in w["cpu.shares"].counterpart
    names = [os.path.basename(s.file) for s in steps]
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")


def test_plan_cpuset_pids_blkio(host):
    r = res(cpuset_cpus="1", cpuset_mems="0", pids_limit="20",
            device_read_bps=[(8, 0, MIB)], device_write_bps=[(8, 16, 2 * MIB)])
    w = writes(mgr(host, r).plan())
    assert w["cpuset.cpus"].value == "1"
    assert w["cpuset.mems"].value == "0"
    assert w["pids.max"].value == "20"
    assert w["blkio.throttle.read_bps_device"].value == f"8:0 {MIB}"
    assert w["blkio.throttle.write_bps_device"].value == f"8:16 {2 * MIB}"
    assert "io.max" in w["blkio.throttle.read_bps_device"].counterpart


def test_plan_pids_unlimited(host):
    assert writes(mgr(host, res(pids_limit="-1")).plan())["pids.max"].value == "max"


def test_plan_for_empty_resources_creates_joins_and_sets_only_the_device_list(host):
    steps = mgr(host).plan()
    assert {s.stage for s in steps} == {"create", "limit", "join"}
    assert {os.path.basename(s.file) for s in steps if s.stage == "limit"} == {"devices.deny", "devices.allow"}


def test_missing_controller_is_an_error_before_anything_is_created(tmp_path):
    fake = FakeCgroupFs()
    mem = fake.add_v1(tmp_path / "memory", ("memory",))
    h = HostCgroups(mode="v1", v1_mounts={"memory": mem})
    m = manager_for("c1", res(pids_limit="20"), host=h, fs=fake)
    with pytest.raises(CgroupError) as exc:
        m.create()
    assert "--pids-limit" in exc.value.message and "pids controller" in exc.value.message
    assert "mount -t cgroup -o pids" in exc.value.hint
    assert fake.log == []


def test_memory_swap_without_swap_accounting_is_an_error(tmp_path):
    fake = FakeCgroupFs()
    mem = fake.add_v1(tmp_path / "memory", ("memory",), memsw=False)
    m = V1Manager("c1", res(memory="64m", memory_swap="128m"), mounts={"memory": mem, "devices": _devices(fake, tmp_path)}, fs=fake)
    with pytest.raises(CgroupError) as exc:
        m.plan()
    assert "memory.memsw" in exc.value.message
    assert "swapaccount=1" in exc.value.hint


def test_without_swap_accounting_the_default_swap_is_skipped(tmp_path):
    fake = FakeCgroupFs()
    mem = fake.add_v1(tmp_path / "memory", ("memory",), memsw=False)
    m = V1Manager("c1", res(memory="64m"), mounts={"memory": mem, "devices": _devices(fake, tmp_path)}, fs=fake)
    m.create()
    m.apply()
    assert read(f"{mem}/minicontainer/c1/memory.limit_in_bytes") == str(64 * MIB)
    assert not os.path.exists(f"{mem}/minicontainer/c1/memory.memsw.limit_in_bytes")


def test_create_apply_join_write_real_files(host):
    fake, h = host
    m = mgr(host, res(memory="64m", cpus="0.2", cpuset_cpus="1", pids_limit="20", cpu_shares="512"))
    m.create()
    m.apply()
    m.add_process(4242)
    leaf = {c: f"{h.v1_mounts[c]}/minicontainer/c1" for c in CONTROLLERS}
    assert read(f"{leaf['memory']}/memory.limit_in_bytes") == str(64 * MIB)
    assert read(f"{leaf['memory']}/memory.memsw.limit_in_bytes") == str(128 * MIB)
    assert read(f"{leaf['cpu']}/cpu.cfs_quota_us") == "20000"
    assert read(f"{leaf['cpu']}/cpu.shares") == "512"
    assert read(f"{leaf['cpuset']}/cpuset.cpus") == "1"
    assert read(f"{leaf['pids']}/pids.max") == "20"
    for c in CONTROLLERS:
        assert read(f"{leaf[c]}/cgroup.procs") == "4242"
    assert m.procs() == [4242]


def test_cpuset_copies_the_parent_before_a_process_can_join(host):
    fake, h = host
    m = mgr(host)  # no cpuset flag: the leaf must still get CPUs, or joining fails with ENOSPC
    m.create()
    cs = h.v1_mounts["cpuset"]
    assert read(f"{cs}/minicontainer/cpuset.cpus") == "0-1"
    assert read(f"{cs}/minicontainer/cpuset.mems") == "0"
    assert read(f"{cs}/minicontainer/c1/cpuset.cpus") == "0-1"
    order = [(op, p) for op, p, _ in fake.log]
    assert order.index(("write", f"{cs}/minicontainer/cpuset.cpus")) < order.index(("mkdir", f"{cs}/minicontainer/c1"))
    m.add_process(7)
    assert m.procs() == [7]


def test_a_shared_parent_keeps_its_cpuset(host):
    fake, h = host
    cs = h.v1_mounts["cpuset"]
    mgr(host, cid="a").create()
    with open(f"{cs}/minicontainer/cpuset.cpus", "w") as f:
        f.write("1")
    mgr(host, cid="b").create()
    assert read(f"{cs}/minicontainer/cpuset.cpus") == "1"  # copied only when empty
    assert read(f"{cs}/minicontainer/b/cpuset.cpus") == "1"


def test_join_without_copy_would_fail(host):
    # The fake kernel really refuses an empty cpuset, so the test above means something.
    fake, h = host
    cs = h.v1_mounts["cpuset"]
    fake.mkdir(f"{cs}/bare")
    with pytest.raises(Exception) as exc:
        fake.write(f"{cs}/bare/cgroup.procs", "9")
    assert getattr(exc.value, "errno", None) == 28  # ENOSPC


def test_destroy_kills_and_removes_subcgroups_leaf_first(host):
    fake, h = host
    m = mgr(host)
    m.create()
    m.add_process(100)
    mem_leaf = f"{h.v1_mounts['memory']}/minicontainer/c1"
    fake.mkdir(f"{mem_leaf}/sub")
    fake.mkdir(f"{mem_leaf}/sub/deeper")
    fake.add_procs(f"{mem_leaf}/sub/deeper", 101)
    assert m.procs() == [100, 101]
    m.destroy()
    assert {p for p, s in fake.killed if s == signal.SIGKILL} == {100, 101}
    rmdirs = [p for op, p, _ in fake.log if op == "rmdir"]
    assert rmdirs.index(f"{mem_leaf}/sub/deeper") < rmdirs.index(f"{mem_leaf}/sub") < rmdirs.index(mem_leaf)
    for c in CONTROLLERS:
        assert not os.path.exists(f"{h.v1_mounts[c]}/minicontainer")
    assert not m.exists()


def test_kill_uses_the_freezer_around_sigkill(host):
    fake, h = host
    m = mgr(host)
    m.create()
    m.add_process(100)
    m.kill_all()
    fz = f"{h.v1_mounts['freezer']}/minicontainer/c1/freezer.state"
    states = [v for op, p, v in fake.log if p == fz]
    assert states == ["FROZEN", "THAWED"]
    assert m.procs() == []


def test_destroy_keeps_the_shared_parent_while_another_container_uses_it(host):
    fake, h = host
    a, b = mgr(host, cid="a"), mgr(host, cid="b")
    a.create()
    b.create()
    a.destroy()
    assert os.path.isdir(f"{h.v1_mounts['memory']}/minicontainer/b")
    b.destroy()
    assert not os.path.exists(f"{h.v1_mounts['memory']}/minicontainer")


def test_destroy_is_idempotent(host):
    m = mgr(host)
    m.create()
    m.destroy()
    m.destroy()
    assert not m.exists()


def test_destroy_gives_up_after_the_timeout(host):
    fake, h = host
    m = mgr(host, timeout=2.0)
    m.create()
    m.add_process(666)
    fake.unkillable.add(666)  # e.g. stuck in state D
    with pytest.raises(CgroupError) as exc:
        m.destroy()
    assert "666" in exc.value.message and "survived" in exc.value.message
    assert 2.0 <= fake.clock < 3.0  # bounded: no endless loop


def test_create_refuses_a_cgroup_with_processes(host):
    fake, h = host
    m = mgr(host)
    m.create()
    m.add_process(55)
    with pytest.raises(CgroupError) as exc:
        mgr(host).create()
    assert "already holds processes" in exc.value.message and "55" in exc.value.message


def test_create_refuses_a_frozen_cgroup(host):
    m = mgr(host)
    m.create()
    m.freeze()
    with pytest.raises(CgroupError, match="frozen"):
        mgr(host).create()


def test_create_replaces_a_stale_empty_cgroup(host):
    fake, h = host
    old = mgr(host, res(memory="32m"))
    old.create()
    old.apply()
    new = mgr(host)  # no memory limit this time: the old one must not linger
    new.create()
    assert read(f"{h.v1_mounts['memory']}/minicontainer/c1/memory.limit_in_bytes") == "9223372036854771712"


def test_freeze_and_thaw(host):
    fake, h = host
    m = mgr(host)
    m.create()
    m.freeze()
    assert m.is_frozen()
    m.thaw()
    assert not m.is_frozen()


def test_freeze_that_never_completes_is_undone(host):
    fake, h = host
    m = mgr(host, timeout=1.0)
    m.create()
    fake.hierarchies[h.v1_mounts["freezer"]].frozen_stuck.add(m.path)
    with pytest.raises(CgroupError, match="did not freeze"):
        m.freeze()
    assert read(f"{m.path}/freezer.state") == "THAWED"


def test_pause_without_freezer_names_it(tmp_path):
    fake = FakeCgroupFs()
    mem = fake.add_v1(tmp_path / "memory", ("memory",))
    m = V1Manager("c1", res(), mounts={"memory": mem, "devices": _devices(fake, tmp_path)}, fs=fake)
    m.create()
    with pytest.raises(CgroupError, match="freezer"):
        m.freeze()
    m.add_process(3)
    m.destroy()  # kills without the freezer
    assert (3, signal.SIGKILL) in fake.killed
    assert not os.path.exists(f"{mem}/minicontainer")


def test_stats_and_exit_report(host):
    fake, h = host
    m = mgr(host, res(memory="80m", pids_limit="20"))
    m.create()
    m.apply()
    mem = f"{h.v1_mounts['memory']}/minicontainer/c1"
    assert m.exit_report() is None
    assert not m.oom_killed()
    with open(f"{mem}/memory.oom_control", "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    with open(f"{mem}/memory.max_usage_in_bytes", "w") as f:
        f.write(str(80 * MIB))
    with open(f"{h.v1_mounts['cpuacct']}/minicontainer/c1/cpuacct.usage", "w") as f:
        f.write("2500000000")
    with open(f"{h.v1_mounts['blkio']}/minicontainer/c1/blkio.throttle.io_service_bytes_recursive", "w") as f:
        f.write("8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n")
    with open(f"{mem}/memory.stat", "w") as f:
        f.write("cache 4096\ninactive_file 0\ntotal_cache 8192\ntotal_inactive_file 4096\n")
    st = m.stats()
    assert st["memory_limit"] == 80 * MIB
    assert st["memory_peak"] == 80 * MIB
    assert st["memory_inactive_file"] == 4096  # the total_ (hierarchical) value
    assert st["cpus"] is None  # no --cpus
    assert st["cpu_usage_usec"] == 2_500_000
    assert st["pids_limit"] == 20
    assert (st["io_read_bytes"], st["io_write_bytes"]) == (4096, 8192)
    assert m.oom_killed()
    assert m.exit_report() == "killed by the OOM killer: memory limit 80 MiB, peak 80 MiB"
    with open(f"{h.v1_mounts['pids']}/minicontainer/c1/pids.events", "w") as f:
        f.write("max 3\n")
    assert m.exit_report().endswith("; forks failed: pids limit 20 reached")


def test_stats_cpus_from_the_cfs_quota(host):
    m = mgr(host, res(cpus="0.25"))
    m.create()
    m.apply()
    assert m.stats()["cpus"] == 0.25


def test_unlimited_memory_shows_as_none(host):
    m = mgr(host)
    m.create()
    assert m.stats()["memory_limit"] is None
    assert m.stats()["pids_limit"] is None


def test_cgroup_parent_is_used_and_kept(host):
    fake, h = host
    m = mgr(host, res(cgroup_parent="lab/limits"))
    m.create()
    assert m.path == f"{h.v1_mounts['freezer']}/lab/limits/c1"
    m.destroy()
    assert os.path.isdir(f"{h.v1_mounts['freezer']}/lab/limits")
    assert not os.path.exists(f"{h.v1_mounts['freezer']}/lab/limits/c1")


def test_plan_v1_is_a_pure_function():
    steps = plan_v1({"memory": "/cg/memory", "devices": "/cg/devices"}, "minicontainer/x", res(memory="64m"),
                    memsw=False)
    rules = [("write", "/cg/devices/minicontainer/x/devices.allow")] * len(devices.DEFAULT_RULES)
    assert [(s.action, s.file) for s in steps] == [
        ("create", "/cg/memory/minicontainer"),
        ("create", "/cg/memory/minicontainer/x"),
        ("create", "/cg/devices/minicontainer"),
        ("create", "/cg/devices/minicontainer/x"),
        ("write", "/cg/memory/minicontainer/x/memory.limit_in_bytes"),
        ("write", "/cg/devices/minicontainer/x/devices.deny"),
        *rules,
        ("join", "/cg/memory/minicontainer/x/cgroup.procs"),
        ("join", "/cg/devices/minicontainer/x/cgroup.procs"),
    ]


def test_describe_and_shell_lines(host):
    steps = mgr(host, res(memory="64m")).plan()
    limit = writes(steps)["memory.limit_in_bytes"]
    assert limit.describe().startswith(f"echo '{64 * MIB}' > ")
    assert "memory.max" in limit.describe()
    assert limit.shell() == f"echo '{64 * MIB}' > {limit.file}"
    copy = next(s for s in steps if s.source)
    assert copy.shell() == f"cat {copy.source} > {copy.file}"
    join = next(s for s in steps if s.action == "join")
    assert join.shell() == f"echo $CHILD_PID > {join.file}"


def test_old_kernels_without_oom_kill_fall_back_to_failcnt(host):
    fake, h = host
    m = mgr(host, res(memory="64m"))
    m.create()
    mem = f"{h.v1_mounts['memory']}/minicontainer/c1"
    with open(f"{mem}/memory.oom_control", "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\n")  # Linux < 4.13: no oom_kill line
    assert not m.oom_killed()
    with open(f"{mem}/memory.failcnt", "w") as f:
        f.write("12")
    assert m.oom_killed()


def test_view_names_each_hierarchy_as_the_host_does(tmp_path):
    # what the plan binds under /sys/fs/cgroup inside (issue 11, item 3); co-mounted
    # controllers share one directory, named like the host's mount point
    fake = FakeCgroupFs()
    mounts = {"memory": fake.add_v1(tmp_path / "cg" / "memory", ("memory",))}
    both = fake.add_v1(tmp_path / "cg" / "cpu,cpuacct", ("cpu", "cpuacct"))
    mounts.update(cpu=both, cpuacct=both)
    m = manager_for("c1", None, host=HostCgroups(mode="v1", v1_mounts=mounts), fs=fake)
    v = m.view()
    assert v.version == "v1"
    assert v.dirs == (("memory", f"{mounts['memory']}/minicontainer/c1", ("memory",)),
                      ("cpu,cpuacct", f"{both}/minicontainer/c1", ("cpu", "cpuacct")))
