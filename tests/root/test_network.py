"""Networks for real (issue 12), every one inside a network namespace this
test makes for itself.

The machine's own namespace is never touched: a holder process is started
with ``unshare --net`` and every ``minicontainer`` (and every ``ip``) runs
through ``nsenter --net`` into it, so bridges, veths, addresses and packets
exist only there, and vanish with the holder.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from helpers import PY

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    """A private network namespace, held by a sleeping process; its path."""
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"])
    path = f"/proc/{holder.pid}/ns/net"
    mine = os.readlink("/proc/self/ns/net")
    for _ in range(200):  # until unshare has exec'd sleep in the new namespace
        try:
            if os.readlink(path) != mine:
                break
        except OSError:
            pass
        subprocess.run(["sleep", "0.01"])
    assert os.readlink(path) != mine
    yield path
    holder.kill()
    holder.wait()


def inside(netns, *argv, timeout=60, check=None):
    proc = subprocess.run(["nsenter", f"--net={netns}", "--", *argv], capture_output=True, text=True,
                          timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}, stdout={proc.stdout!r}, stderr={proc.stderr!r}"
    return proc


def nmc(netns, *args, **kw):
    """``minicontainer ARGS`` inside the test's network namespace."""
    return inside(netns, PY, "-m", "minicontainer", *args, **kw)


def test_network_none_has_lo_up_and_nothing_else(netns):
    out = nmc(netns, "run", "--rm", "mini", "/bin/sh", "-c",
              "ls /sys/class/net; cat /sys/class/net/lo/flags", check=0).stdout.split()
    assert out[0] == "lo" and len(out) == 2
    assert int(out[1], 16) & 0x1  # IFF_UP
