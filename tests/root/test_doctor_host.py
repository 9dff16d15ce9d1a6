"""doctor on this host, through the real CLI: it says `run` works, and `run` does."""

from __future__ import annotations

import json
import os

import pytest

from helpers import mc

pytestmark = pytest.mark.root


def test_doctor_agrees_with_run_on_this_host():
    proc = mc("doctor", check=0)
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("features on this host: run"), proc.stdout
    kernel = next(line for line in lines if " kernel " in f" {line} ")
    assert kernel.startswith("OK") and os.uname().release in kernel
    for ns in ("mnt", "pid", "uts", "ipc", "net", "cgroup"):
        assert any(line.startswith("OK") and f"namespace {ns} " in line for line in lines), ns
    # what it says is true: a container runs
    assert mc("run", "--rm", "mini", "true").returncode == 0


def test_doctor_json_matches_the_host():
    data = json.loads(mc("doctor", "--format", "json", check=0).stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["run_works"] is True and data["features"]["run"] is True
    assert checks["root"]["ok"] is True
    on_v1 = os.path.isdir("/sys/fs/cgroup/memory")
    assert ("v1" in checks["cgroups"]["detail"] or "hybrid" in checks["cgroups"]["detail"]) == on_v1
    with open("/proc/filesystems") as f:
        has_overlay = any(line.split()[-1] == "overlay" for line in f if line.strip())
    if has_overlay:  # without it in the list, the module may still load on first use
        assert checks["overlayfs"]["ok"] is True
