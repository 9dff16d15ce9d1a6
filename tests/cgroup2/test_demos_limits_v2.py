"""The narrated limit demos on a unified cgroup v2 hierarchy (the VM): each
step shows what it claims there too, and nothing is left (clean_host)."""

from __future__ import annotations

import pytest

from cgtools import scale
from helpers import run_demo

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]


def test_memory_demo_on_v2(clean_host):
    out = run_demo("memory", clean_host, timeout=scale(240))
    assert "killed by the OOM killer: memory limit 80 MiB" in out
    assert "OOM kill" in (clean_host / "memory-oom.html").read_text()


def test_cpu_demo_on_v2(clean_host):
    assert "limit 5% (--cpus 0.05)" in run_demo("cpu", clean_host, timeout=scale(120))


def test_forkbomb_demo_on_v2(clean_host):
    out = run_demo("forkbomb", clean_host, timeout=scale(120))
    assert "pids limit 20 reached" in out and "20 / 20" in out


def test_cgroup_v1_v2_demo_on_v2(clean_host):
    out = run_demo("cgroup-v1-v2", clean_host, timeout=scale(120))
    assert "a unified (v2) host" in out
    assert "echo '83886080' > memory.max   (other cgroup version: memory.limit_in_bytes)" in out
