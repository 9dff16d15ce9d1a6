"""Networks for real (issue 12), every one inside a network namespace this
test makes for itself.

The machine's own namespace is never touched: a holder process is started
with ``unshare --net`` and every ``minicontainer`` (and every ``ip``) runs
through ``nsenter --net`` into it, so bridges, veths, addresses and packets
exist only there, and vanish with the holder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import PY, in_netns, mc_in_netns, private_netns
from minicontainer.network.store import NetworkStore

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    """A private network namespace (helpers.private_netns); its path."""
    with private_netns() as (path, _):
        yield path


inside = in_netns
nmc = mc_in_netns  # ``minicontainer ARGS`` inside the test's network namespace


def test_network_none_has_lo_up_and_nothing_else(netns):
    out = nmc(netns, "run", "--rm", "mini", "/bin/sh", "-c",
              "ls /sys/class/net; cat /sys/class/net/lo/flags", check=0).stdout.split()
    assert out[0] == "lo" and len(out) == 2
    assert int(out[1], 16) & 0x1  # IFF_UP


def links(netns) -> list[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in inside(netns, "ip", "-o", "link", check=0).stdout.splitlines()]


def test_two_containers_on_a_network_reach_each_other_by_name(netns):
    nmc(netns, "network", "create", "--subnet", "10.89.7.0/24", "app-net", check=0)
    try:
        nmc(netns, "run", "-d", "--name", "db", "--network", "app-net", "mini", "sleep", "60", check=0)
        try:
            out = nmc(netns, "run", "--rm", "--name", "web", "--network", "app-net", "mini", "/bin/sh", "-c",
                      "cat /etc/hosts; ping -c1 -W2 db && ip -o -4 addr show eth0; ip route", check=0).stdout
            assert "10.89.7.2\tdb" in out and "10.89.7.3\tweb" in out
            assert "1 packets received" in out
            assert "inet 10.89.7.3/24" in out and "default via 10.89.7.1" in out
            info = json.loads(nmc(netns, "network", "inspect", "app-net", check=0).stdout)[0]
            assert [(c["name"], c["address"]) for c in info["containers"]] == [("db", "10.89.7.2")]
            # in use: refused, in one line, and nothing changes
            refused = nmc(netns, "network", "rm", "app-net")
            assert refused.returncode == 1 and "in use by db" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) <= 2  # the error and its hint
        finally:
            nmc(netns, "rm", "-f", "db", check=0)
        # the lease and the veth went with the container; the bridge stays until rm
        assert json.loads(nmc(netns, "network", "inspect", "app-net", check=0).stdout)[0]["containers"] == []
        assert not [n for n in links(netns) if n.startswith("veth")]
    finally:
        nmc(netns, "network", "rm", "app-net", check=0)
    assert links(netns) == ["lo"]


def test_twenty_concurrent_runs_on_one_network_get_twenty_addresses(netns):
    # each run leases under the network's lock; twenty at once must not share an address
    nmc(netns, "network", "create", "--subnet", "10.89.8.0/24", "crowd", check=0)
    try:
        runs = [subprocess.Popen(["nsenter", f"--net={netns}", "--", PY, "-m", "minicontainer", "run", "--rm",
                                  "--network", "crowd", "mini", "ip", "-o", "-4", "addr", "show", "eth0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(20)]
        outs = [p.communicate(timeout=240) for p in runs]
        assert [p.returncode for p in runs] == [0] * 20, [err for _, err in outs if err]
        addresses = {line.split()[3] for out, _ in outs for line in out.splitlines() if " inet " in line}
        assert len(addresses) == 20 and all(a.startswith("10.89.8.") for a in addresses)
        assert json.loads(nmc(netns, "network", "inspect", "crowd", check=0).stdout)[0]["containers"] == []
        assert not [n for n in links(netns) if n.startswith("veth")]
    finally:
        nmc(netns, "network", "rm", "crowd", check=0)
    assert links(netns) == ["lo"]


def test_default_bridge_network_is_made_on_first_use_and_leases_are_released(netns):
    try:
        out = nmc(netns, "run", "--rm", "--network", "bridge", "mini", "/bin/sh", "-c",
                  "ls /sys/class/net; ip -o -4 addr show eth0", check=0).stdout
        assert out.split()[:2] == ["eth0", "lo"] and "inet 172." in out
        store = NetworkStore(Path(os.environ["MINICONTAINER_HOME"]) / "networks")
        assert store.leases("bridge") == []
        assert [n for n in links(netns) if n != "lo"] == [store.get("bridge").bridge]
    finally:
        nmc(netns, "network", "rm", "bridge", check=0)
    assert links(netns) == ["lo"]


def test_a_lease_of_a_killed_runtime_is_reclaimed(netns, tmp_path):
    nmc(netns, "network", "create", "--subnet", "10.89.8.0/29", "tiny", check=0)
    try:
        store = NetworkStore(Path(os.environ["MINICONTAINER_HOME"]) / "networks")
        dead = subprocess.Popen(["true"])
        dead.wait()
        for ip in ("10.89.8.2", "10.89.8.3", "10.89.8.4", "10.89.8.5", "10.89.8.6"):  # every address, held by a dead pid
            (store.root / "tiny" / "leases" / ip).write_text(json.dumps(dict(
                network="tiny", ip=ip, container="x" + ip, name="gone", veth="vethgone", hosts=str(tmp_path / "h"),
                pid=dead.pid, start=1)))
        out = nmc(netns, "run", "--rm", "--network", "tiny", "mini", "/bin/sh", "-c", "ip -o -4 addr show eth0",
                  check=0).stdout
        assert "inet 10.89.8.2/29" in out
        assert store.leases("tiny") == []
    finally:
        nmc(netns, "network", "rm", "tiny", check=0)
