"""minicontainer-runc with a user namespace in config.json (linux.namespaces
"user", linux.uidMappings/gidMappings), as an engine asks for it (podman
--uidmap): the bundle's root is chowned into the range by the engine and used
as it is; the runtime writes the bundle's maps (runc's order), so uid 0
inside is uid START on the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import proc_status, processes_in_range
from minicontainer.container.idshift import shift_tree
from test_oci_runc import PY, bundle, configure, create, runc, state, wait_for  # noqa: F401 (bundle: a fixture)

pytestmark = pytest.mark.root

START = 1_600_000_000  # far from any range an administrator hands out
COUNT = 65536
MAPS = {"uidMappings": [{"containerID": 0, "hostID": START, "size": COUNT}],
        "gidMappings": [{"containerID": 0, "hostID": START, "size": COUNT}]}


def _processes_of_the_range() -> list[int]:
    return processes_in_range(START, COUNT)


@pytest.fixture
def ubundle(bundle):
    """test_oci_runc's bundle, its root chowned into the range as the engine does for --uidmap (podman
    chowns it; idshift.shift_tree is the same move, set-id bits and hard links kept), in a user namespace."""
    b = bundle
    shift_tree(str(b / "rootfs"), START, START, COUNT)
    doc = json.loads((b / "config.json").read_text())
    doc["linux"]["namespaces"].append({"type": "user"})
    (b / "config.json").write_text(json.dumps(doc))
    yield b
    for cid in ("u1", "u2", "u3"):
        runc("delete", "--force", cid)
    assert wait_for(lambda: not _processes_of_the_range(), 5), f"left running: {_processes_of_the_range()}"


def _device_list(pid: int) -> list[str]:
    """PID's device allow-list: cgroup v1's devices.list, or [] on a host without the controller."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "devices" in controllers.split(","):
            # /proc/PID/cgroup names the path from the hierarchy's root; inside a container (the docker
            # tier) the hierarchy is mounted at that container's own cgroup: drop leading parts until found
            parts = path.strip("/").split("/")
            for i in range(len(parts)):
                found = Path("/sys/fs/cgroup/devices", *parts[i:], "devices.list")
                if found.exists():
                    return found.read_text().splitlines()
            raise AssertionError(f"no devices.list for cgroup {path} under /sys/fs/cgroup/devices")
    pytest.skip("no cgroup v1 devices controller here (cgroup v2 filters devices with eBPF)")


def test_run_is_root_inside_with_the_bundles_maps(ubundle):
    configure(ubundle, ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
                                    "stat -c '%u %g' / /bin/busybox"], **MAPS)
    proc = runc("run", "--bundle", str(ubundle), "u1", stdin=subprocess.DEVNULL, check=0)
    lines = proc.stdout.split("\n")
    assert lines[0] == "0" and lines[1] == "0", proc.stdout + proc.stderr
    assert lines[2].split() == ["0", str(START), str(COUNT)] and lines[3].split() == ["0", str(START), str(COUNT)]
    assert lines[4:6] == ["0 0", "0 0"]  # the engine's chowned root is root's inside, with no copy made
    assert state("u1")["status"] == "stopped"
    runc("delete", "u1", check=0)
    assert runc("state", "u1").returncode == 1


def test_create_start_exec_kill_delete_in_the_range(ubundle, tmp_path):
    configure(ubundle, ["sh", "-c", "touch /made-inside; exec sleep 60"], **MAPS)
    create(tmp_path, "--bundle", str(ubundle), "u2")
    s = state("u2")
    assert s["status"] == "created"
    pid = s["pid"]
    status = proc_status(pid)
    assert status["Uid"] == [str(START)] * 4 and status["Gid"] == [str(START)] * 4  # from outside: the range
    assert status["NSpid"][-1] == "1"
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    runc("start", "u2", check=0)
    made = ubundle / "rootfs" / "made-inside"
    assert wait_for(made.exists)
    assert (os.stat(made).st_uid, os.stat(made).st_gid) == (START, START)  # written in place, by the range's root
    assert state("u2")["status"] == "running"
    out = runc("exec", "u2", "sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/1/cmdline", check=0).stdout
    lines = out.split("\n")
    assert lines[0] == "0" and lines[1].split() == ["0", str(START), str(COUNT)] and lines[2].startswith("sleep")
    # the device allow-list is still written from outside, by the runtime (the range's root could not)
    assert _device_list(pid) and "a *:* rwm" not in _device_list(pid)
    assert "c 1:3 rwm" in _device_list(pid)  # /dev/null, as for any container
    runc("kill", "u2", "KILL", check=0)
    assert wait_for(lambda: state("u2")["status"] == "stopped")
    runc("delete", "u2", check=0)
    assert runc("state", "u2").returncode == 1
    assert wait_for(lambda: not _processes_of_the_range(), 5), _processes_of_the_range()
    assert (ubundle / "rootfs" / "bin" / "busybox").exists()  # the bundle's root is the engine's: kept


@pytest.mark.parametrize("maps, words", [
    ({"uidMappings": [{"containerID": 0, "hostID": START, "size": 10},
                      {"containerID": 5, "hostID": START + 100, "size": 10}],
      "gidMappings": MAPS["gidMappings"]}, ("linux.uidMappings", "overlap")),
    ({"uidMappings": MAPS["uidMappings"]}, ("linux.gidMappings", "is missing")),
])
def test_a_bad_mapping_is_one_line_and_leaves_nothing(ubundle, tmp_path, mc_home, maps, words):
    configure(ubundle, ["true"], **maps)
    proc = create(tmp_path, "--bundle", str(ubundle), "u3", check=1)
    err = proc.stderr.strip()
    assert len(err.splitlines()) <= 2 and all(w in err for w in words), err  # the error and its hint
    assert runc("state", "u3").returncode == 1
    assert json.loads(runc("list", "--format", "json", check=0).stdout or "[]") == []


def test_hooks_run_with_a_user_namespace(ubundle, tmp_path):
    """prestart in the runtime's namespaces (the host's root), createContainer in the child's, where it is
    already the range's root: what it writes belongs to START on the host."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="mc-userns-hooks-"))  # reachable by the range's root (tmp_path is 0700)
    try:
        out.chmod(0o1777)
        configure(ubundle, ["id", "-u"], **MAPS)
        doc = json.loads((ubundle / "config.json").read_text())
        doc["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/prestart"]}],
                        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/cc"]}]}
        (ubundle / "config.json").write_text(json.dumps(doc))
        proc = runc("run", "--bundle", str(ubundle), "u1", stdin=subprocess.DEVNULL)
        assert proc.returncode == 0 and proc.stdout == "0\n", proc.stdout + proc.stderr
        for name, owner in (("prestart", 0), ("cc", START)):
            assert json.loads((out / name).read_text())["id"] == "u1"
            assert os.stat(out / name).st_uid == owner, name
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_minicontainer_start_of_a_stopped_one_is_refused(ubundle):
    """Docker-style `start` would take the bundle's (chowned) root for an image and shift it again."""
    from helpers import mc

    configure(ubundle, ["true"], **MAPS)
    runc("run", "--bundle", str(ubundle), "u1", stdin=subprocess.DEVNULL, check=0)
    proc = mc("start", "u1")
    assert proc.returncode != 0 and "only its engine starts it" in proc.stderr, proc.stderr
    assert state("u1")["status"] == "stopped"
