"""network/store.py and the cost of networks: subnets, leases, /etc/hosts (no root, no netlink)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading

import pytest

from minicontainer.container.spec import build_spec
from minicontainer.errors import ContainerError, UsageError
from minicontainer.network import store as N

pytestmark = pytest.mark.unit


def test_the_subnet_chosen_overlaps_no_route_and_no_network():
    routes = [ipaddress.ip_network("172.16.0.0/12")]  # a host route over all of 172.16-31
    assert N.choose_subnet([], routes) == "192.168.0.0/20"
    assert N.choose_subnet(["172.17.0.0/16"], []) == "172.18.0.0/16"
    assert N.choose_subnet([], [ipaddress.ip_network("172.17.5.0/24")]) == "172.18.0.0/16"


def test_host_routes_are_read_from_proc_net_route(tmp_path):
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                     "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n"  # default: left out
                     "eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\n")  # 172.17.0.0/16
    assert N.host_routes(str(table)) == [ipaddress.ip_network("172.17.0.0/16")]


def test_define_refuses_bad_input_and_overlaps(tmp_path):
    store = N.NetworkStore(tmp_path)
    net = store.define("app", subnet="10.89.0.0/24")
    assert (net.gateway, net.prefixlen, len(net.bridge) <= 15) == ("10.89.0.1", 24, True)
    for kwargs, text in ((dict(subnet="10.89.0.128/25"), "overlaps network app"),
                         (dict(subnet="10.1.0.1/24"), "invalid --subnet"),
                         (dict(subnet="10.2.0.0/24", gateway="10.3.0.1"), "not a host address"),
                         (dict(gateway="10.2.0.1"), "--gateway needs --subnet")):
        with pytest.raises(UsageError, match=text):
            store.define("other", **kwargs)
    with pytest.raises(UsageError, match="already exists"):
        store.define("app")
    with pytest.raises(UsageError, match="invalid network name"):
        store.define("../x")
    assert store.names() == ["app"]  # nothing left by the refusals


def _lease(store, i, name="app"):
    return store.lease(name, container=f"c{i}", cname=f"n{i}", veth=f"veth{i}", hosts=str(store.root / f"hosts{i}"))


def test_concurrent_leases_get_distinct_addresses(tmp_path):
    store = N.NetworkStore(tmp_path)
    store.define("app", subnet="10.89.0.0/24")
    got = []
    threads = [threading.Thread(target=lambda i=i: got.append(_lease(N.NetworkStore(tmp_path), i).ip))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 20 and "10.89.0.1" not in got


def test_hosts_files_follow_peers_and_a_full_network_is_refused(tmp_path):
    store = N.NetworkStore(tmp_path)
    store.define("small", subnet="10.89.1.0/29")  # .1 gateway, .2-.6 containers
    for i in range(5):
        _lease(store, i, "small")
    assert "10.89.1.6\tn4" in (tmp_path / "hosts0").read_text()
    with pytest.raises(ContainerError, match="no free address"):
        _lease(store, 9, "small")
    assert [lease.ip for lease in store.release("c4")] == ["10.89.1.6"]
    assert "n4" not in (tmp_path / "hosts0").read_text()
    with pytest.raises(ContainerError, match="in use by n0, n1, n2, n3"):
        store.remove("small")


def test_a_dead_runtimes_lease_is_stale(tmp_path):
    store = N.NetworkStore(tmp_path)
    store.define("app", subnet="10.89.0.0/24")
    lease = _lease(store, 1)
    path = store.root / "app" / "leases" / lease.ip
    path.write_text(json.dumps({**json.loads(path.read_text()), "start": 1}))  # not our start time: another process
    assert not store.leases("app")[0].alive()
    assert _lease(store, 2).ip == lease.ip  # reclaimed
    store.release("c2")
    assert store.remove("app").name == "app"


def test_network_values_of_run():
    assert build_spec("mini", network="app-net").network == "app-net"
    assert build_spec("mini", network="none").network == "" and "net" in build_spec("mini").namespaces
    with pytest.raises(UsageError, match="invalid --network"):
        build_spec("mini", network="a/b")


def test_network_none_never_imports_pyroute2():
    """pyroute2 costs a few hundred ms to import: a run without a bridge network
    (planning, the syscall layer, lo up) must not load it."""
    code = ("import sys; from minicontainer.container import plan, interpreter, runtime; "
            "from minicontainer.syscalls import linux; from minicontainer.commands import run, network; "
            "from minicontainer.network import store; "
            "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
