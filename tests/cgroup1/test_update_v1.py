"""`minicontainer update` on this (hybrid, v1) host: limits changed live in
the container's cgroup files, the kernel's refusal of a memory limit below
what it cannot reclaim explained, and the new limits kept for the next start.
``clean_host`` (conftest.py) checks nothing is left afterwards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cgtools import scale
from helpers import mc

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]

CGROUP = Path("/sys/fs/cgroup")
MIB = 1 << 20
# PID 1 is tail, reading 32 MiB from a FIFO whose writer stays open: it holds
# the data (no newline, so all of it is "the last lines") and waits for more.
HOLD_32M = "mkfifo /tmp/f; { head -c 33554432 /dev/zero; sleep 1000; } > /tmp/f & exec tail /tmp/f"


@pytest.fixture
def hog():
    mc("run", "-d", "--name", "hog", "-m", "64m", "--cpus", "0.5", "mini", "sh", "-c", HOLD_32M, check=0)
    cid = json.loads(mc("inspect", "hog", check=0).stdout)[0]["Id"]
    usage = CGROUP / "memory" / "minicontainer" / cid / "memory.usage_in_bytes"
    deadline = time.monotonic() + scale(30)
    while int(usage.read_text()) < 32 * MIB:
        assert time.monotonic() < deadline, f"the container never held 32 MiB: {usage.read_text()}"
        time.sleep(0.05)
    yield cid
    mc("rm", "-f", "hog", timeout=scale(60))


def limit(cid: str, ctrl: str, name: str) -> str:
    return (CGROUP / ctrl / "minicontainer" / cid / name).read_text().strip()


def test_memory_below_what_v1_can_reclaim_is_refused_in_one_line(hog):
    proc = mc("update", "--memory", "16m", "--pids-limit", "5", "hog")
    assert proc.returncode == 125
    [line] = proc.stderr.splitlines()
    assert line.startswith("minicontainer: error: --memory: the kernel refused memory.limit_in_bytes = 16777216: "
                           "Device or resource busy; nothing was changed (hint: it uses 3")
    assert "choose a limit above its usage" in line
    assert limit(hog, "memory", "memory.limit_in_bytes") == str(64 * MIB)
    assert limit(hog, "pids", "pids.max") == "max"
    assert mc("inspect", "--format", "{{.State.Status}} {{.Config.resources.memory}}", "hog",
              check=0).stdout == f"running {64 * MIB}\n"


def test_limits_change_live_and_stay_for_the_next_start(hog):
    assert mc("update", "-m", "256m", "--cpus", "1.5", "--pids-limit", "30", "--cpu-shares", "512", "hog",
              check=0).stdout == "hog\n"
    # growing memory past the old memory+swap limit (128m): memsw was raised first
    assert limit(hog, "memory", "memory.limit_in_bytes") == str(256 * MIB)
    assert limit(hog, "memory", "memory.memsw.limit_in_bytes") == str(512 * MIB)
    assert limit(hog, "cpu", "cpu.cfs_quota_us") == "150000"
    assert limit(hog, "cpu", "cpu.shares") == "512"
    assert limit(hog, "pids", "pids.max") == "30"
    mc("stop", "-t", "0", "hog", check=0)
    mc("update", "--pids-limit", "40", "hog", check=0)  # exited: only the spec changes
    mc("start", "hog", check=0)
    assert limit(hog, "memory", "memory.limit_in_bytes") == str(256 * MIB)
    assert limit(hog, "pids", "pids.max") == "40"


def test_bad_values_and_no_flags_change_nothing(hog):
    for args, words in ((["--cpus", "abc"], "invalid --cpus"), ([], "at least one flag"),
                        (["--memory-swap", "32m"], "smaller than --memory")):
        proc = mc("update", *args, "hog")
        assert proc.returncode == 125 and words in proc.stderr, (args, proc.stderr)
    assert limit(hog, "cpu", "cpu.cfs_quota_us") == "50000"
