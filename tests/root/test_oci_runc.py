"""minicontainer-runc driven as an engine drives runc: a bundle made from the
`mini` image's rootfs, create / state / start / state / kill / delete."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import mc

pytestmark = pytest.mark.root

PY = sys.executable


def runc(*args, check=None, timeout=60, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "minicontainer.oci.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}"
    return proc


def create(tmp_path: Path, *args, check=0) -> subprocess.CompletedProcess:
    """``create``, its stdio files: the container inherits them (an engine's
    pipes, as with runc), so a pipe would stay open as long as it runs."""
    with open(tmp_path / "out", "a") as out, open(tmp_path / "err", "a") as err:
        proc = subprocess.run([PY, "-m", "minicontainer.oci.cli", "create", *args], stdin=subprocess.DEVNULL,
                              stdout=out, stderr=err, timeout=60)
    proc.stderr = (tmp_path / "err").read_text()
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}"
    return proc


@pytest.fixture
def bundle(mc_home, tmp_path):
    """`minicontainer-runc spec` plus a copy of the mini image's root."""
    images = sorted(Path(mc_home, "images").glob("*/rootfs"))
    assert images, "the session's mini image is missing"
    b = tmp_path / "bundle"
    b.mkdir()
    shutil.copytree(images[0], b / "rootfs", symlinks=True)
    runc("spec", "--bundle", str(b), check=0)
    return b


@pytest.fixture
def cleanup():
    """Ids to `delete --force` after the test, pass or fail (before the host's leak check)."""
    ids: list[str] = []
    yield ids.append
    for cid in ids:
        runc("delete", "--force", cid)


def configure(bundle: Path, args: list[str], terminal: bool = False, **linux) -> None:
    path = bundle / "config.json"
    doc = json.loads(path.read_text())
    doc["process"]["args"] = args
    doc["process"]["terminal"] = terminal
    doc["root"]["readonly"] = False
    doc["linux"].update(linux)
    path.write_text(json.dumps(doc))


def state(cid: str) -> dict:
    return json.loads(runc("state", cid, check=0).stdout)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_create_state_start_kill_delete(bundle, tmp_path):
    configure(bundle, ["sh", "-c", "echo hello from $(hostname); exec sleep 60"])
    out = tmp_path / "out"
    pid_file = tmp_path / "pid"
    create(tmp_path, "--bundle", str(bundle), "--pid-file", str(pid_file), "c1")
    s = state("c1")
    assert s["status"] == "created" and s["id"] == "c1" and s["bundle"] == str(bundle)
    assert s["ociVersion"].startswith("1.") and s["annotations"] == {}
    assert int(pid_file.read_text()) == s["pid"] > 0
    assert out.read_text() == ""  # waiting just before execve
    assert runc("start", "c1", check=0).stdout == ""
    assert wait_for(lambda: "hello from minicontainer" in out.read_text()), out.read_text()
    assert state("c1")["status"] == "running"
    assert runc("start", "c1").returncode == 1  # only a created container starts
    # the same state root: the Docker-style commands see it
    assert "c1" in mc("ps", "-a", check=0).stdout
    assert mc("exec", "c1", "cat", "/proc/1/cmdline", check=0).stdout.startswith("sleep")
    assert json.loads(runc("ps", "--format", "json", "c1", check=0).stdout) == [s["pid"]]
    refused = runc("delete", "c1")
    assert refused.returncode == 1 and "not stopped: running" in refused.stderr
    # kill of a running container: no cgroups code (a paused one is signalled alike; issue 15)
    probe = ("import sys\nfrom minicontainer.oci.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit as e:\n    print(e.code, file=sys.stderr)\n"
             "print(' '.join(m for m in sys.modules if m.startswith('minicontainer.cgroups')))\n")
    killed = subprocess.run([PY, "-c", probe, "kill", "c1", "KILL"], capture_output=True, text=True, timeout=60)
    assert killed.stderr.strip() in ("", "0", "None") and killed.stdout.strip() == "", killed
    assert wait_for(lambda: state("c1")["status"] == "stopped")
    runc("delete", "c1", check=0)
    gone = runc("state", "c1")
    assert gone.returncode == 1 and gone.stderr.strip() == "container c1 does not exist"
    assert runc("list", "--format", "json", check=0).stdout.strip() == "[]"
    assert runc("delete", "--force", "c1").returncode == 0  # runc: --force of a missing container is fine


def test_console_socket_gets_the_pty_master(bundle, tmp_path):
    configure(bundle, ["sh", "-c", "tty; exec sleep 60"], terminal=True)
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        create(tmp_path, "--bundle", str(bundle), "--console-socket", path, "c2")
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        assert len(fds) == 1
        master = fds[0]
        try:
            runc("start", "c2", check=0)
            seen = b""
            deadline = time.monotonic() + 10
            while b"/dev/pts/" not in seen and time.monotonic() < deadline:
                seen += os.read(master, 1024)
            assert b"/dev/pts/0" in seen  # a pty of the container's own devpts
        finally:
            os.close(master)
        runc("delete", "--force", "c2", check=0)
    finally:
        listener.close()


def test_a_refused_field_leaves_nothing_and_is_logged(bundle, tmp_path):
    doc = json.loads((bundle / "config.json").read_text())
    doc["process"]["terminal"] = False
    doc["linux"]["namespaces"][0]["path"] = "/proc/1/ns/pid"  # joining a PID namespace: not supported
    (bundle / "config.json").write_text(json.dumps(doc))
    log = tmp_path / "log.json"
    proc = runc("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), "c3")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "linux.namespaces" in proc.stderr and "path" in proc.stderr
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "error"
    assert runc("state", "c3").returncode == 1


def test_delete_force_ends_a_running_container(bundle, tmp_path):
    configure(bundle, ["sleep", "60"])
    create(tmp_path, "--bundle", str(bundle), "c4")
    runc("start", "c4", check=0)
    assert state("c4")["status"] == "running"
    runc("pause", "c4", check=0)
    assert state("c4")["status"] == "paused"
    runc("resume", "c4", check=0)
    runc("delete", "--force", "c4", check=0)
    assert runc("state", "c4").returncode == 1


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (Debian's runc package)")
def test_runcs_own_default_bundle_runs(bundle, tmp_path):
    """`runc spec`'s config.json as runc writes it (ambient capabilities, a
    cgroup mount: accepted with a debug line), only the process changed."""
    (bundle / "config.json").unlink()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, capture_output=True)
    configure(bundle, ["sh", "-c", "echo caps $(grep CapEff /proc/self/status | cut -f2)"])
    log = tmp_path / "debug.log"
    create(tmp_path, "--bundle", str(bundle), "r1")
    runc("--log", str(log), "--debug", "start", "r1", check=0)
    assert wait_for(lambda: "caps " in (tmp_path / "out").read_text())
    # runc's default: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE (bits 29, 5, 10)
    assert (tmp_path / "out").read_text().split() == ["caps", f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"]
    assert wait_for(lambda: state("r1")["status"] == "stopped")
    runc("delete", "r1", check=0)
    assert "called: minicontainer-runc --log " in log.read_text() and " --debug start r1" in log.read_text()


def test_preserve_fds_reach_the_command(bundle, tmp_path):
    """--preserve-fds 1: the engine's fd 3 (here a file the shell opens) is the command's fd 3; fd 4 is not."""
    configure(bundle, ["sh", "-c", "echo via-fd-3 >&3; ls /proc/self/fd/4 2>/dev/null || echo no-fd-4"])
    side = tmp_path / "side"
    script = (f'exec 3>{side} 4>{tmp_path / "other"}; exec {PY} -m minicontainer.oci.cli create '
              f'--bundle {bundle} --preserve-fds 1 p1 >{tmp_path / "out"} 2>{tmp_path / "err"} </dev/null')
    subprocess.run(["sh", "-c", script], check=True, timeout=60)
    runc("start", "p1", check=0)
    assert wait_for(lambda: state("p1")["status"] == "stopped")
    assert side.read_text() == "via-fd-3\n"
    assert (tmp_path / "out").read_text() == "no-fd-4\n"
    runc("delete", "p1", check=0)
    bad = runc("create", "--bundle", str(bundle), "--preserve-fds", "40", "p2")
    assert bad.returncode == 1 and "fd " in bad.stderr and "is not open" in bad.stderr


def test_run_in_the_foreground_returns_the_exit_code(bundle):
    configure(bundle, ["sh", "-c", "echo in the foreground; exit 7"])
    proc = runc("run", "--bundle", str(bundle), "f1", stdin=subprocess.DEVNULL)
    assert proc.returncode == 7 and proc.stdout == "in the foreground\n"
    s = state("f1")
    assert s["status"] == "stopped" and s["bundle"] == str(bundle)
    runc("delete", "f1", check=0)


def test_update_events_and_exec_with_a_process_file(bundle, tmp_path):
    configure(bundle, ["sleep", "60"])
    create(tmp_path, "--bundle", str(bundle), "u1")
    runc("start", "u1", check=0)
    (tmp_path / "res.json").write_text(json.dumps({"pids": {"limit": 42}}))
    runc("update", "--resources", str(tmp_path / "res.json"), "u1", check=0)
    event = json.loads(runc("events", "--stats", "u1", check=0).stdout)
    assert event["type"] == "stats" and event["data"]["pids"] == {"current": 1, "limit": 42}
    (tmp_path / "process.json").write_text(json.dumps({"args": ["sh", "-c", "echo $X; pwd"], "env": ["X=from-json"],
                                                      "cwd": "/tmp", "user": {"uid": 0, "gid": 0}}))
    pid_file = tmp_path / "exec.pid"
    proc = runc("exec", "--process", str(tmp_path / "process.json"), "--pid-file", str(pid_file), "u1",
                stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout == "from-json\n/tmp\n"
    assert int(pid_file.read_text()) > 0
    runc("delete", "--force", "u1", check=0)


def test_exec_with_a_terminal_waits_for_the_exit_code(bundle, tmp_path):
    configure(bundle, ["sleep", "60"])
    create(tmp_path, "--bundle", str(bundle), "t1")
    runc("start", "t1", check=0)
    path = str(tmp_path / "exec.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        proc = subprocess.Popen([PY, "-m", "minicontainer.oci.cli", "exec", "--tty", "--console-socket", path, "t1",
                                 "sh", "-c", "tty; exit 3"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        seen = b""
        try:
            deadline = time.monotonic() + 10
            while b"/dev/pts/" not in seen and time.monotonic() < deadline:
                seen += os.read(fds[0], 1024)
            # the master stays open until the process ends: closing it would hang up its terminal (SIGHUP)
            assert proc.wait(timeout=30) == 3, proc.stderr.read()
        finally:
            os.close(fds[0])
    assert b"/dev/pts/" in seen
    runc("delete", "--force", "t1", check=0)


def test_devices_from_config_json_and_mknod_with_the_allow_list(bundle, tmp_path, cleanup):
    """linux.devices makes /dev/fuse inside and allows it; CAP_MKNOD is kept (the
    default spec has Docker's set), so root may make any node, but opening one
    the allow-list lacks fails with EPERM (the device cgroup, not the capability)."""
    cleanup("d1")
    configure(bundle, ["sh", "-c", "exec 3<>/dev/fuse && echo fuse-open; mknod /dev/kmsg2 c 1 11 && echo made; "
                       "head -c 1 /dev/kmsg2 >/dev/null 2>/tmp/e; cat /tmp/e"],
              devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o20666}])
    create(tmp_path, "--bundle", str(bundle), "d1")
    runc("start", "d1", check=0)
    assert wait_for(lambda: state("d1")["status"] == "stopped")
    out = (tmp_path / "out").read_text()
    assert out.splitlines()[:2] == ["fuse-open", "made"], out + (tmp_path / "err").read_text()
    assert "Operation not permitted" in out
    runc("delete", "d1", check=0)


def _hook_dir(tmp_path: Path) -> Path:
    """A hook script that appends '<kind> <its mount namespace> <the state JSON>' to hooks.log beside it."""
    d = tmp_path / "hk"
    d.mkdir()
    (d / "hook.sh").write_text('#!/bin/sh\necho "$1 $(readlink /proc/self/ns/mnt) $(cat)" >> "$(dirname "$0")/hooks.log"\n'
                               'test -z "$FAIL" || { echo "it went wrong"; exit 3; }\n'
                               'test -z "$SLOW" || sleep 5\n')
    (d / "hook.sh").chmod(0o755)
    return d


def _hooks(d: Path, **special) -> dict:
    out = {}
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        path = "/hooks/hook.sh" if kind == "startContainer" else str(d / "hook.sh")  # that one: inside
        out[kind] = [{"path": path, "args": ["hook.sh", kind], "env": ["A=1"], **special.get(kind, {})}]
    return out


def test_hooks_run_at_their_moments_in_their_namespaces(bundle, tmp_path, cleanup):
    cleanup("h1")
    d = _hook_dir(tmp_path)
    configure(bundle, ["true"])
    doc = json.loads((bundle / "config.json").read_text())
    doc["hooks"] = _hooks(d)
    doc["mounts"].append({"destination": "/hooks", "type": "bind", "source": str(d), "options": ["rbind"]})
    (bundle / "config.json").write_text(json.dumps(doc))
    log = tmp_path / "debug.log"
    create(tmp_path, "--bundle", str(bundle), "h1")
    pid = state("h1")["pid"]
    kinds = [line.split()[0] for line in (d / "hooks.log").read_text().splitlines()]
    assert kinds == ["prestart", "createRuntime", "createContainer"]
    runc("--log", str(log), "--debug", "start", "h1", check=0)
    assert wait_for(lambda: state("h1")["status"] == "stopped")
    runc("--log", str(log), "--debug", "delete", "h1", check=0)
    host_mnt = os.readlink("/proc/self/ns/mnt")
    lines = {line.split()[0]: line.split(" ", 2)[1:] for line in (d / "hooks.log").read_text().splitlines()}
    assert sorted(lines) == sorted(["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                                    "poststop"])
    for kind, (mnt, text) in lines.items():
        s = json.loads(text)
        assert (s["id"], s["bundle"]) == ("h1", str(bundle)), kind
        assert (mnt == host_mnt) == (kind not in ("createContainer", "startContainer")), kind
        want = {"startContainer": "created", "poststart": "running", "poststop": "stopped"}.get(kind, "creating")
        assert s["status"] == want, kind
        assert s["pid"] == pid, kind
    assert "run the poststop hook in the runtime's namespaces" in log.read_text()


@pytest.mark.parametrize("kind, special, words", [
    ("createRuntime", {"env": ["FAIL=1"]}, "createRuntime hook {d}/hook.sh failed with exit code 3: it went wrong"),
    ("createContainer", {"env": ["SLOW=1"], "timeout": 1}, "createContainer hook {d}/hook.sh ran past its timeout"),
])
def test_a_failing_hook_fails_create_and_leaves_nothing(bundle, tmp_path, cleanup, kind, special, words):
    cleanup("h2")
    d = _hook_dir(tmp_path)
    configure(bundle, ["true"])
    doc = json.loads((bundle / "config.json").read_text())
    doc["hooks"] = {kind: _hooks(d, **{kind: special})[kind]}
    (bundle / "config.json").write_text(json.dumps(doc))
    proc = create(tmp_path, "--bundle", str(bundle), "h2", check=1)
    assert words.format(d=d) in proc.stderr
    assert runc("state", "h2").returncode == 1
    assert runc("list", "--format", "json", check=0).stdout.strip() == "[]"


def test_a_container_being_created_says_creating_and_refuses_start_kill_and_delete(bundle, tmp_path, cleanup):
    """Between claiming the name and handing PID 1 over, the state says
    "creating" (runtime-spec runtime.md "State"); start, kill and a plain
    delete refuse it in one line; delete --force stops the create, which
    leaves nothing."""
    cleanup("c1")
    d = tmp_path / "hk"
    d.mkdir()
    (d / "hook.sh").write_text(f'#!/bin/sh\ncat >/dev/null\ntouch {d}/in\nwhile :; do sleep 0.05; done\n')
    (d / "hook.sh").chmod(0o755)
    configure(bundle, ["true"])
    doc = json.loads((bundle / "config.json").read_text())
    doc["hooks"] = {"createRuntime": [{"path": str(d / "hook.sh")}]}  # holds create at that moment
    (bundle / "config.json").write_text(json.dumps(doc))
    with open(tmp_path / "out", "a") as out:
        creating = subprocess.Popen([PY, "-m", "minicontainer.oci.cli", "create", "--bundle", str(bundle), "c1"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        assert wait_for(lambda: (d / "in").exists()), (tmp_path / "out").read_text()
        assert state("c1")["status"] == "creating"
        assert state("c1")["pid"] == 0
        for verb, words in ((["start", "c1"], "cannot start a container in the creating state"),
                            (["kill", "c1", "KILL"], "container c1 is still being created"),
                            (["delete", "c1"], "cannot delete container c1 that is not stopped: creating")):
            proc = runc(*verb, check=1)
            assert words in proc.stderr and "Traceback" not in proc.stderr, (verb, proc.stderr)
        runc("delete", "--force", "c1", check=0)
        assert creating.wait(timeout=30) != 0
    finally:
        if creating.poll() is None:
            creating.kill()
            creating.wait()
    assert runc("state", "c1").returncode == 1
    assert runc("list", "--format", "json", check=0).stdout.strip() == "[]"
    assert not _running(str(d / "hook.sh")), "the hook outlived the create that ran it"


def _running(word: str) -> list[str]:
    found = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if word.encode() in (p / "cmdline").read_bytes():
                found.append(p.name)
        except OSError:
            pass
    return found


# An engine's monitor as the test plays it: a child subreaper that runs
# `create` and reaps the container's PID 1 only when told (conmon reaps at
# once, on SIGCHLD; here the moment is the test's).
_SLOW_REAPER = """
import os, subprocess, sys, time
import prctl
prctl.set_child_subreaper(True)
subprocess.run(sys.argv[2:], check=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
os.waitpid(-1, 0)
"""


def test_a_stopped_container_says_exited_with_its_code_in_ps(bundle, tmp_path, cleanup):
    """After create, the engine reaps PID 1; create's watcher reads the exit
    code from the zombie first, for `minicontainer ps`."""
    cleanup("x1")
    configure(bundle, ["sh", "-c", "exit 7"])
    go = tmp_path / "reap"
    with open(tmp_path / "out", "a") as out:
        reaper = subprocess.Popen([PY, "-c", _SLOW_REAPER, str(go), PY, "-m", "minicontainer.oci.cli", "create",
                                   "--bundle", str(bundle), "x1"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        # (the state exists from the moment the name is claimed: "creating" until create hands PID 1 over)
        assert wait_for(lambda: runc("state", "x1").returncode == 0 and state("x1")["status"] == "created"), \
            (tmp_path / "out").read_text()
        runc("start", "x1", check=0)
        assert wait_for(lambda: "Exited (7)" in mc("ps", "-a", check=0).stdout), mc("ps", "-a").stdout
    except BaseException:
        runc("delete", "--force", "x1")  # else PID 1 waits for start, and the reaper for it, past the test
        raise
    finally:
        go.touch()
        reaper.wait(timeout=30)
    assert state("x1")["status"] == "stopped"
    assert "runtime was killed" not in mc("inspect", "x1", check=0).stdout
    runc("delete", "x1", check=0)


def test_events_streams_stats_and_oom_until_the_container_stops(bundle, tmp_path, cleanup):
    cleanup("e1")
    configure(bundle, ["sh", "-c", "sleep 1; a=$(head -c 300000000 /dev/zero | tr '\\0' x); sleep 1"],
              resources={"memory": {"limit": 64 << 20}})
    create(tmp_path, "--bundle", str(bundle), "e1")
    runc("start", "e1", check=0)
    proc = runc("events", "--interval", "300ms", "e1", check=0, timeout=60)  # returns once e1 stops
    kinds = [json.loads(line)["type"] for line in proc.stdout.splitlines()]
    assert kinds.count("oom") == 1 and kinds.count("stats") >= 3, kinds
    assert state("e1")["status"] == "stopped"
    runc("delete", "e1", check=0)
