"""`minicontainer update` on cgroup v2 (the VM of scripts/vm-test): a memory
limit lowered under a container holding 32 MB makes the kernel reclaim and,
with nothing to reclaim, OOM-kill it (memory.max); the runtime records why
and ps, inspect and state.json say so. Other limits change live."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]

ROOT = Path("/sys/fs/cgroup")
MIB = 1 << 20
# PID 1 is tail, holding 32 MiB read from a FIFO whose writer stays open.
HOLD_32M = "mkfifo /tmp/f; { head -c 33554432 /dev/zero; sleep 1000; } > /tmp/f & exec tail /tmp/f"


def test_update_memory_below_usage_gets_it_oom_killed_and_reported(clean_host):  # noqa: F811
    mc("run", "-d", "--name", "hog", "-m", "128m", "mini", "sh", "-c", HOLD_32M, timeout=scale(60), check=0)
    try:
        cid = json.loads(mc("inspect", "hog", timeout=scale(30), check=0).stdout)[0]["Id"]
        leaf = ROOT / "minicontainer" / cid
        deadline = time.monotonic() + scale(60)
        while int((leaf / "memory.current").read_text()) < 32 * MIB:
            assert time.monotonic() < deadline, "the container never held 32 MiB"
            time.sleep(0.1)
        mc("update", "--pids-limit", "50", "--cpus", "0.5", "hog", timeout=scale(30), check=0)
        assert (leaf / "pids.max").read_text().strip() == "50"
        assert (leaf / "cpu.max").read_text().strip() == "50000 100000"
        mc("update", "--memory", "16m", "hog", timeout=scale(60), check=0)
        assert mc("wait", "hog", timeout=scale(60), check=0).stdout == "137\n"
        info = json.loads(mc("inspect", "hog", timeout=scale(30), check=0).stdout)[0]
        assert info["State"]["Status"] == "exited"
        assert info["State"]["OOMKilled"] is True
        assert info["State"]["Error"].startswith("killed by the OOM killer: memory limit 16 MiB")
        assert info["Config"]["resources"]["memory"] == 16 * MIB
        [row] = json.loads(mc("ps", "-a", "--format", "json", timeout=scale(30), check=0).stdout)
        assert row["exit_code"] == 137 and "OOM killer" in row["exit_reason"]
        state = json.loads((clean_host / "run" / "containers" / cid / "state.json").read_text())
        assert state["status"] == "exited" and "OOM killer" in state["exit_reason"]
    finally:
        mc("rm", "-f", "hog", timeout=scale(60))
