"""Resource limits end to end through `minicontainer run` on cgroup v2 (the VM of scripts/vm-test).

The same checks as tests/cgroup1/test_run_limits.py where they make sense,
plus what only v2 has: memory.swap.max, cgroup.kill, cgroup.freeze, and the
"no internal processes" rule met by a runtime started in the root of a cgroup
namespace that holds processes (as inside `docker run --privileged`).

Python runs 15-50x slower in the VM and each `run` takes seconds there, so
the tests are few and combine checks; every timeout goes through scale().
After each test no container process, mount or cgroup named minicontainer
may be left (``clean_host``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cgtools import LoopDevice, rmdir_when_empty, scale
from helpers import PY, mc
from runtools import COUNTER, read_counter

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]

ROOT = Path("/sys/fs/cgroup")


def run(*args, timeout=None):
    return mc("run", "--rm", *args, timeout=timeout or scale(30))


def leaf(cid: str) -> Path:
    return ROOT / "minicontainer" / cid


def keyed(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def test_oom_kill_is_exit_137_with_the_report_from_memory_events():
    # tail buffers /dev/zero looking for a newline: it allocates until killed.
    proc = run("-m", "64m", "--memory-swap", "64m", "mini", "tail", "/dev/zero")
    assert proc.returncode == 137, proc.stderr
    assert "minicontainer: killed by the OOM killer: memory limit 64 MiB, peak 64 MiB" in proc.stderr.splitlines()


def test_fork_bomb_is_stopped_by_pids_max():
    proc = run("--pids-limit", "20", "mini", "sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 2; exit 3",
               timeout=scale(60))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Resource temporarily unavailable" in proc.stderr
    assert proc.stderr.rstrip().endswith("minicontainer: forks failed: pids limit 20 reached")


def test_cpuset_and_escaped_processes_killed_by_cgroup_kill():
    marker = f"{os.getpid() % 1000 + 3000}.25"
    proc = run("--cpuset-cpus", "0", "--pid", "host", "mini", "sh", "-c",
               f"grep Cpus_allowed_list /proc/self/status; setsid sleep {marker} & sleep 0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Cpus_allowed_list:", "0"]
    # the setsid'd sleep outlived the container's first process; only cgroup.kill found it
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == ["sleep", marker]]


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")[:2]
    except OSError:
        return []


@pytest.mark.parametrize("flags,message", [
    (["-m", "abc"], "invalid --memory value 'abc'"),
    (["--cpus", "0.0001"], "below the kernel's minimum quota"),
    (["--cpuset-cpus", "99"], "this host has no CPU 99"),
])
def test_invalid_values_are_refused_before_anything_is_created(clean_host, flags, message):
    proc = mc("run", "--name", "never", *flags, "mini", "true", timeout=scale(30))
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    state = clean_host / "run"
    assert not (state / "containers").is_dir() or not os.listdir(state / "containers")


def test_explain_shows_the_v2_files_and_their_v1_counterparts():
    proc = run("--explain", "-m", "64m", "--memory-swap", "96m", "--cpus", "0.5", "mini", "true")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()

    def step(file):
        return next(line for line in lines if line.rstrip().split("   (")[0].endswith(f"/{file}"))

    assert step("memory.max").endswith("(other cgroup version: memory.limit_in_bytes)")
    assert f"echo '{32 << 20}' > " in step("memory.swap.max")  # swap alone: 96m - 64m
    assert "memory.memsw.limit_in_bytes" in step("memory.swap.max")
    assert "echo '50000 100000' > " in step("cpu.max")
    assert "cpu.cfs_quota_us" in step("cpu.max")


def test_cpus_limit_stats_and_io_max(containers):
    dev = LoopDevice()
    try:
        containers.start("busy", "--cpus", "0.2", "-m", "64m", "--pids-limit", "20",
                         "--device-write-bps", f"{dev.path}:1mb", "mini", "sh", "-c", "while :; do :; done")
        cid = containers.state("busy").id
        st = os.stat(dev.path)
        assert (leaf(cid) / "io.max").read_text().startswith(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)} ")
        assert f"wbps={1 << 20}" in (leaf(cid) / "io.max").read_text()
        time.sleep(1)
        u0, t0 = keyed(leaf(cid) / "cpu.stat")["usage_usec"], time.monotonic()
        time.sleep(3)
        u1, t1 = keyed(leaf(cid) / "cpu.stat")["usage_usec"], time.monotonic()
        cores = (u1 - u0) / 1e6 / (t1 - t0)
        assert 0.15 <= cores <= 0.25, f"--cpus 0.2 used {cores:.3f} cores"
        (s,) = json.loads(mc("stats", "--no-stream", "--format", "json", "busy", timeout=scale(30), check=0).stdout)
        assert (s["cpus"], s["memory_limit"], s["pids_limit"], s["pids_current"]) == (0.2, 64 << 20, 20, 1)
        assert s["cpu_throttled_usec"] > 0
        containers.rm("busy")
    finally:
        dev.close()


def test_pause_and_unpause_through_cgroup_freeze(containers, clean_host):
    data = clean_host / "data"
    data.mkdir()
    containers.start("tick", "-v", f"{data}:/data", "mini", "sh", "-c", COUNTER)
    counter = data / "n"
    deadline = time.monotonic() + scale(5)
    while not counter.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cid = containers.state("tick").id
    assert mc("pause", "tick", timeout=scale(30)).stdout == "tick\n"
    assert keyed(leaf(cid) / "cgroup.events")["frozen"] == 1
    frozen_at = read_counter(counter)
    time.sleep(2)
    assert read_counter(counter) == frozen_at, "the counter moved while paused"
    assert mc("unpause", "tick", timeout=scale(30)).stdout == "tick\n"
    assert keyed(leaf(cid) / "cgroup.events")["frozen"] == 0
    deadline = time.monotonic() + scale(2)
    while read_counter(counter) <= frozen_at + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_counter(counter) > frozen_at + 3, "the counter did not go on after unpause"
    containers.rm("tick")


def test_run_in_the_root_of_a_cgroup_namespace_that_holds_processes(clean_host):
    # Inside `docker run --privileged` (cgroupns private) the cgroup2 mount's
    # root is the container's own cgroup, a non-root cgroup holding its
    # processes: controllers cannot be handed down from there until they move.
    # Built here by hand: a fresh cgroup, a shell moved into it, a new cgroup
    # and mount namespace rooted there, cgroup2 mounted afresh over /sys/fs/cgroup.
    (ROOT / "cgroup.subtree_control").write_text("+memory +pids")  # clean_host restores it
    nsroot = ROOT / f"mctest-nsroot-{os.getpid()}"
    nsroot.mkdir()
    # (The kernel refuses the same filesystem twice on one mount point, EBUSY:
    # a tmpfs goes between, in the new mount namespace only.)
    inner = (f"mount -t tmpfs none /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
             f"exec {PY} -m minicontainer run --rm --explain --cgroupns host -m 64m --pids-limit 10 "
             f"mini cat /proc/self/cgroup")
    script = (f"echo $$ > {nsroot}/cgroup.procs && "
              f"exec unshare --cgroup --mount --propagation private --fork sh -c '{inner}'")
    try:
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=scale(60))
        assert proc.returncode == 0, proc.stderr[-3000:]
        # the container ran in <nsroot>/minicontainer/<id>, seen from its namespace as /minicontainer/<id>
        assert proc.stdout.startswith("0::/minicontainer/"), proc.stdout
        lines = proc.stderr.splitlines()
        moved = [i for i, line in enumerate(lines)
                 if "move every process in /sys/fs/cgroup/cgroup.procs to /sys/fs/cgroup/init/cgroup.procs" in line]
        assert moved, proc.stderr[-3000:]
        assert "no internal processes" in lines[moved[0] + 1]
        # seen from the host: the controllers reached the namespace root's children,
        # and the container's cgroup is gone again
        assert {"memory", "pids"} <= set((nsroot / "cgroup.subtree_control").read_text().split())
        assert (nsroot / "init").is_dir()
        assert not (nsroot / "minicontainer").exists()
    finally:
        for d in (nsroot / "init", nsroot):
            rmdir_when_empty(d, scale(5))


# --- the container sees its own limits (issue 11, item 3) ------------------------------


def test_the_container_reads_its_own_limits_and_cannot_raise_them():
    # As Docker on v2: cgroup2 mounted read-only from the container's own cgroup
    # namespace, so its cgroup is the root of what it sees
    script = ("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup; "
              "echo max > /sys/fs/cgroup/pids.max; echo pids=$?; "
              "echo max > /sys/fs/cgroup/memory.max; echo memory=$?; "
              "grep ' /sys/fs/cgroup ' /proc/self/mountinfo")
    proc = mc("run", "--rm", "-m", "64m", "--pids-limit", "20", "mini", "sh", "-c", script, timeout=scale(60))
    out = proc.stdout.splitlines()
    assert out[:3] == [str(64 << 20), "20", "0::/"], proc.stderr
    assert out[3:5] == ["pids=1", "memory=1"]
    assert out[5].split()[5].startswith("ro,") and " - cgroup2 " in out[5]
    # --cgroupns host: the container's own directory, bound read-only
    proc = mc("run", "--rm", "--cgroupns", "host", "--pids-limit", "20", "mini", "sh", "-c",
              "cat /sys/fs/cgroup/pids.max; echo max > /sys/fs/cgroup/pids.max; echo pids=$?", timeout=scale(60))
    assert proc.stdout.split() == ["20", "pids=1"], proc.stderr


def test_fifty_concurrent_limited_runs_all_succeed(mc_home):
    # issue 11, item 8: each run's cleanup removes the shared minicontainer/
    # directory when it looks unused, between other runs' create steps; every
    # create step retries that ENOENT, so none fails with "does not offer ..."
    procs = [subprocess.Popen([PY, "-m", "minicontainer", "run", "--rm", "-m", "16m", "mini", "true"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(50)]
    outs = [p.communicate(timeout=scale(300)) for p in procs]
    failed = [err for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    assert failed == [], failed[:3]
