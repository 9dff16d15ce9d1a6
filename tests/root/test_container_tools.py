"""inspect, top, cp, rename, container prune and rm -v on real detached
containers, through the CLI. The autouse fixture (conftest.py) checks that
no mount, process or cgroup is left after each test."""

from __future__ import annotations

import json
import os
import time

import pytest

from helpers import mc

pytestmark = pytest.mark.root


@pytest.fixture
def detached():
    """``start(name, *run_args)``: run -d, waiting until it runs; rm -f at the end."""
    names = []

    def start(name, *args):
        names.append(name)
        mc("run", "-d", "--name", name, *args, check=0)
        return json.loads(mc("inspect", name, check=0).stdout)[0]

    yield start
    for name in names:
        mc("rm", "-f", name)


def sh_until(name, marker, timeout=10):
    """Wait until the container has made ``marker`` (its setup script is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mc("exec", name, "test", "-e", marker).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never made {marker}")


# --- inspect ------------------------------------------------------------------------


def test_inspect_shows_state_config_mounts_cgroup_and_namespaces(detached, tmp_path):
    info = detached("insp", "-m", "64m", "-v", f"{tmp_path}:/data:ro", "mini", "sleep", "100")
    pid = info["State"]["Pid"]
    assert info["Name"] == "insp" and info["State"]["Running"] is True and pid > 1
    assert info["Path"] == "sleep" and info["Args"] == ["100"]
    assert info["Config"]["resources"]["memory"] == 64 << 20
    assert info["Mounts"] == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/data", "RW": False,
                              "Propagation": "rprivate"}]
    for ns, inode in info["Namespaces"].items():
        assert os.stat(f"/proc/{pid}/ns/{ns}").st_ino == inode
    assert info["Cgroup"]["Exists"] is True
    for path in info["Cgroup"]["Paths"]:
        assert os.path.isdir(path)
    assert any(str(pid) in open(f"{p}/cgroup.procs").read().split() for p in info["Cgroup"]["Paths"])
    line = mc("inspect", "--format", "{{.State.Status}} {{.State.Pid}} {{.State.OOMKilled}}", "insp", check=0).stdout
    assert line == f"running {pid} false\n"


def test_inspect_falls_back_to_images_and_names_what_is_missing():
    assert json.loads(mc("inspect", "mini", check=0).stdout)[0]["name"] == "mini"
    proc = mc("inspect", "no-such-thing")
    assert proc.returncode == 125
    assert proc.stderr.strip().splitlines() == [
        "minicontainer: error: no such container or image: no-such-thing (hint: list them with "
        "'minicontainer ps -a' and 'minicontainer image ls')"]


# --- top ----------------------------------------------------------------------------


def test_top_lists_the_cgroups_processes_with_both_pids(detached):
    info = detached("tops", "mini", "sh", "-c", "sleep 100 & sleep 101; wait")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [ln.split() for ln in mc("top", "tops", check=0).stdout.splitlines()]
        if len(rows) == 4:
            break
        time.sleep(0.05)
    header, *procs = rows
    assert header[:3] == ["PID", "CONTAINER", "PID"]
    by_inner = {r[1]: r for r in procs}
    assert by_inner["1"][0] == str(info["State"]["Pid"])  # PID 1 is the host's pid of the container
    assert sorted(r[-1] for r in procs) == ["100", "101", "wait'"]  # sh -c '...; wait', sleep 100, sleep 101
    for r in procs:  # each host pid really is in the container's PID namespace
        assert os.readlink(f"/proc/{r[0]}/ns/pid") == os.readlink(f"/proc/{info['State']['Pid']}/ns/pid")


def test_top_with_ps_options_keeps_only_the_containers_lines(detached):
    info = detached("topps", "mini", "sleep", "100")
    lines = mc("top", "topps", "-eo", "pid,args", check=0).stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert [ln.split() for ln in lines[1:]] == [[str(info["State"]["Pid"]), "sleep", "100"]]


def test_top_of_an_exited_container_is_one_line():
    mc("run", "--name", "gone", "mini", "true", check=0)
    proc = mc("top", "gone")
    assert proc.returncode == 125
    assert proc.stderr.startswith("minicontainer: error: container gone is not running")
    assert len(proc.stderr.splitlines()) == 1
    mc("rm", "gone", check=0)


# --- cp -----------------------------------------------------------------------------


def test_cp_in_and_out_of_a_running_container(detached, tmp_path):
    detached("cpr", "mini", "sh", "-c", "mkdir /data; echo inside > /data/f; echo tmp > /tmp/t; touch /ready; sleep 100")
    sh_until("cpr", "/ready")
    mc("cp", "cpr:/data/f", str(tmp_path / "f"), check=0)
    assert (tmp_path / "f").read_text() == "inside\n"
    mc("cp", "cpr:/tmp/t", str(tmp_path), check=0)  # the container's own /tmp tmpfs: its view, not its layer
    assert (tmp_path / "t").read_text() == "tmp\n"
    (tmp_path / "tree" / "d").mkdir(parents=True)
    (tmp_path / "tree" / "d" / "g").write_text("from host\n")
    mc("cp", str(tmp_path / "tree"), "cpr:/data/", check=0)
    assert mc("exec", "cpr", "cat", "/data/tree/d/g", check=0).stdout == "from host\n"
    assert mc("exec", "cpr", "stat", "-c", "%u:%g", "/data/tree/d/g", check=0).stdout == "0:0\n"


def test_cp_refuses_a_symlink_planted_in_the_container(detached, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret\n")
    # The container plants links to a host path (/ of the host does not exist
    # inside, but a host-side resolver would follow it there) and to its own /.
    detached("cps", "mini", "sh", "-c",
             f"mkdir /data; ln -s {secret} /data/host; ln -s / /data/root; ln -s {secret}/key /data/key; "
             "touch /ready; sleep 100")
    sh_until("cps", "/ready")
    (tmp_path / "evil").write_text("evil\n")
    for args in (["cps:/data/host/key", str(tmp_path / "out")],
                 [str(tmp_path / "evil"), "cps:/data/host/key"],
                 [str(tmp_path / "evil"), "cps:/data/root/etc/passwd"],
                 [str(tmp_path / "evil"), "cps:/data/key"],
                 [str(tmp_path / "evil"), "cps:/data/../data/host/key"]):
        proc = mc("cp", *args)
        assert proc.returncode == 125, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1
        assert "symlink" in proc.stderr or "'..'" in proc.stderr
    assert (secret / "key").read_text() == "host secret\n"
    assert os.listdir(secret) == ["key"]
    assert not (tmp_path / "out").exists()
    # a symlink copied out stays a symlink; what it names is not read
    mc("cp", "cps:/data/key", str(tmp_path / "link"), check=0)
    assert os.readlink(tmp_path / "link") == f"{secret}/key"


def test_cp_in_and_out_of_an_exited_container(tmp_path):
    mc("run", "--name", "cpx", "mini", "sh", "-c", "echo before > /root/f", check=0)
    (tmp_path / "new").write_text("after\n")
    mc("cp", str(tmp_path / "new"), "cpx:/root/new", check=0)
    mc("cp", "cpx:/root/.", str(tmp_path / "back"), check=0)
    assert sorted(os.listdir(tmp_path / "back")) == ["f", "new"]
    assert (tmp_path / "back" / "f").read_text() == "before\n"
    mc("rm", "-f", "cpx", check=0)


def test_cp_needs_exactly_one_container_side(tmp_path):
    proc = mc("cp", str(tmp_path), str(tmp_path))
    assert proc.returncode == 125 and "exactly one side" in proc.stderr


# --- rename, prune, rm -v --------------------------------------------------------------


def test_rename_a_running_container_and_reuse_the_old_name(detached):
    info = detached("old", "mini", "sleep", "100")
    mc("rename", "old", "new", check=0)
    assert mc("ps", "--format", "{{.Names}}", check=0).stdout.split() == ["new"]
    mc("stop", "-t", "0", "new", check=0)  # its monitor saves the exit with the state it had read
    assert mc("inspect", "--format", "{{.Name}} {{.State.Status}}", info["Id"], check=0).stdout == "new exited\n"
    mc("run", "--rm", "--name", "old", "mini", "true", check=0)
    proc = mc("rename", "new", "new2")
    assert proc.returncode == 0
    mc("run", "-d", "--name", "taken", "mini", "sleep", "100", check=0)
    proc = mc("rename", "new2", "taken")
    assert proc.returncode == 125 and "already in use" in proc.stderr
    mc("rm", "-f", "taken", "new2", check=0)


def test_container_prune_removes_exited_ones_only(detached, mc_home):
    detached("keeper", "mini", "sleep", "100")
    ids = []
    for name in ("done1", "done2"):
        mc("run", "--name", name, "mini", "sh", "-c", "echo x > /x", check=0)
        ids.append(json.loads(mc("inspect", name, check=0).stdout)[0]["Id"])
    out = mc("container", "prune", "-f", check=0).stdout
    assert out.startswith("Deleted Containers:\n")
    assert sorted(ln for ln in out.splitlines() if len(ln) == 64) == sorted(ids)
    assert "Total reclaimed space:" in out
    assert mc("ps", "-a", "--format", "{{.Names}}", check=0).stdout.split() == ["keeper"]
    for cid in ids:
        assert not (mc_home / "containers" / cid).exists()
    proc = mc("container", "prune", input="n\n")
    assert proc.returncode == 130 and "Are you sure" in proc.stdout


def test_rm_v_is_accepted(tmp_path):
    mc("run", "--name", "vol", "-v", f"{tmp_path}:/data", "mini", "touch", "/data/kept", check=0)
    mc("rm", "-v", "vol", check=0)
    assert (tmp_path / "kept").exists()  # a -v HOST:PATH is the user's, never removed
    assert mc("ps", "-aq", check=0).stdout == ""
