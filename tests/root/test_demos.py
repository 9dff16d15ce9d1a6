"""The narrated demos that need root but no cgroup limit, run as a user would
(non-interactively): every step shows what it claims, and the autouse
clean_host fixture checks that no container, mount or cgroup is left."""

from __future__ import annotations

import shutil

import pytest

from helpers import mc, run_demo

pytestmark = pytest.mark.root


def test_chroot_demo(tmp_path):
    out = run_demo("chroot", tmp_path)
    assert "/ holds: /bin /lib /lib64" in out  # only what was copied
    assert "a file on the host only" in out  # read from the host through /proc/PID/root


def test_namespaces_demo(tmp_path):
    out = run_demo("namespaces", tmp_path)
    assert "my pid: 1" in out and "container: demo" in out and "container: lo" in out


def test_escape_demo(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is missing (apt-get install gcc libc6-dev)")
    out = run_demo("escape", tmp_path)
    assert "ESCAPED: the host's files are visible" in out and "INSIDE: still the container's root" in out


def test_overlay_demo(tmp_path):
    out = run_demo("overlay", tmp_path)
    assert "c ./etc/hostname" in out  # the whiteout
    assert mc("ps", "-a", "--format", "{{.Names}}").stdout.split() == []  # its two containers were removed


def test_nnp_demo(tmp_path):
    if shutil.which("gcc") is None or shutil.which("capsh") is None:
        pytest.skip("gcc or capsh is missing (apt-get install gcc libc6-dev libcap2-bin)")
    out = run_demo("nnp", tmp_path)
    assert "uid=1000 euid=1000 CapEff=0000000000000000 NoNewPrivs=1" in out
    assert "uid=1000 euid=0" in out and "cap_sys_admin" not in out


def test_a_demo_refuses_to_run_over_an_existing_container_name(tmp_path):
    mc("create", "--name", "demo-overlay-a", "mini", "true", check=0)
    try:
        proc = mc("demo", "overlay")
        assert proc.returncode == 1
        assert "a container named demo-overlay-a exists already" in proc.stderr
        assert "[1/" not in proc.stdout  # nothing ran
    finally:
        mc("rm", "-f", "demo-overlay-a", check=0)
