"""The narrated limit demos, run non-interactively on this host's cgroups:
every step shows what it claims, the charts are written where --out says,
and nothing is left (clean_host: no container process, mount or cgroup)."""

from __future__ import annotations

import pytest

from cgtools import scale
from helpers import run_demo

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]


def test_memory_demo(clean_host):
    out = run_demo("memory", clean_host, timeout=scale(240))
    assert "killed by the OOM killer: memory limit 80 MiB" in out
    oom, enough = ((clean_host / f).read_text() for f in ("memory-oom.html", "memory-enough.html"))
    assert "<svg" in oom and "<svg" in enough
    assert "OOM kill" in oom and "OOM kill" not in enough  # the kill is marked on the first chart only


def test_cpu_demo(clean_host):
    out = run_demo("cpu", clean_host, timeout=scale(240))
    assert "limit 5% (--cpus 0.05)" in out
    assert "<svg" in (clean_host / "cpu.html").read_text()


def test_forkbomb_demo(clean_host):
    out = run_demo("forkbomb", clean_host, timeout=scale(240))
    assert "pids limit 20 reached" in out and "20 / 20" in out
    assert "syntax error" not in out


def test_cgroup_v1_v2_demo(clean_host):
    out = run_demo("cgroup-v1-v2", clean_host, timeout=scale(240))
    assert "echo '83886080' > memory.limit_in_bytes   (other cgroup version: memory.max)" in out
