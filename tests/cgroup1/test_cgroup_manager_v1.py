"""The cgroup v1 manager for real, on this (hybrid) machine, with plain forked processes.

Each test forks a child that waits on a pipe, puts it in a fresh cgroup
``minicontainer/mctest-...`` through the manager, lets it exec, and checks
what the kernel did. The ``cg`` fixture destroys everything afterwards and
fails the test if anything of ours is left under /sys/fs/cgroup.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from cgtools import PY, CgroupTracker, LoopDevice, alive, cpu_ticks, scale
from minicontainer.cgroups import manager_for, parse_resources
from minicontainer.cgroups.detect import detect
from minicontainer.errors import CgroupError

pytestmark = pytest.mark.cgroup1


@pytest.fixture
def cg():
    t = CgroupTracker()
    try:
        yield t
    finally:
        problems = t.cleanup_and_check()
    assert not problems, problems


def start(cg, argv, **flags):
    """Create the cgroup with these flags, fork the child, put it in, let it exec."""
    host = detect()
    assert host.mode in ("v1", "hybrid")
    m = cg.track(manager_for(cg.new_id(), parse_resources(**flags), host=host, timeout=scale(10)))
    assert m.version == "v1"
    m.create()
    m.apply()
    child = cg.child(argv)
    m.add_process(child.pid)
    child.go()
    return m, child


def test_the_child_is_in_every_hierarchy_before_it_execs(cg):
    m, child = start(cg, ["/bin/cat", "/proc/self/cgroup"])
    assert os.WIFEXITED(child.wait(scale(10)))
    lines = dict(line.split(":", 2)[1:] for line in child.output().splitlines() if line.count(":") >= 2)
    rel = f"/minicontainer/{m.container_id}"
    for ctrl in ("memory", "pids", "freezer", "cpu", "cpuacct", "cpuset", "blkio"):
        # Inside docker (no cgroup namespace) the host's view has a /docker/<id> prefix.
        assert lines[ctrl] == rel or lines[ctrl].endswith(rel) and lines[ctrl].startswith("/docker/"), (ctrl, lines)


def test_memory_limit_oom_kills_and_is_reported(cg):
    # 200 MB of written bytes (b"x" * n touches every page) under -m 64m.
    m, child = start(cg, [PY, "-c", "b = b'x' * (200 << 20); print('survived')"], memory="64m")
    status = child.wait(scale(30))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert "survived" not in child.output()
    assert m.oom_killed()
    report = m.exit_report()
    assert report.startswith("killed by the OOM killer: memory limit 64 MiB, peak ")
    assert m.stats()["memory_peak"] <= 64 << 20


def test_a_normal_exit_has_no_report(cg):
    m, child = start(cg, ["/bin/true"], memory="64m", pids_limit="20")
    assert child.wait(scale(10)) == 0
    assert not m.oom_killed()
    assert m.exit_report() is None


FORK_BOMB = """
import os, time
ok = eagain = 0
for _ in range(60):               # bounded: at most 60 attempts
    try:
        pid = os.fork()
    except BlockingIOError:       # EAGAIN: pids.max reached
        eagain += 1
        continue
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    ok += 1
print(f"ok={ok} eagain={eagain}", flush=True)
time.sleep(300)
"""


def test_pids_limit_stops_a_fork_bomb_and_everything_is_cleaned_up(cg):
    m, child = start(cg, [PY, "-c", FORK_BOMB], pids_limit="20")
    out = child.read_until("eagain=", scale(30))
    counts = dict(kv.split("=") for kv in out.split() if "=" in kv)
    assert int(counts["ok"]) == 19, out  # 20 processes: the bomb and 19 children
    assert int(counts["eagain"]) == 41, out
    assert m.stats()["pids_current"] == 20
    assert m.exit_report() == "forks failed: pids limit 20 reached"
    pids = m.procs()
    assert len(pids) == 20
    m.destroy()
    child.wait(scale(10))
    assert not m.exists()
    assert not [p for p in pids if alive(p)]


BUSY = "import time\nend = time.time() + {secs}\nwhile time.time() < end: pass\n"


def test_cpus_limits_a_busy_loop_to_a_fraction_of_a_cpu(cg):
    m, child = start(cg, [PY, "-c", BUSY.format(secs=6)], cpus="0.2")
    time.sleep(0.5)  # let the interpreter start
    u0, t0 = m.stats()["cpu_usage_usec"], time.monotonic()
    time.sleep(3)
    u1, t1 = m.stats()["cpu_usage_usec"], time.monotonic()
    used = (u1 - u0) / 1e6 / (t1 - t0)
    assert 0.15 <= used <= 0.25, f"used {used:.3f} CPUs, expected 0.2 +- 25%"
    assert m.stats()["cpu_nr_throttled"] > 0


def test_cpuset_keeps_the_process_on_cpu_0(cg):
    code = "import os; print(sorted(os.sched_getaffinity(0))); print(open('/proc/self/status').read())"
    m, child = start(cg, [PY, "-c", code], cpuset_cpus="0")
    assert child.wait(scale(10)) == 0
    out = child.output()
    assert out.splitlines()[0] == "[0]"
    assert "Cpus_allowed_list:\t0\n" in out


def test_freeze_and_thaw(cg):
    m, child = start(cg, [PY, "-c", BUSY.format(secs=60)])
    time.sleep(0.3)
    m.freeze()
    assert m.is_frozen()
    a = cpu_ticks(child.pid)
    time.sleep(0.5)
    assert cpu_ticks(child.pid) == a, "a frozen process does not run"
    m.thaw()
    assert not m.is_frozen()
    time.sleep(0.5)
    assert cpu_ticks(child.pid) > a


ESCAPE = """
set -e
# a grandchild in its own session, double-forked away from us (reparented to init)
setsid sh -c 'sleep 300 & echo grandchild=$!' &
sleep 300 &
echo helper=$!
wait
"""


def test_kill_all_reaches_setsid_grandchildren_and_subcgroups(cg):
    m, child = start(cg, ["/bin/sh", "-c", ESCAPE])
    out = child.read_until("grandchild=", scale(10))
    out = child.read_until("helper=", scale(10))
    found = dict(kv.split("=") for kv in out.split() if "=" in kv)
    grandchild, helper = int(found["grandchild"]), int(found["helper"])
    # A sub-cgroup the "container" made for itself, in two hierarchies.
    for leaf in m.leaves():
        if "/memory/" in leaf or "/freezer/" in leaf:
            os.mkdir(f"{leaf}/sub")
            with open(f"{leaf}/sub/cgroup.procs", "w") as f:
                f.write(str(helper))
    assert {grandchild, helper, child.pid} <= set(m.procs())
    assert os.getsid(grandchild) != os.getsid(child.pid)
    m.kill_all()
    assert m.procs() == []
    child.wait(scale(10))
    deadline = time.monotonic() + scale(5)
    while (alive(grandchild) or alive(helper)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(grandchild) and not alive(helper)
    m.destroy()
    for leaf in m.leaves():
        assert not os.path.exists(leaf)


def test_destroy_right_after_exit_does_not_fail(cg):
    m, child = start(cg, ["/bin/true"], memory="32m")
    child.wait(scale(10))
    m.destroy()
    assert not m.exists()


def test_a_cgroup_with_processes_is_refused(cg):
    m, child = start(cg, ["/bin/sleep", "300"])
    again = manager_for(m.container_id, parse_resources(), timeout=scale(10))
    with pytest.raises(CgroupError) as exc:
        again.create()
    assert str(child.pid) in exc.value.message
    assert child.status is None and alive(child.pid)  # refused without touching it


def test_a_frozen_cgroup_is_refused(cg):
    m, child = start(cg, ["/bin/sleep", "300"])
    m.kill_all()
    child.wait(scale(10))
    m.freeze()
    again = manager_for(m.container_id, parse_resources(), timeout=scale(10))
    with pytest.raises(CgroupError, match="frozen"):
        again.create()
    m.thaw()


def test_live_stats(cg):
    m, child = start(cg, [PY, "-c", "b = b'x' * (20 << 20); import time; print('ready', flush=True); time.sleep(60)"],
                     memory="64m", pids_limit="10")
    child.read_until("ready", scale(20))
    st = m.stats()
    assert st["memory_current"] >= 20 << 20
    assert st["memory_limit"] == 64 << 20
    assert st["pids_current"] == 1 and st["pids_limit"] == 10
    assert st["cpu_usage_usec"] > 0
    assert st["io_read_bytes"] is not None


def test_limits_are_in_the_files(cg):
    m, child = start(cg, ["/bin/sleep", "300"], memory="64m", memory_reservation="32m", cpus="0.5",
                     cpu_shares="512", pids_limit="7", memory_swap="-1")
    base = {leaf.split("/")[4]: leaf for leaf in m.leaves()}

    def r(ctrl, name):
        with open(f"{base[ctrl]}/{name}") as f:
            return f.read().strip()

    assert r("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert r("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert r("cpu", "cpu.cfs_quota_us") == "50000"
    assert r("cpu", "cpu.cfs_period_us") == "100000"
    assert r("cpu", "cpu.shares") == "512"
    assert r("pids", "pids.max") == "7"


@pytest.fixture
def loop_device():
    try:
        dev = LoopDevice()
    except Exception as e:
        pytest.skip(f"no loop device here: {e}")
    try:
        yield dev.path
    finally:
        dev.close()


def test_blkio_throttles_a_loop_device(cg, loop_device):
    # 3 MiB of direct writes at 1 MiB/s take about 3 s; unthrottled, a blink.
    m, child = start(cg, ["/bin/dd", "if=/dev/zero", f"of={loop_device}", "bs=64k", "count=48", "oflag=direct"],
                     device_write_bps=[f"{loop_device}:1mb"],
                     devices=[loop_device])  # the device allow-list refuses a disk not named (--device)
    st = os.stat(loop_device)
    blkio = next(leaf for leaf in m.leaves() if "/blkio/" in leaf)
    with open(f"{blkio}/blkio.throttle.write_bps_device") as f:
        assert f.read().split() == [f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", str(1 << 20)]
    t0 = time.monotonic()
    assert child.wait(scale(30)) == 0
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.8, f"3 MiB at 1 MiB/s took only {elapsed:.2f}s"
    assert m.stats()["io_write_bytes"] >= 3 << 20
