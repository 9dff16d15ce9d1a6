"""Detached containers on cgroup v2 (the VM): the monitor, exec into the
container's cgroup, stop, and the OOM reason recorded by the monitor.

The same code as the root tier's test_lifecycle.py, on the unified hierarchy
(cgroup.kill, memory.events). Python is slow in the VM: few tests, combined
checks, every wait through scale().
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc

pytestmark = pytest.mark.cgroup2

ROOT = Path("/sys/fs/cgroup")


def _state(name: str) -> dict:
    rows = json.loads(mc("ps", "-a", "--format", "json", check=0, timeout=scale(30)).stdout)
    return next(r for r in rows if r["name"] == name)


def _wait(name: str, status: str) -> dict:
    deadline = time.monotonic() + scale(30)
    while True:
        st = _state(name)
        if st["status"] == status:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.2)


def test_exec_joins_the_cgroup_and_stop_ends_it(clean_host):
    mc("run", "-d", "--name", "svc", "--pids-limit", "30", "mini", "sleep", "300", check=0, timeout=scale(60))
    try:
        st = _wait("svc", "running")
        procs = ROOT / "minicontainer" / st["id"] / "cgroup.procs"
        out = mc("exec", "svc", "/bin/sh", "-c", "cat /proc/self/cgroup; echo $$", check=0, timeout=scale(60))
        lines = out.stdout.split()
        assert lines[0] == "0::/"  # its own cgroup namespace: the container's cgroup is its root
        assert procs.exists()
        mc("stop", "-t", "1", "svc", check=0, timeout=scale(60))
        assert _wait("svc", "exited")["exit_code"] == 137
        assert not procs.parent.exists()  # the monitor removed the cgroup
    finally:
        mc("rm", "-f", "svc", timeout=scale(60))


def test_the_monitor_records_an_oom_kill(clean_host):
    mc("run", "-d", "--name", "hog", "-m", "32m", "--memory-swap", "32m", "mini", "tail", "/dev/zero", check=0,
       timeout=scale(60))
    try:
        st = _wait("hog", "exited")
        assert st["exit_code"] == 137
        assert "killed by the OOM killer" in st["exit_reason"]
    finally:
        mc("rm", "-f", "hog", timeout=scale(60))
