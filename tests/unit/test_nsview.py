"""nsview.py's readings of /proc texts: namespaces new/shared, maps, capabilities, seccomp, mounts marked."""

from __future__ import annotations

import pytest

from minicontainer import nsview as N

pytestmark = pytest.mark.unit


def test_namespace_inodes_side_by_side():
    assert N.ns_inode("net:[4026531840]") == 4026531840
    assert N.ns_inode(None) is None and N.ns_inode("garbage") is None
    inside = {"pid": 10, "net": 11, "user": 1, "time": None}
    host = {"pid": 2, "net": 3, "user": 1, "time": 4}
    rows = {r["type"]: r for r in N.compare_namespaces(inside, host)}
    assert list(rows) == list(N.NS_TYPES)
    assert rows["pid"] == {"type": "pid", "container": 10, "host": 2, "is": "new"}
    assert rows["user"]["is"] == "shared" and rows["time"]["is"] == "unknown"


def test_id_maps_and_status_fields():
    assert N.parse_id_map("         0       1000          1\n         1     100000      65536\n") == [
        {"inside": 0, "outside": 1000, "count": 1}, {"inside": 1, "outside": 100000, "count": 65536}]
    status = N.status_fields("Name:\tsleep\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n"
                             "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
                             "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n")
    caps = N.capabilities(status)
    # docker's default 14 capabilities are 0xa80425fb
    assert caps["effective"] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                                 "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
                                 "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert N.security(status) == {"seccomp": "filter", "seccomp_filters": 1, "no_new_privs": True}
    assert N.security({"Seccomp": "0"})["seccomp"] == "disabled"


HOST = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid shared:5 - proc proc rw
24 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw
25 22 254:0 /srv/my\\040data /data rw - ext4 /dev/vda rw
"""
INSIDE = """\
400 300 0:77 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
401 400 0:78 / /proc rw,nosuid - proc proc rw
402 400 254:0 /tmp /hosttmp rw,relatime - ext4 /dev/vda rw
403 401 0:5 /null /proc/kcore ro - devtmpfs devtmpfs rw
"""


def test_mounts_are_marked_against_the_hosts():
    host, inside = N.parse_mountinfo(HOST), N.parse_mountinfo(INSIDE)
    assert host[3].mount_point == "/data" and host[3].root == "/srv/my data"  # \040 is a space
    seen = N.compare_mounts(inside, host)
    marks = {m["mount_point"]: m["is"] for m in seen["container"]}
    # a new overlay and a new proc are the container's own; a bind of the
    # host's disk and of its /dev/null are filesystems of the host's
    assert marks == {"/": "added", "/proc": "added", "/hosttmp": "host", "/proc/kcore": "host"}
    # the host's root, proc, /dev and /data: no container mount shows that filesystem and directory
    assert [m["mount_point"] for m in seen["hidden"]] == ["/", "/proc", "/dev", "/data"]


def test_the_text_view_has_every_section():
    view = {"id": "a" * 64, "name": "web", "pid": 42,
            "namespaces": N.compare_namespaces({"pid": 10, "user": 1}, {"pid": 2, "user": 1}),
            "uid_map": [{"inside": 0, "outside": 0, "count": 4294967295}], "gid_map": [],
            "cgroup": {"paths": ["0::/minicontainer/" + "a" * 64], "limits": {"memory_limit": 64 << 20,
                                                                              "cpus": 0.5, "pids_limit": "unlimited"}},
            "capabilities": {"effective": ["CAP_CHOWN", "CAP_KILL"], "ambient": []},
            "security": {"seccomp": "filter", "seccomp_filters": 1, "no_new_privs": True},
            "mounts": N.compare_mounts(N.parse_mountinfo(INSIDE), N.parse_mountinfo(HOST))}
    text = N.render(view)
    assert "container web (aaaaaaaaaaaa), PID 1 is host pid 42" in text
    assert any(line.split() == ["pid", "10", "2", "new"] for line in text.splitlines())
    assert any(line.split() == ["user", "1", "1", "shared"] for line in text.splitlines())
    assert "uid_map: 0->0 (x4294967295)  the host's identity map" in text and "gid_map: (none)" in text
    assert "limits now: memory (-m) 64 MiB, cpus (--cpus) 0.5, pids (--pids-limit) unlimited" in text
    assert "effective:   2 of " in text and "chown kill" in text and "ambient:     (none)" in text
    assert "seccomp: filter (1 filter); no_new_privs: on" in text
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines if line[:2] in ("+ ", "= ", "- ")] == [
        ["+", "/"], ["+", "/proc"], ["=", "/hosttmp"], ["=", "/proc/kcore"],
        ["-", "/"], ["-", "/proc"], ["-", "/dev"], ["-", "/data"]]
