"""Resource limits end to end, through `minicontainer run`, on this (hybrid, v1) host.

Each test runs the real CLI as a user would; the ``clean_host`` fixture
(conftest.py) then checks that no container process, mount or cgroup named
minicontainer was left behind, failed runs included. What is measured
(CPU time, the CPUs a process may use) is read from the host's side: the
container's cgroup files and /proc, not the runtime's own report.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc
from runtools import COUNTER, read_counter

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]

CGROUP = Path("/sys/fs/cgroup")


def run(*args, **kw):
    return mc("run", "--rm", *args, **kw)


# --- memory -------------------------------------------------------------------


def test_oom_kill_is_exit_137_with_a_one_line_report():
    # tail buffers its input until it sees a newline, and /dev/zero has none:
    # it allocates until the OOM killer stops it. It is PID 1, the only process.
    proc = run("-m", "64m", "mini", "tail", "/dev/zero", timeout=scale(60))
    assert proc.returncode == 137, proc.stderr
    lines = proc.stderr.splitlines()
    assert "minicontainer: killed by the OOM killer: memory limit 64 MiB, peak 64 MiB" in lines
    # the runtime survived to report and clean up, and the next run works
    assert run("mini", "true").returncode == 0


def test_oom_of_a_child_is_reported_while_the_shell_goes_on():
    proc = run("-m", "64m", "mini", "sh", "-c", "tail /dev/zero; echo survived $?", timeout=scale(60))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "survived 137"  # 128 + SIGKILL
    assert "killed by the OOM killer: memory limit 64 MiB" in proc.stderr


def test_a_run_within_its_limits_has_no_report():
    proc = run("-m", "64m", "--pids-limit", "20", "mini", "sh", "-c", "head -c 8m /dev/zero | wc -c")
    assert proc.returncode == 0
    assert proc.stdout.strip() == str(8 << 20)
    assert "OOM" not in proc.stderr and "forks failed" not in proc.stderr


# --- pids -----------------------------------------------------------------------

# The classic bomb: every call starts two more in the background. pids.max
# bounds it; PID 1 exits after 2 s (or at once, if even its own `sleep`
# cannot fork), and the kernel kills the rest of the PID namespace with it.
FORK_BOMB = "bomb() { bomb | bomb & }; bomb; sleep 2; exit 3"


def test_fork_bomb_is_stopped_by_pids_limit_and_the_host_stays_responsive():
    proc_box = {}

    def bomb():
        proc_box["proc"] = run("--pids-limit", "20", "mini", "sh", "-c", FORK_BOMB, timeout=scale(60))

    t = threading.Thread(target=bomb)
    t0 = time.monotonic()
    t.start()
    # While the bomb runs, the host still forks and execs promptly.
    probes = []
    while t.is_alive() and len(probes) < 10:
        s = time.monotonic()
        subprocess.run(["/bin/true"], check=True, timeout=scale(10))
        probes.append(time.monotonic() - s)
        time.sleep(0.1)
    t.join(scale(90))
    elapsed = time.monotonic() - t0
    proc = proc_box["proc"]
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Resource temporarily unavailable" in proc.stderr  # busybox sh: "can't fork: ..."
    assert proc.stderr.rstrip().endswith("minicontainer: forks failed: pids limit 20 reached")
    assert max(probes) < scale(1.0), probes
    assert elapsed < scale(30)


def test_pids_limit_counts_every_process():
    # A subshell starts sleepers and prints how many it has, until a fork
    # fails (busybox sh then gives up on that subshell). The shell, the
    # subshell and 18 sleepers make 20.
    script = "(n=0; for i in $(seq 25); do sleep 5 & n=$((n+1)); echo $n; done); echo gave up at $?"
    proc = run("--pids-limit", "20", "mini", "sh", "-c", script, timeout=scale(60))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2:] == ["18", "gave up at 2"], lines
    assert "can't fork: Resource temporarily unavailable" in proc.stderr
    assert "forks failed: pids limit 20 reached" in proc.stderr


# --- cleanup --------------------------------------------------------------------


def test_processes_that_escape_pid_1_are_killed_through_the_cgroup():
    # Without a PID namespace of its own, nothing kills a setsid'd grandchild
    # when the container's first process exits: only the cgroup still knows it
    # (v1: freeze, SIGKILL each, thaw; v2: cgroup.kill).
    marker = f"{os.getpid() % 1000 + 3000}.5"
    proc = run("--pid", "host", "mini", "sh", "-c", f"setsid sleep {marker} & sleep 0.2; echo started")
    assert (proc.returncode, proc.stdout) == (0, "started\n"), proc.stderr
    assert not sleeping(marker)


def sleeping(marker: str) -> list[int]:
    """Pids of `sleep MARKER` processes on the host."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    out.append(int(entry))
        except (OSError, ValueError):
            continue
    return out


# --- cpu ------------------------------------------------------------------------


def cpuacct_usage_ns(cid: str) -> int:
    return int((CGROUP / "cpuacct" / "minicontainer" / cid / "cpuacct.usage").read_text())


def test_cpus_limit_holds_a_busy_loop_to_its_share(containers):
    containers.start("busy", "--cpus", "0.2", "mini", "sh", "-c", "while :; do :; done")
    cid = containers.state("busy").id
    time.sleep(0.5)  # past the start-up
    u0, t0 = cpuacct_usage_ns(cid), time.monotonic()
    time.sleep(3)
    u1, t1 = cpuacct_usage_ns(cid), time.monotonic()
    cores = (u1 - u0) / 1e9 / (t1 - t0)
    assert 0.15 <= cores <= 0.25, f"--cpus 0.2 used {cores:.3f} cores"
    assert (CGROUP / "cpu" / "minicontainer" / cid / "cpu.cfs_quota_us").read_text().strip() == "20000"
    containers.rm("busy")


def test_cpuset_keeps_the_container_on_cpu_0():
    proc = run("--cpuset-cpus", "0", "mini", "sh", "-c",
               "grep Cpus_allowed_list /proc/self/status; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
               "cut -d' ' -f39 /proc/self/stat")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].split() == ["Cpus_allowed_list:", "0"]
    assert lines[1] == "0"  # the CPU it last ran on (proc(5), field 39)


# --- refused before anything exists ---------------------------------------------


@pytest.mark.parametrize("flags,message", [
    (["-m", "abc"], "invalid --memory value 'abc'"),
    (["--memory="], "invalid --memory value ''"),
    (["-m", "-1"], "invalid --memory value '-1'"),
    (["--cpus", "-1"], "invalid --cpus value '-1'"),
    (["--cpus", "0.0001"], "below the kernel's minimum quota"),
    (["--cpuset-cpus", "99"], "this host has no CPU 99"),
    (["--pids-limit", "x"], "invalid --pids-limit value 'x'"),
    (["-m", "64m", "--memory-swap", "32m"], "smaller than --memory"),
    (["--device-write-bps", "/dev/null:1mb"], "/dev/null is not a block device"),
])
def test_invalid_values_are_refused_before_anything_is_created(clean_host, mc_home, flags, message):
    layers_before = set(os.listdir(mc_home / "containers")) if (mc_home / "containers").is_dir() else set()
    proc = mc("run", "--name", "never", *flags, "mini", "true")
    assert proc.returncode == 125
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    state = clean_host / "run"
    assert not (state / "names" / "never").exists()
    assert not (state / "containers").is_dir() or not os.listdir(state / "containers")
    layers_after = set(os.listdir(mc_home / "containers")) if (mc_home / "containers").is_dir() else set()
    assert layers_after == layers_before
    # (no cgroup: checked by clean_host)


# --- explain ----------------------------------------------------------------------


def test_explain_shows_the_v1_file_and_its_v2_counterpart():
    proc = run("--explain", "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "mini", "true")
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()

    def step(file):
        return next(line for line in lines if line.rstrip().split("   (")[0].endswith(f"/{file}"))

    assert "echo '67108864' > /sys/fs/cgroup/memory/minicontainer/" in step("memory.limit_in_bytes")
    assert step("memory.limit_in_bytes").endswith("(other cgroup version: memory.max)")
    assert step("cpu.cfs_quota_us").endswith("(other cgroup version: cpu.max (first number))")
    assert step("pids.max").endswith("(other cgroup version: pids.max)")


# --- stats, pause, unpause ----------------------------------------------------------


def test_stats_json_shows_the_limits_and_usage(containers):
    containers.start("lim", "-m", "64m", "--pids-limit", "20", "--cpus", "0.5", "mini", "sleep", "60")
    proc = mc("stats", "--no-stream", "--format", "json", "lim", check=0)
    (s,) = json.loads(proc.stdout)
    assert s["name"] == "lim" and s["id"] == containers.state("lim").id
    assert (s["memory_limit"], s["pids_limit"], s["cpus"]) == (64 << 20, 20, 0.5)
    assert s["pids_current"] == 1  # sleep, alone
    assert 0 < s["memory_usage"] < 64 << 20
    assert 0 <= s["cpu_percent"] < 5  # sleeping
    table = mc("stats", "--no-stream", check=0).stdout.splitlines()
    assert table[0].startswith("CONTAINER ID")
    row = next(line for line in table if " lim " in line)
    assert "/ 64 MiB" in row and "1 / 20" in row and "/ 50%" in row
    containers.rm("lim")


def test_stats_of_an_exited_or_unknown_container_is_one_line(containers):
    mc("run", "--name", "done", "mini", "true", check=0)
    for ref, text in (("done", "container done is not running"), ("nosuch", "no such container: nosuch")):
        proc = mc("stats", "--no-stream", ref)
        assert proc.returncode == 125 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and text in proc.stderr
    mc("rm", "done", check=0)


def test_pause_freezes_and_unpause_thaws(containers, clean_host):
    data = clean_host / "data"
    data.mkdir()
    containers.start("tick", "-v", f"{data}:/data", "mini", "sh", "-c", COUNTER)
    counter = data / "n"
    deadline = time.monotonic() + scale(10)
    while not counter.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mc("pause", "tick").stdout == "tick\n"
    assert (CGROUP / "freezer" / "minicontainer" / containers.state("tick").id / "freezer.state").read_text() \
        .strip() == "FROZEN"
    frozen_at = read_counter(counter)
    time.sleep(1)
    assert read_counter(counter) == frozen_at, "the counter moved while paused"
    again = mc("pause", "tick")
    assert again.returncode == 125 and "already paused" in again.stderr
    assert mc("unpause", "tick").stdout == "tick\n"
    time.sleep(1)
    assert read_counter(counter) > frozen_at + 3, "the counter did not go on after unpause"
    # rm -f of a paused container: the kill takes effect at once (v1 keeps frozen tasks until thawed)
    mc("pause", "tick", check=0)
    t0 = time.monotonic()
    rm = containers.rm("tick")
    assert time.monotonic() - t0 < scale(5), (rm.stderr, containers.stderr("tick"))


def test_pause_refuses_a_container_that_is_not_running(containers):
    mc("run", "--name", "done", "mini", "true", check=0)
    proc = mc("pause", "done")
    assert proc.returncode == 125
    assert "container done is not running" in proc.stderr and "hint:" in proc.stderr
    mc("rm", "done", check=0)


def test_a_paused_container_still_stops_when_the_runtime_is_told_to(clean_host):
    # SIGTERM to the runtime of a paused container: forwarded, then escalated to
    # SIGKILL, and the freezer thawed so the kill can land (no hang on cgroup v1)
    import signal as _signal
    import subprocess as _sp

    from helpers import PY

    runtime = _sp.Popen([PY, "-m", "minicontainer", "run", "--name", "frozen", "mini", "sleep", "300"],
                        stdout=_sp.DEVNULL, stderr=_sp.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and mc("pause", "frozen").returncode != 0:
            time.sleep(0.2)
        assert "(Paused)" in mc("ps", check=0).stdout
        runtime.send_signal(_signal.SIGTERM)
        assert runtime.wait(timeout=40) == 137
    finally:
        if runtime.poll() is None:
            runtime.kill()
            runtime.wait()
    mc("rm", "frozen", check=0)


# --- the container sees its own limits (issue 11, item 3) ------------------------------


def test_the_container_reads_its_own_limits_and_cannot_raise_them():
    # As Docker on v1: the container's cgroup directory of each hierarchy is
    # bound read-only under /sys/fs/cgroup/<controller>, on a small tmpfs.
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
              "grep -c . /sys/fs/cgroup/pids/cgroup.procs; "
              "echo 999 > /sys/fs/cgroup/pids/pids.max; echo pids=$?; "
              "echo 1g > /sys/fs/cgroup/memory/memory.limit_in_bytes; echo memory=$?; "
              "mkdir /sys/fs/cgroup/memory/sub; echo mkdir=$?; "
              "awk '$5 ~ /^\\/sys\\/fs\\/cgroup/ && $6 !~ /^ro/' /proc/self/mountinfo | wc -l")
    proc = run("-m", "64m", "--pids-limit", "20", "mini", "sh", "-c", script)
    out = proc.stdout.split()
    assert out[:2] == [str(64 << 20), "20"], proc.stderr
    assert 1 <= int(out[2]) <= 5  # the container's own processes, not the host's
    assert out[3:6] == ["pids=1", "memory=1", "mkdir=1"]
    assert out[6] == "0"  # every mount under /sys/fs/cgroup is read-only
    assert "Read-only file system" in proc.stderr


def test_without_limits_the_container_still_sees_its_cgroup_and_privileged_may_write_it():
    assert "memory" in run("mini", "ls", "/sys/fs/cgroup").stdout.split()
    proc = run("--privileged", "--pids-limit", "20", "mini", "sh", "-c",
               "echo 30 > /sys/fs/cgroup/pids/pids.max && cat /sys/fs/cgroup/pids/pids.max")
    assert proc.stdout.split() == ["30"], proc.stderr


def test_fifty_concurrent_limited_runs_all_succeed():
    # issue 11, item 8, on v1: seven hierarchies, each with a shared minicontainer/
    # directory that a finishing run removes when it looks unused
    from helpers import PY

    procs = [subprocess.Popen([PY, "-m", "minicontainer", "run", "--rm", "-m", "16m", "mini", "true"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(50)]
    outs = [p.communicate(timeout=scale(300)) for p in procs]
    failed = [err for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    assert failed == [], failed[:3]
