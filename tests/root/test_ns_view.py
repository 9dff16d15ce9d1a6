"""`minicontainer ns NAME` and `inspect --namespaces` on a detached container: what the kernel says."""

from __future__ import annotations

import json
import os
import time

import pytest

from helpers import mc

pytestmark = pytest.mark.root


@pytest.fixture
def web(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    mc("run", "-d", "--name", "nsweb", "-m", "64m", "--pids-limit", "20", "--cap-drop", "NET_RAW",
       "-v", f"{vol}:/data", "mini", "sleep", "100", check=0)
    try:
        deadline = time.monotonic() + 20
        while json.loads(mc("inspect", "nsweb", check=0).stdout)[0]["State"]["Pid"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield "nsweb"
    finally:
        mc("rm", "-f", "nsweb")


def test_ns_shows_the_container_beside_the_host(web):
    view = json.loads(mc("inspect", "--namespaces", web, check=0).stdout)[0]
    here = {t: os.readlink(f"/proc/self/ns/{t}") for t in ("pid", "net", "mnt", "uts", "ipc", "user")}
    rows = {r["type"]: r for r in view["namespaces"]}
    for t in ("pid", "net", "mnt", "uts", "ipc"):
        assert rows[t]["is"] == "new" and f"[{rows[t]['host']}]" in here[t]
        assert rows[t]["container"] == int(os.readlink(f"/proc/{view['pid']}/ns/{t}").split("[")[1][:-1])
    assert rows["user"]["is"] == "shared"  # root's containers keep the host's user namespace
    assert view["uid_map"] == [{"inside": 0, "outside": 0, "count": 4294967295}]
    assert view["cgroup"]["limits"]["memory_limit"] == 64 * 1024 * 1024
    assert view["cgroup"]["limits"]["pids_limit"] == 20
    assert any(view["id"] in p for p in view["cgroup"]["paths"])
    eff = view["capabilities"]["effective"]
    assert "CAP_CHOWN" in eff and "CAP_NET_RAW" not in eff and "CAP_SYS_ADMIN" not in eff
    assert view["capabilities"]["bounding"] == eff
    assert view["security"]["seccomp"] == "filter" and view["security"]["no_new_privs"]
    marks = {m["mount_point"]: (m["is"], m["fstype"]) for m in view["mounts"]["container"]}
    assert marks["/"] == ("added", "overlay") and marks["/proc"] == ("added", "proc")
    assert marks["/data"][0] == "host"  # the -v bind: a filesystem of the host's
    assert any(m["mount_point"] == "/" for m in view["mounts"]["hidden"])  # the host's root is hidden

    text = mc("ns", web, check=0).stdout
    assert text.startswith(f"container {web} (")
    assert any(line.split()[:1] == ["pid"] and line.split()[-1] == "new" for line in text.splitlines())
    assert "seccomp: filter" in text and "limits now: memory (-m) 64 MiB" in text
    assert "+ /  " in text and "= /data" in text
    assert mc("ns", "--format", "{{.security.seccomp}} {{.name}}", web, check=0).stdout == f"filter {web}\n"


def test_ns_of_a_container_that_is_not_running_is_one_line(tmp_path):
    mc("run", "--name", "nsgone", "mini", "true", check=0)
    try:
        proc = mc("ns", "nsgone", check=125)
        assert proc.stderr.startswith("minicontainer: error: container nsgone is not running (status: exited)")
        assert len(proc.stderr.splitlines()) == 1
    finally:
        mc("rm", "nsgone")
