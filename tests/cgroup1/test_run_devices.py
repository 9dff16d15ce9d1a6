"""The device allow-list through `minicontainer run`, on this (hybrid, v1) host: devices.deny + devices.allow.

With ``--security-opt seccomp=unconfined`` nothing but the device cgroup stands
between root in the container (which keeps CAP_MKNOD) and a host disk. This
host's kernel refuses to open its root disk to everyone, so the EPERM on it
proves little here; a loop device, which root on the host can open, shows the
effect, and the container's devices.list shows the list itself. The VM tier
(tests/cgroup2/test_devices_v2.py) checks the eBPF program the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import mc
from runtools import Containers

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]

DEVICES = Path("/sys/fs/cgroup/devices")
DEFAULT_LIST = ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]
UNCONFINED = ("--security-opt", "seccomp=unconfined")


def sh(script: str, *flags: str):
    return mc("run", "--rm", *flags, "mini", "/bin/sh", "-c", script)


def root_disk() -> tuple[int, int]:
    dev = os.stat("/").st_dev
    return os.major(dev), os.minor(dev)


def openable_loop() -> str:
    for p in ("/dev/loop0", "/dev/loop1", "/dev/loop2"):
        try:
            os.close(os.open(p, os.O_RDONLY))
            return p
        except OSError:
            continue
    pytest.skip("no loop device that root on the host can open")


def devices_list(containers: Containers, name: str) -> list[str]:
    return (DEVICES / "minicontainer" / containers.state(name).id / "devices.list").read_text().splitlines()


PROBE = "mknod /dev/probe b {ma} {mi} && echo made; head -c1 /dev/probe >/dev/null 2>/tmp/err; echo rc=$?; cat /tmp/err"


def test_mknod_of_the_host_disk_works_but_opening_it_is_refused():
    ma, mi = root_disk()
    proc = sh(PROBE.format(ma=ma, mi=mi), *UNCONFINED)
    assert proc.returncode == 0, proc.stderr
    assert "made" in proc.stdout and "rc=1" in proc.stdout and "Operation not permitted" in proc.stdout, proc.stdout


def test_a_loop_device_the_host_can_open_is_refused_inside_and_allowed_with_privileged():
    st = os.stat(openable_loop())
    probe = PROBE.format(ma=os.major(st.st_rdev), mi=os.minor(st.st_rdev))
    refused = sh(probe, *UNCONFINED)
    assert "made" in refused.stdout and "rc=1" in refused.stdout and "Operation not permitted" in refused.stdout, \
        refused.stdout + refused.stderr
    # --privileged: no list, so the same node opens (the device cgroup was what refused it)
    allowed = sh(probe, "--privileged")
    assert "made" in allowed.stdout and "rc=0" in allowed.stdout, allowed.stdout + allowed.stderr


def test_the_container_cgroup_lists_only_the_default_devices(containers):
    containers.start("dev", "mini", "sleep", "60")
    assert devices_list(containers, "dev") == DEFAULT_LIST
    containers.rm("dev")


def test_device_flag_adds_the_node_and_its_rule(containers):
    loop = openable_loop()
    st = os.stat(loop)
    ma, mi = os.major(st.st_rdev), os.minor(st.st_rdev)
    containers.start("withdev", "--device", "/dev/null:/dev/mynull", "--device", f"{loop}:/dev/disk0:r",
                     "mini", "sleep", "60")
    assert devices_list(containers, "withdev") == DEFAULT_LIST + [f"b {ma}:{mi} r"]
    containers.rm("withdev")
    proc = sh("echo hi > /dev/mynull && echo writable; ls -l /dev/mynull; "
              "head -c1 /dev/disk0 >/dev/null && echo readable; "
              "echo x 2>/dev/null > /dev/disk0 || echo not-writable",
              "--device", "/dev/null:/dev/mynull", "--device", f"{loop}:/dev/disk0:r")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    assert "writable" in out and "readable" in out and "not-writable" in out, proc.stdout
    assert proc.stdout.splitlines()[1].startswith("crw-rw-rw-")  # the host node's mode, char 1,3


def test_privileged_allows_every_device(containers):
    containers.start("priv", "--privileged", "mini", "sleep", "60")
    assert devices_list(containers, "priv") == ["a *:* rwm"]
    containers.rm("priv")


def test_explain_shows_the_device_list():
    proc = mc("run", "--rm", "--explain", "mini", "true")
    assert proc.returncode == 0, proc.stderr
    assert "echo 'a' > /sys/fs/cgroup/devices/minicontainer/$ID/devices.deny" in proc.stderr
    assert "echo 'c 136:* rwm' > /sys/fs/cgroup/devices/minicontainer/$ID/devices.allow" in proc.stderr


def test_a_bad_device_is_one_line():
    proc = mc("run", "--rm", "--device", "/dev/null:/dev/x:rwz", "mini", "true")
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("minicontainer: error: invalid --device"), \
        proc.stderr
