"""--userns as root: the container in a subordinate range (issue 11, item 10).

Root inside is uid 0 of the container's user namespace and an unprivileged
uid of the host (START here): its processes and the files it makes belong to
START.. on the host. The range comes from /etc/subuid and /etc/subgid: the
``remap_range`` fixture adds one for a user of its own (named through the
userns-remap setting, MINICONTAINER_USERNS_REMAP) and removes it afterwards.
It runs each test twice: with the image's layers idmapped where this kernel
allows it, and with the shifted copy (MINICONTAINER_IDMAP=off).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from helpers import mc, proc_status, processes_in_range, subordinate_range

pytestmark = pytest.mark.root

USER = "mc-remap-test"
START = 1_700_000_000  # far from any range an administrator hands out
COUNT = 65536


def _idmap_expected(mc_home) -> bool:
    """Does this host take the idmapped way (overlayfs storage, Linux 5.19)?"""
    from minicontainer.container.rootfs import storage_mode
    from minicontainer.container.userns import kernel_at_least

    return kernel_at_least((5, 19)) and storage_mode(mc_home / "containers") == "overlay"


@pytest.fixture(params=["idmap", "copy"])
def remap_range(request, monkeypatch):
    if request.param == "copy":
        monkeypatch.setenv("MINICONTAINER_IDMAP", "off")
    monkeypatch.setenv("MINICONTAINER_USERNS_REMAP", USER)
    with subordinate_range(USER, START, COUNT):
        yield START
        # The tier's leak check is host-wide (other runs show up in it); this
        # one is exact: no process of the range is left.
        deadline = time.monotonic() + 5
        while _processes_of_the_range() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_of_the_range() == [], "a process of the container's range was left running"


def _processes_of_the_range() -> list[int]:
    return processes_in_range(START, COUNT)


@pytest.fixture
def running(remap_range):
    """A detached --userns container running sleep; removed afterwards."""
    mc("run", "-d", "--name", "remapped", "--userns", "mini", "sleep", "300", check=0)
    try:
        pid = mc("inspect", "-f", "{{.State.Pid}}", "remapped", check=0).stdout.strip()
        yield pid
    finally:
        mc("rm", "-f", "remapped")


def test_root_inside_is_a_uid_of_the_range_outside(running):
    status = proc_status(running)
    assert status["Uid"] == [str(START)] * 4 and status["Gid"] == [str(START)] * 4
    assert status["NSpid"][-1] == "1"  # PID 1 of its own PID namespace
    assert os.readlink(f"/proc/{running}/ns/user") != os.readlink("/proc/self/ns/user")
    out = mc("exec", "remapped", "/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map",
             check=0).stdout.split("\n")
    assert out[0] == "0" and out[1] == "0"
    assert out[2].split() == ["0", str(START), str(COUNT)] and out[3].split() == ["0", str(START), str(COUNT)]


def test_the_namespaces_belong_to_the_containers_user_namespace(running):
    # made after it, from inside it (runc's order): root inside has its capabilities over them
    out = mc("exec", "remapped", "/bin/sh", "-c",
             "hostname other && hostname; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping", check=0).stdout.split()
    assert out[-1] == "ping"  # CAP_NET_RAW counts in its network namespace


def test_a_file_made_inside_belongs_to_the_range_on_the_host(remap_range, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    os.chown(vol, START, START)  # root of the range owns it, as `chown 300000` would for Docker's
    mc("run", "--name", "maker", "--userns", "-v", f"{vol}:/data", "mini", "/bin/sh", "-c",
       "echo hi > /data/made; touch /in-the-layer; mkdir -p /home/u && touch /home/u/f && chown -R 1000:1000 /home/u",
       check=0)
    try:
        st = os.stat(vol / "made")
        assert (st.st_uid, st.st_gid) == (START, START)
        assert (vol / "made").read_text() == "hi\n"
        state, = (tmp_path / "run" / "containers").glob("*/state.json")
        layer = Path(json.loads(state.read_text())["layer_dir"]) / "upper"
        assert os.stat(layer / "in-the-layer").st_uid == START
        assert os.stat(layer / "home" / "u" / "f").st_uid == START + 1000  # uid 1000 inside
        assert os.stat(layer).st_uid == START  # the root directory inside is root's of the range
    finally:
        mc("rm", "maker", check=0)


def test_root_inside_cannot_write_what_belongs_to_the_hosts_root(remap_range, tmp_path):
    vol = tmp_path / "roots"
    vol.mkdir(mode=0o755)  # root's, as every system directory
    (vol / "file").write_text("host\n")
    proc = mc("run", "--rm", "--userns", "-v", f"{vol}:/data", "mini", "/bin/sh", "-c",
              "cat /data/file; echo x > /data/file || echo refused; touch /data/new || echo refused; "
              "stat -c %u /data/file", check=0)
    lines = proc.stdout.split("\n")
    assert lines[0] == "host" and lines[1] == "refused" and lines[2] == "refused"
    assert lines[3] == "65534"  # the host's root does not exist inside: nobody (user_namespaces(7))
    assert (vol / "file").read_text() == "host\n" and not (vol / "new").exists()


def test_the_image_is_root_s_inside_and_nothing_is_left(remap_range, mc_home, tmp_path):
    out = mc("run", "--rm", "--userns", "mini", "/bin/sh", "-c", "stat -c '%u %g' / /bin/busybox /etc/passwd; id -un",
             check=0).stdout.split("\n")
    assert out[:3] == ["0 0"] * 3 and out[3] == "root"  # the image's files are root's inside
    # --rm: no layer, no state (the mounts, cgroups and processes are checked by the tier's clean_host)
    assert list((mc_home / "containers").iterdir()) == []
    assert not (tmp_path / "run" / "containers").exists() or list((tmp_path / "run" / "containers").iterdir()) == []


def test_idmapped_where_the_kernel_allows_else_a_copy_made_once(remap_range, mc_home, monkeypatch):
    cache = mc_home / "userns" / f"{START}-{START}-{COUNT}"
    shutil.rmtree(cache, ignore_errors=True)  # the test range's copies, made by the tests before
    proc = mc("run", "--dry-run", "--userns", "mini", "true", check=0)
    idmapped = "idmapped to the child's user namespace" in proc.stdout + proc.stderr
    assert idmapped == (_idmap_expected(mc_home) and os.environ.get("MINICONTAINER_IDMAP") != "off")
    if idmapped:
        mc("run", "--rm", "--userns", "mini", "true", check=0)
        assert not cache.exists() or list(cache.iterdir()) == []  # nothing copied
        return
    mc("run", "--rm", "--userns", "mini", "true", check=0)
    copies = list(cache.iterdir())
    assert len(copies) == 1 and os.stat(copies[0]).st_uid == START
    assert os.stat(copies[0] / "bin" / "busybox").st_uid == START
    before = os.stat(copies[0]).st_ino
    mc("run", "--rm", "--userns", "mini", "true", check=0)
    assert [os.stat(c).st_ino for c in cache.iterdir()] == [before]


def test_the_userns_remap_setting_remaps_every_container(remap_range):
    out = mc("run", "--rm", "mini", "cat", "/proc/self/uid_map", check=0).stdout  # no --userns
    assert out.split() == ["0", str(START), str(COUNT)]


def test_start_maps_the_container_to_the_same_range_again(remap_range, monkeypatch):
    script = "cat /proc/self/uid_map; echo x >> /root/runs; wc -l < /root/runs"
    first = mc("run", "--name", "again", "--userns", "mini", "/bin/sh", "-c", script, check=0).stdout.split()
    try:
        monkeypatch.delenv("MINICONTAINER_USERNS_REMAP")  # the container remembers its range, not the setting
        second = mc("start", "-a", "again", check=0).stdout.split()
        assert first == ["0", str(START), str(COUNT), "1"] and second == ["0", str(START), str(COUNT), "2"]
    finally:
        mc("rm", "again", check=0)


def test_diff_lists_the_changes_and_cp_into_it_is_a_clear_refusal(remap_range, tmp_path):
    mc("run", "--name", "changed", "--userns", "mini", "/bin/sh", "-c", "echo x > /root/new; rm /etc/hostname",
       check=0)
    try:
        assert {"A /root/new", "D /etc/hostname"} <= set(mc("diff", "changed", check=0).stdout.splitlines())
        out = tmp_path / "out"
        mc("cp", "changed:/root/new", str(out), check=0)
        assert out.read_text() == "x\n"
        src = tmp_path / "in"
        src.write_text("y\n")
        proc = mc("cp", str(src), "changed:/root/in")
        assert proc.returncode == 125 and "not supported yet" in proc.stderr and len(proc.stderr.splitlines()) == 1
    finally:
        mc("rm", "changed", check=0)


def test_export_gives_the_owners_the_container_sees(remap_range, tmp_path):
    import tarfile

    mc("run", "--name", "exp", "--userns", "mini", "/bin/sh", "-c",
       "mkdir -p /home/u && touch /home/u/f && chown -R 1000:1000 /home/u && touch /root/made", check=0)
    try:
        mc("export", "exp", str(tmp_path / "exp.tar"), check=0)
        with tarfile.open(tmp_path / "exp.tar") as tar:
            owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
        assert owners["home/u/f"] == (1000, 1000) and owners["root/made"] == (0, 0)  # from the upper layer
        assert owners["bin/busybox"] == (0, 0)  # from the image
    finally:
        mc("rm", "exp", check=0)


def test_the_device_allow_list_applies(remap_range):
    proc = mc("run", "--dry-run", "--userns", "mini", "true", check=0)
    plan = proc.stdout + proc.stderr
    assert "no device allow-list" not in plan
    assert "devices.deny" in plan or "eBPF device program" in plan
    if "devices.deny" in plan:  # v1: the list itself, read back inside
        out = mc("run", "--rm", "--userns", "mini", "cat", "/sys/fs/cgroup/devices/devices.list", check=0).stdout
        assert "c 1:3 rwm" in out and "a *:* rwm" not in out


def test_the_plan_shows_the_maps_and_who_writes_them(remap_range):
    proc = mc("run", "--dry-run", "--userns", "mini", "true", check=0)
    plan = proc.stdout + proc.stderr
    steps = [line for line in plan.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    order = [next(i for i, s in enumerate(steps) if text in s) for text in (
        "become a child subreaper", "write the maps of the child's user namespace",
        "create a user namespace", "open the", "become root of the user namespace", "create the PID namespace",
        "mount the root filesystem")]
    assert order[2:] == sorted(order[2:])  # the child's steps, in the order it takes them
    assert f"echo '0 {START} {COUNT}' > /proc/$CHILD/uid_map" in plan
    assert "[runtime] write the maps" in plan and "[container] create a user namespace" in plan


def test_a_volume_is_refused_in_one_line_and_nothing_is_made(remap_range):
    # the volume store is root's (0700): the range's root could not fill or use it
    proc = mc("run", "--rm", "--userns", "-v", "remapvol:/data", "mini", "true")
    assert proc.returncode == 125 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "volumes cannot be used with --userns" in proc.stderr and f"chown {START}:{START} DIR" in proc.stderr
    assert "remapvol" not in mc("volume", "ls", "-q", check=0).stdout.split()


def test_without_a_range_the_run_is_refused_in_one_line(monkeypatch, mc_home):
    monkeypatch.setenv("MINICONTAINER_USERNS_REMAP", "mc-no-such-range")
    before = set((mc_home / "containers").iterdir()) if (mc_home / "containers").exists() else set()
    proc = mc("run", "--rm", "--userns", "mini", "true")
    assert proc.returncode == 125
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "subordinate range of user mc-no-such-range" in lines[0], proc.stderr
    assert "scripts/setup" in lines[0] and "Traceback" not in proc.stderr
    after = set((mc_home / "containers").iterdir()) if (mc_home / "containers").exists() else set()
    assert after == before


def test_shift_tree_keeps_setuid_bits_links_and_file_capabilities(tmp_path):
    from minicontainer.container.idshift import CAPS_XATTR, shift_tree

    top = tmp_path / "img"
    (top / "bin").mkdir(parents=True)
    su = top / "bin" / "su"
    su.write_text("x")
    os.chmod(su, 0o4755)
    os.link(su, top / "bin" / "su-again")
    (top / "bin" / "sh").symlink_to("su")
    ping = top / "bin" / "ping"
    ping.write_text("y")
    os.chown(ping, 0, 1000)
    caps = bytes.fromhex("0100000200200000000000000000000000000000")  # v2: cap_net_raw, permitted + effective
    os.setxattr(ping, CAPS_XATTR, caps)
    shift_tree(str(top), START, START + 10, COUNT)
    assert os.stat(top).st_uid == START
    st = os.stat(su)
    assert (st.st_uid, st.st_gid) == (START, START + 10) and stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_nlink == 2  # still one inode, moved once
    assert os.lstat(top / "bin" / "sh").st_uid == START
    assert os.stat(ping).st_gid == START + 10 + 1000
    assert os.getxattr(ping, CAPS_XATTR) == caps
