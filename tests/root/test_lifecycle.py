"""Containers that outlive `run`: -d with a monitor, create/start, stop/kill/wait, logs, exec.

Each test cleans up after itself (rm -f); the root conftest then checks that
no container process, mount or cgroup is left on the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import PY, mc, mc_on_a_pty, read_until

pytestmark = pytest.mark.root


def _ps_json(name: str) -> dict:
    rows = json.loads(mc("ps", "-a", "--format", "json", check=0).stdout)
    found = [r for r in rows if r["name"] == name]
    assert found, rows
    return found[0]


def _wait_status(name: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = _ps_json(name)
        if st["status"] == status:
            return st
        assert time.monotonic() < deadline, f"{name} stayed {st['status']}, wanted {status}"
        time.sleep(0.05)


@pytest.fixture
def removed():
    """Names to remove with rm -f at the end, whatever the test did."""
    names: list[str] = []
    yield names
    for n in names:
        mc("rm", "-f", n)


def test_run_detached_prints_the_id_and_keeps_running(removed):
    removed.append("bg")
    proc = mc("run", "-d", "--name", "bg", "mini", "/bin/sh", "-c", "echo out; echo err >&2; sleep 30", check=0)
    cid = proc.stdout.strip()
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    st = _wait_status("bg", "running")
    assert st["detached"] and st["pid"] > 1 and st["image"] == "mini"
    assert st["status_text"].startswith("Up ")
    row = [line for line in mc("ps", check=0).stdout.splitlines() if line.endswith("bg")]
    assert row and "mini" in row[0] and '"/bin/sh -c' in row[0]
    # The monitor is not our child and holds none of our output pipes: mc() returned.
    deadline = time.monotonic() + 10
    while "err" not in mc("logs", "bg", check=0).stderr:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    logs = mc("logs", "bg", check=0)
    assert logs.stdout == "out\n" and logs.stderr == "err\n"
    assert mc("logs", "--tail", "0", "bg", check=0).stdout == ""
    stamped = mc("logs", "-t", "bg", check=0).stdout
    assert stamped.split()[0].endswith("Z") and stamped.split()[1] == "out"


def test_logs_follow_sees_lines_written_later(removed):
    removed.append("tick")
    mc("run", "-d", "--name", "tick", "mini", "/bin/sh", "-c", "echo one; sleep 1; echo two", check=0)
    proc = mc("logs", "-f", "tick", timeout=30, check=0)
    assert proc.stdout == "one\ntwo\n"  # returned by itself once the container ended
    assert _wait_status("tick", "exited")["exit_code"] == 0


def test_stop_escalates_to_sigkill_for_a_pid1_ignoring_term(removed):
    removed.append("stubborn")
    mc("run", "-d", "--name", "stubborn", "mini", "/bin/sh", "-c", 'trap "" TERM; sleep 100', check=0)
    _wait_status("stubborn", "running")
    start = time.monotonic()
    assert mc("stop", "-t", "1", "stubborn", check=0).stdout == "stubborn\n"
    assert time.monotonic() - start < 8
    st = _wait_status("stubborn", "exited")
    assert st["exit_code"] == 137 and st["status_text"].startswith("Exited (137)")
    assert mc("wait", "stubborn", check=0).stdout == "137\n"
    # Stopping a stopped container is no error, as with docker.
    assert mc("stop", "stubborn", check=0).stdout == "stubborn\n"


def test_kill_with_a_signal_and_start_again_in_the_same_layer(removed):
    removed.append("again")
    mc("run", "-d", "--name", "again", "mini", "/bin/sh", "-c", "echo run >> /kept; sleep 100", check=0)
    _wait_status("again", "running")
    assert mc("kill", "-s", "KILL", "again", check=0).stdout == "again\n"
    assert _wait_status("again", "exited")["exit_code"] == 137
    assert mc("start", "again", check=0).stdout == "again\n"
    _wait_status("again", "running")
    out = mc("exec", "again", "cat", "/kept", check=0).stdout
    assert out == "run\nrun\n"  # the same writable layer, a second run
    refused = mc("start", "again", check=125)
    assert "already running" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_create_then_start(removed):
    removed.append("later")
    cid = mc("create", "--name", "later", "mini", "/bin/sh", "-c", "echo go", check=0).stdout.strip()
    st = _ps_json("later")
    assert st["id"] == cid and st["status"] == "created" and st["status_text"] == "Created"
    assert st["pid"] > 1  # set up, waiting before execve
    time.sleep(0.3)
    assert mc("logs", "later", check=0).stdout == ""  # nothing ran yet
    start = mc("start", "-a", "later", timeout=30, check=0)
    assert start.stdout == "go\n"
    assert _wait_status("later", "exited")["exit_code"] == 0


def test_detached_rm_cleans_up_everything():
    cid = mc("run", "-d", "--rm", "mini", "/bin/sh", "-c", "exit 3", check=0).stdout.strip()
    deadline = time.monotonic() + 20
    while cid in mc("ps", "-a", "-q", "--no-trunc", check=0).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_bad_references_are_one_line_errors(removed):
    for args in (("stop", "nosuch"), ("kill", "nosuch"), ("logs", "nosuch"), ("exec", "nosuch", "true"),
                 ("start", "nosuch"), ("kill", "-s", "NOPE", "x")):
        proc = mc(*args)
        assert proc.returncode != 0, args
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
    removed.append("fg")
    mc("run", "--name", "fg", "mini", "true", check=0)
    assert "ran in the foreground" in mc("logs", "fg", check=125).stderr
    refused = mc("exec", "fg", "true", check=125)
    assert "not running" in refused.stderr


def test_a_taken_name_is_refused_before_any_work(removed):
    removed.append("taken")
    mc("run", "-d", "--name", "taken", "mini", "sleep", "30", check=0)
    proc = mc("run", "-d", "--name", "taken", "mini", "true", check=125)
    assert "already in use" in proc.stderr


# -- exec --------------------------------------------------------------------------------


def test_exec_joins_the_container(removed):
    removed.append("box")
    mc("run", "-d", "--name", "box", "--hostname", "boxy", "-e", "FROM_RUN=1", "mini", "sleep", "60", check=0)
    _wait_status("box", "running")
    assert mc("exec", "box", "hostname", check=0).stdout == "boxy\n"
    ps = mc("exec", "box", "ps", check=0).stdout
    assert any(line.split()[:1] == ["1"] and "sleep 60" in line for line in ps.splitlines()), ps
    env = mc("exec", "-e", "FROM_EXEC=2", "box", "/bin/sh", "-c", "echo $FROM_RUN $FROM_EXEC", check=0).stdout
    assert env == "1 2\n"
    assert mc("exec", "-u", "1000", "box", "id", "-u", check=0).stdout == "1000\n"
    assert mc("exec", "-w", "/tmp", "box", "pwd", check=0).stdout == "/tmp\n"
    status = mc("exec", "box", "grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status", check=0).stdout.split()
    assert status == ["NoNewPrivs:", "1", "Seccomp:", "2"]
    assert mc("exec", "box", "sh", "-c", "exit 7").returncode == 7
    assert mc("exec", "-i", "box", "cat", input="piped\n", check=0).stdout == "piped\n"
    # Same mount namespace as PID 1: a file written by one is seen by the other.
    mc("exec", "box", "sh", "-c", "echo shared > /tmp/x", check=0)
    assert mc("exec", "box", "cat", "/tmp/x", check=0).stdout == "shared\n"


def test_exec_shares_the_container_limits(removed):
    removed.append("limited")
    mc("run", "-d", "--name", "limited", "--pids-limit", "12", "mini", "sleep", "60", check=0)
    _wait_status("limited", "running")
    # The exec'd shell is in the container's pids cgroup: its fork bomb hits the same limit.
    proc = mc("exec", "limited", "/bin/sh", "-c",
              "for i in $(seq 1 30); do sleep 5 & done 2>/dev/null; echo started; kill $(jobs -p) 2>/dev/null",
              timeout=60)
    assert "fork" in proc.stderr.lower() or "resource" in proc.stderr.lower() or proc.returncode != 0, proc


SLOW_EXEC = """
import sys, time
from minicontainer.container.interpreter import Interpreter
from minicontainer.cli import main

real = Interpreter._set_workdir

def slow(self, step):  # the real steps, with a pause once the child is inside
    time.sleep(4)
    real(self, step)

Interpreter._set_workdir = slow
main(["exec", sys.argv[1], "true"])
"""


def test_exec_runtime_is_not_reachable_from_inside(removed):
    """While our Python runs inside the container (joined, not yet exec'd),
    root inside cannot open its /proc/PID/exe: it is non-dumpable (runc CVE-2019-5736)."""
    removed.append("safe")
    mc("run", "-d", "--name", "safe", "mini", "sleep", "60", check=0)
    _wait_status("safe", "running")
    slow = subprocess.Popen([PY, "-c", SLOW_EXEC, "safe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        probe = ('for p in /proc/[0-9]*; do n=$(cat $p/comm 2>/dev/null); case $n in python*) '
                 'if cat $p/exe >/dev/null 2>&1; then echo "$n open"; else echo "$n denied"; fi;; esac; done')
        deadline = time.monotonic() + 20
        seen = ""
        while "python" not in seen and time.monotonic() < deadline:
            seen = mc("exec", "safe", "/bin/sh", "-c", probe, check=0).stdout
        assert "denied" in seen and "open" not in seen, seen
    finally:
        out, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err


def test_exec_explain_shows_the_setns_steps(removed):
    removed.append("shown")
    mc("run", "-d", "--name", "shown", "mini", "sleep", "60", check=0)
    _wait_status("shown", "running")
    proc = mc("exec", "--explain", "shown", "true", check=0)
    err = proc.stderr
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert f"join the container's {ns} namespace" in err, err
    assert "nsenter --target $PID1 --mount" in err
    assert "make the runtime's process non-dumpable" in err
    assert err.index("join the container's pid namespace") < err.index("fork")


def test_a_killed_monitor_leaves_a_container_rm_f_removes(removed):
    removed.append("orphan")
    mc("run", "-d", "--name", "orphan", "mini", "sleep", "100", check=0)
    st = _wait_status("orphan", "running")
    os.kill(st["runtime_pid"], signal.SIGKILL)
    time.sleep(0.5)
    st = _ps_json("orphan")
    assert st["status"] == "running" and "monitor is gone" in st["exit_reason"]
    assert mc("exec", "orphan", "true").returncode == 0
    mc("rm", "-f", "orphan", check=0)
    assert "orphan" not in mc("ps", "-a", check=0).stdout


# -- PID 1 and --init -------------------------------------------------------------------


def test_init_reaps_orphans_and_forwards_stop(removed):
    removed.append("reaper")
    # 100 orphans: each background sleep's parent shell exits at once.
    mc("run", "-d", "--init", "--name", "reaper", "mini", "/bin/sh", "-c",
       "for i in $(seq 1 100); do (sleep 0.2 &) ; done; sleep 100", check=0)
    _wait_status("reaper", "running")
    time.sleep(1.5)
    zombies = mc("exec", "reaper", "/bin/sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l", check=0)
    assert zombies.stdout.strip() == "0"
    assert mc("exec", "reaper", "cat", "/proc/1/cmdline", check=0).stdout.startswith("/dev/init\0--\0")
    start = time.monotonic()
    mc("stop", "reaper", check=0)
    took = time.monotonic() - start
    st = _wait_status("reaper", "exited")
    # tini passed SIGTERM on to sh, which died of it: no 10 s grace, no SIGKILL.
    assert st["exit_code"] == 143, st
    assert took < 5, took


def test_the_seed_cpu_exercise_ends_with_init():
    proc = mc("run", "--rm", "--init", "--cpus", "0.05", "mini", "/bin/sh", "-c", "timeout 2 yes > /dev/null; echo done",
              timeout=60)
    assert proc.stdout == "done\n", proc


def test_an_ignored_interrupt_is_explained_and_a_second_one_kills():
    runtime = subprocess.Popen([PY, "-m", "minicontainer", "run", "--rm", "mini", "sleep", "30"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while "sleep" not in subprocess.run(["pgrep", "-P", str(runtime.pid), "-l"], capture_output=True,
                                           text=True).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runtime.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert runtime.poll() is None  # ignored by sleep as PID 1
        runtime.send_signal(signal.SIGINT)
        _, err = runtime.communicate(timeout=20)
    finally:
        if runtime.poll() is None:
            runtime.kill()
            runtime.wait()
    assert runtime.returncode == 137
    assert "has no handler for SIGINT" in err and "--init" in err and "Ctrl-C again" in err



def test_the_monitor_of_a_running_container_is_small(removed):
    """Once PID 1 runs, the monitor is a fresh small interpreter (watch.py):
    its resident memory stays under 15 MB (about 11 MB measured here, the
    interpreter itself being about 10 MB)."""
    removed.append("lean")
    mc("run", "-d", "--name", "lean", "-m", "64m", "mini", "sleep", "30", check=0)
    st = _wait_status("lean", "running")
    with open(f"/proc/{st['runtime_pid']}/cmdline", "rb") as f:
        assert b"minicontainer.container.watch" in f.read()
    with open(f"/proc/{st['runtime_pid']}/status") as f:
        rss_kb = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    assert rss_kb < 15 * 1024, rss_kb


# -- --restart ------------------------------------------------------------------------


def test_restart_on_failure_three_times(removed):
    removed.append("flaky")
    mc("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "mini", "/bin/sh", "-c", "echo try; exit 3", check=0)
    deadline = time.monotonic() + 30
    while True:
        st = _ps_json("flaky")
        if st["status"] == "exited" and st["restart_count"] == 3:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert st["exit_code"] == 3
    assert mc("logs", "flaky", check=0).stdout == "try\n" * 4  # the first run and three restarts


def test_restart_always_stops_for_good_on_stop(removed):
    removed.append("loop")
    mc("run", "-d", "--name", "loop", "--restart", "always", "mini", "sleep", "0.3", check=0)
    deadline = time.monotonic() + 30
    while _ps_json("loop")["restart_count"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    mc("stop", "-t", "1", "loop", check=0)
    st = _wait_status("loop", "exited")
    count = st["restart_count"]
    time.sleep(1.5)
    after = _ps_json("loop")
    assert after["status"] == "exited" and after["restart_count"] == count


def test_restart_flags_are_checked():
    assert "needs -d" in mc("run", "--restart", "always", "mini", "true", check=125).stderr
    assert "contradict" in mc("run", "-d", "--rm", "--restart", "always", "mini", "true", check=125).stderr
    assert "invalid --restart" in mc("run", "-d", "--restart", "sometimes", "mini", "true", check=125).stderr


# -- attach ---------------------------------------------------------------------------


def test_attach_to_a_tty_container_and_detach_with_ctrl_p_ctrl_q(removed):

    removed.append("shell")
    mc("run", "-dit", "--name", "shell", "mini", "/bin/sh", check=0)
    _wait_status("shell", "running")
    with mc_on_a_pty("attach", "shell") as (client, master):
        time.sleep(1)
        os.write(master, b"echo attached-$((6*7))\r")
        assert b"attached-42" in read_until(master, b"attached-42")
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        assert b"read escape sequence" in read_until(master, b"read escape sequence")
        assert client.wait(timeout=10) == 0
    assert _ps_json("shell")["status"] == "running"  # detached, not stopped
    assert "attached-42" in mc("logs", "shell", check=0).stdout


def test_attach_pipes_input_to_a_detached_interactive_container(removed):
    removed.append("cat")
    mc("run", "-di", "--name", "cat", "mini", "cat", check=0)
    _wait_status("cat", "running")
    client = subprocess.Popen([PY, "-m", "minicontainer", "attach", "cat"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        client.stdin.write(b"through-attach\n")
        client.stdin.flush()
        fd = client.stdout.fileno()
        assert b"through-attach" in read_until(fd, b"through-attach")
    finally:
        mc("stop", "-t", "1", "cat")
        client.wait(timeout=20)
    assert "not running" in mc("attach", "cat", check=125).stderr


def test_exec_with_a_tty_from_the_containers_devpts(removed):

    removed.append("ttybox")
    mc("run", "-d", "--name", "ttybox", "mini", "sleep", "60", check=0)
    _wait_status("ttybox", "running")
    with mc_on_a_pty("exec", "-it", "ttybox", "/bin/sh", "-c",
                     "tty; ls -l /proc/self/fd/0 | grep -o '/dev/pts/[0-9]*'") as (proc, master):
        out = read_until(master, b"\n/dev/pts/", 20) + read_until(master, b"\n", 5)
        assert proc.wait(timeout=20) == 0
    lines = [ln.strip() for ln in out.decode(errors="replace").splitlines() if ln.strip()]
    assert lines[0].startswith("/dev/pts/") and lines[0] in lines[1:], lines


def test_after_a_reboot_the_layers_are_listed_and_can_be_removed(removed, clean_host, mc_home):
    """The state root is on a tmpfs (/run) and goes with a reboot; the layer
    is on disk. ps -a still lists the container (exited), start runs it
    again, rm removes it."""
    import shutil

    removed.append("survivor")
    cid = mc("run", "-d", "--name", "survivor", "mini", "/bin/sh", "-c", "echo boot >> /count", check=0).stdout.strip()
    _wait_status("survivor", "exited")
    shutil.rmtree(clean_host / "run")  # what a reboot does to /run
    st = _ps_json("survivor")
    assert st["id"] == cid and st["status"] == "exited" and "restarted" in st["exit_reason"]
    mc("start", "survivor", check=0)
    _wait_status("survivor", "exited")
    mc("start", "survivor", check=0)  # once more: its state is back for good
    _wait_status("survivor", "exited")
    mc("rm", "survivor", check=0)
    assert not (mc_home / "containers" / cid).exists()
    assert "survivor" not in mc("ps", "-a", check=0).stdout


def test_start_i_pipes_input_and_ends_with_it(removed):
    removed.append("job")
    mc("create", "-i", "--name", "job", "mini", "/bin/sh", "-c", "tr a-z A-Z; exit 4", check=0)
    proc = mc("start", "-i", "job", input="shout\n", timeout=30)
    assert proc.stdout == "SHOUT\n" and proc.returncode == 4, proc
