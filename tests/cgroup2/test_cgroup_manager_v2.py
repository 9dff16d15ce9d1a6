"""The cgroup v2 manager for real, on a unified host (the VM of scripts/vm-test).

Same shape as tests/cgroup1/test_cgroup_manager_v1.py: fork a child that
waits on a pipe, put it in its cgroup through the manager, let it exec, and
check what the kernel did. Python runs 15-50x slower in the VM, so the tests
are few, the children are small, and every timeout goes through scale().
The ``cg`` fixture destroys everything and fails if anything of ours is left
under /sys/fs/cgroup; it also restores the root's cgroup.subtree_control.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from cgtools import PY, CgroupTracker, LoopDevice, alive, cpu_ticks, rmdir_when_empty, scale
from minicontainer.cgroups import manager_for, parse_resources
from minicontainer.cgroups.detect import HostCgroups, detect
from minicontainer.cgroups.files import CgroupFs
from minicontainer.errors import CgroupError

pytestmark = pytest.mark.cgroup2

ROOT = Path("/sys/fs/cgroup")


@pytest.fixture
def cg():
    subtree = (ROOT / "cgroup.subtree_control").read_text().split()
    t = CgroupTracker()
    try:
        yield t
    finally:
        problems = t.cleanup_and_check()
        now = (ROOT / "cgroup.subtree_control").read_text().split()
        for c in set(now) - set(subtree):
            try:
                (ROOT / "cgroup.subtree_control").write_text(f"-{c}")
            except OSError:
                pass  # still used below another cgroup: fine
    assert not problems, problems


def start(cg, argv, host=None, fs=None, **flags):
    host = host or detect()
    m = cg.track(manager_for(cg.new_id(), parse_resources(**flags), host=host, fs=fs, timeout=scale(10)))
    assert m.version == "v2"
    m.create()
    m.apply()
    child = cg.child(argv)
    m.add_process(child.pid)
    child.go()
    return m, child


def read(path) -> str:
    return Path(path).read_text().strip()


def test_limits_are_written_and_the_child_joins_before_exec(cg):
    m, child = start(cg, ["/bin/cat", "/proc/self/cgroup"], memory="64m", memory_swap="128m",
                     memory_reservation="16m", cpus="0.5", cpu_shares="512", pids_limit="30", cpuset_cpus="0")
    assert child.wait(scale(20)) == 0
    assert child.output().strip() == f"0::/minicontainer/{m.container_id}"
    leaf = Path(m.path)
    assert read(leaf / "memory.max") == str(64 << 20)
    assert read(leaf / "memory.swap.max") == str(64 << 20)  # 128m total - 64m memory
    assert read(leaf / "memory.low") == str(16 << 20)
    assert read(leaf / "cpu.max") == "50000 100000"
    assert read(leaf / "cpu.weight") == "20"
    assert read(leaf / "pids.max") == "30"
    assert read(leaf / "cpuset.cpus") == "0"
    # controllers handed down at each level
    for level in (ROOT, ROOT / "minicontainer"):
        assert {"cpu", "memory", "pids", "io", "cpuset"} <= set(read(level / "cgroup.subtree_control").split())


def test_swap_defaults_and_unlimited(cg):
    m1, c1 = start(cg, ["/bin/true"], memory="32m")
    m2, c2 = start(cg, ["/bin/true"], memory="32m", memory_swap="-1")
    assert read(Path(m1.path) / "memory.swap.max") == str(32 << 20)  # Docker's default: swap = memory
    assert read(Path(m2.path) / "memory.swap.max") == "max"
    c1.wait(scale(20))
    c2.wait(scale(20))


def test_oom_with_no_swap_is_reported(cg):
    # Reliability case 29: memory.max 32M, memory.swap.max 0, allocate 100 MB.
    m, child = start(cg, [PY, "-c", "b = b'x' * (100 << 20); print('survived')"],
                     memory="32m", memory_swap="32m")
    assert read(Path(m.path) / "memory.swap.max") == "0"
    status = child.wait(scale(60))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert "survived" not in child.output()
    assert m.oom_killed()
    assert m.exit_report().startswith("killed by the OOM killer: memory limit 32 MiB")


FORK_BOMB = """
import os, time
ok = eagain = 0
for _ in range(40):
    try:
        pid = os.fork()
    except BlockingIOError:
        eagain += 1
        continue
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    ok += 1
print(f"ok={ok} eagain={eagain}", flush=True)
time.sleep(600)
"""


def test_pids_limit_stops_a_fork_bomb(cg):
    m, child = start(cg, [PY, "-c", FORK_BOMB], pids_limit="20")
    out = child.read_until("eagain=", scale(60))
    counts = dict(kv.split("=") for kv in out.split() if "=" in kv)
    assert (int(counts["ok"]), int(counts["eagain"])) == (19, 21), out
    assert m.exit_report() == "forks failed: pids limit 20 reached"
    pids = m.procs()
    assert len(pids) == 20
    m.destroy()
    child.wait(scale(10))
    assert not m.exists()
    assert not [p for p in pids if alive(p)]


def test_cpus_limit_accuracy(cg):
    m, child = start(cg, ["/bin/sh", "-c", "while :; do :; done"], cpus="0.2")
    time.sleep(0.5)
    u0, t0 = m.stats()["cpu_usage_usec"], time.monotonic()
    time.sleep(3)
    u1, t1 = m.stats()["cpu_usage_usec"], time.monotonic()
    used = (u1 - u0) / 1e6 / (t1 - t0)
    assert 0.15 <= used <= 0.25, f"used {used:.3f} CPUs, expected 0.2 +- 25%"
    st = m.stats()
    assert st["cpu_nr_throttled"] > 0 and st["cpu_throttled_usec"] > 0


def test_cpuset_keeps_the_process_on_cpu_0(cg):
    m, child = start(cg, ["/bin/grep", "Cpus_allowed_list", "/proc/self/status"], cpuset_cpus="0")
    assert child.wait(scale(20)) == 0
    assert child.output().split() == ["Cpus_allowed_list:", "0"]


def test_freeze_and_thaw(cg):
    m, child = start(cg, ["/bin/sh", "-c", "while :; do :; done"])
    time.sleep(0.3)
    m.freeze()
    assert m.is_frozen()
    a = cpu_ticks(child.pid)
    time.sleep(0.5)
    assert cpu_ticks(child.pid) == a
    m.thaw()
    time.sleep(0.5)
    assert cpu_ticks(child.pid) > a


ESCAPE = """
setsid sh -c 'sleep 600 & echo grandchild=$!' &
sleep 600 &
echo helper=$!
wait
"""


class NoCgroupKill(CgroupFs):
    """The host as a kernel before 5.14 sees it: no cgroup.kill file."""

    def exists(self, path: str) -> bool:
        return not path.endswith("/cgroup.kill") and super().exists(path)


@pytest.mark.parametrize("fs", [None, NoCgroupKill()], ids=["cgroup.kill", "freeze+kill"])
def test_kill_all_reaches_setsid_grandchildren_and_subcgroups(cg, fs):
    m, child = start(cg, ["/bin/sh", "-c", ESCAPE], fs=fs)
    out = child.read_until("grandchild=", scale(20))
    out = child.read_until("helper=", scale(20))
    found = dict(kv.split("=") for kv in out.split() if "=" in kv)
    grandchild, helper = int(found["grandchild"]), int(found["helper"])
    sub = Path(m.path) / "sub"
    sub.mkdir()
    (sub / "cgroup.procs").write_text(str(helper))
    assert {grandchild, helper, child.pid} <= set(m.procs())
    m.destroy()
    assert not os.path.exists(m.path)
    child.wait(scale(10))
    deadline = time.monotonic() + scale(5)
    while (alive(grandchild) or alive(helper)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild) and not alive(helper)


def test_refuses_a_busy_or_frozen_cgroup(cg):
    m, child = start(cg, ["/bin/sleep", "600"])
    with pytest.raises(CgroupError, match="already holds processes"):
        manager_for(m.container_id, parse_resources(), timeout=scale(10)).create()
    m.kill_all()
    child.wait(scale(10))
    m.freeze()
    with pytest.raises(CgroupError, match="frozen"):
        manager_for(m.container_id, parse_resources(), timeout=scale(10)).create()
    m.thaw()


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


def test_io_max_throttles_a_loop_device(cg, loop_device):
    # 3 MiB of direct writes at 1 MiB/s take about 3 s; unthrottled, a blink.
    m, child = start(cg, ["/bin/dd", "if=/dev/zero", f"of={loop_device}", "bs=64k", "count=48", "oflag=direct"],
                     device_write_bps=[f"{loop_device}:1mb"], device_read_bps=[f"{loop_device}:2mb"],
                     devices=[loop_device])  # the device allow-list refuses a disk not named (--device)
    st = os.stat(loop_device)
    assert read(Path(m.path) / "io.max").startswith(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)} ")
    assert f"wbps={1 << 20}" in read(Path(m.path) / "io.max")
    t0 = time.monotonic()
    assert child.wait(scale(60)) == 0
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.8, f"3 MiB at 1 MiB/s took only {elapsed:.2f}s"
    assert m.stats()["io_write_bytes"] >= 3 << 20


def _in_cgroup_namespace(nsroot: Path, mnt: str, cid: str) -> dict:
    """Runs in a forked helper: enter a new cgroup and mount namespace whose
    root is ``nsroot`` (it holds a sleeper), mount cgroup2 there, and run the
    manager as the runtime would inside a privileged container."""
    from minicontainer.syscalls.flags import CLONE_NEWCGROUP, CLONE_NEWNS, MS_PRIVATE, MS_REC

    libc = ctypes.CDLL(None, use_errno=True)
    (nsroot / "cgroup.procs").write_text(str(os.getpid()))
    if libc.unshare(CLONE_NEWNS | CLONE_NEWCGROUP) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(b"none", mnt.encode(), b"cgroup2", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount cgroup2")
    host = HostCgroups(mode="v2", v2_mount=mnt, v2_controllers=frozenset(read(Path(mnt) / "cgroup.controllers").split()))
    m = manager_for(cid, parse_resources(memory="64m", pids_limit="10"), host=host, timeout=scale(10))
    steps = [(s.action, s.file.replace(mnt, "$CG"), s.why) for s in m.plan()]
    m.create()
    m.apply()
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    m.add_process(pid)
    inside = read(Path(m.path) / "cgroup.procs")
    result = {
        "steps": steps,
        "child_in_leaf": inside == str(pid),
        "memory_max": read(Path(m.path) / "memory.max"),
        "self_cgroup": Path("/proc/self/cgroup").read_text().strip(),
        "root_procs": read(Path(mnt) / "cgroup.procs"),
    }
    m.destroy()
    os.waitpid(pid, 0)
    result["removed"] = not os.path.exists(f"{mnt}/minicontainer")
    return result


def test_no_internal_processes_in_a_cgroup_namespace_root(cg):
    # What happens inside `docker run --privileged`: our cgroup namespace's
    # root is a non-root cgroup that holds processes.
    (ROOT / "cgroup.subtree_control").write_text("+memory +pids")  # the fixture restores it
    nsroot = ROOT / f"{cg.new_id()}-nsroot"
    nsroot.mkdir()
    sleeper = subprocess.Popen(["sleep", "600"])
    mnt = tempfile.mkdtemp(prefix="mctest-cg2ns.")  # mounted only in the helper's mount namespace
    r, w = os.pipe()
    helper = -1
    try:
        (nsroot / "cgroup.procs").write_text(str(sleeper.pid))
        helper = os.fork()
        if helper == 0:
            os.close(r)
            try:
                out = json.dumps(_in_cgroup_namespace(nsroot, mnt, cg.new_id()))
            except BaseException as e:  # report, never return into pytest
                out = json.dumps({"error": repr(e)})
            os.write(w, out.encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.waitpid(helper, 0)
        helper = -1
        result = json.loads(b"".join(chunks) or b'{"error": "no output"}')
        assert "error" not in result, result
        actions = [(a, f) for a, f, _ in result["steps"]]
        assert actions[:3] == [("create", "$CG/init"), ("move-out", "$CG/init/cgroup.procs"),
                               ("write", "$CG/cgroup.subtree_control")]
        assert "no internal processes" in result["steps"][1][2]
        assert result["child_in_leaf"]
        assert result["memory_max"] == str(64 << 20)
        assert result["self_cgroup"] == "0::/init"  # the runtime moved itself too
        assert result["root_procs"] == ""
        assert result["removed"]
        # Seen from the host: the sleeper was moved into the leaf, controllers enabled.
        assert str(sleeper.pid) in read(nsroot / "init" / "cgroup.procs").split()
        assert "memory" in read(nsroot / "cgroup.subtree_control").split()
    finally:
        if helper > 0:
            os.kill(helper, signal.SIGKILL)
            os.waitpid(helper, 0)
        sleeper.kill()
        sleeper.wait()
        os.rmdir(mnt)
        for d in (nsroot / "init", nsroot):
            rmdir_when_empty(d, scale(5))
