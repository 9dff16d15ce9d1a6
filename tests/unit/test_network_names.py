"""container:NAME, --network-alias, --add-host, --dns, --ip and network
connect/disconnect, as values and plans (no root, no netlink)."""

from __future__ import annotations

import pytest

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.runtime import resolv_content
from minicontainer.container.spec import build_spec, parse_add_host
from minicontainer.errors import ContainerError, UsageError
from minicontainer.network import store as N
from minicontainer.syscalls.fake import Recorder

pytestmark = pytest.mark.unit


def test_container_modes_join_that_container_and_keep_the_namespace_in_the_set():
    spec = build_spec("mini", network="container:db", pid="container:db", ipc="container:c2", uts="container:db")
    assert dict(spec.share_with) == {"net": "db", "pid": "db", "ipc": "c2", "uts": "db"}
    assert spec.network == "" and {"net", "pid", "ipc", "uts"} <= spec.namespaces  # joined, not the host's


@pytest.mark.parametrize("kwargs, text", [
    (dict(network="container:db", hostname="x"), "conflicting options: --hostname and --network container:db"),
    (dict(network="container:db", dns=["1.1.1.1"]), "conflicting options: --dns"),
    (dict(network="container:db", add_hosts=["a:1.2.3.4"]), "conflicting options: --add-host"),
    (dict(uts="container:db", hostname="x"), "conflicting options: --hostname and --uts container:db"),
    (dict(network_aliases=["www"]), "--network-alias needs a user-defined network"),
    (dict(network="bridge", network_aliases=["www"]), "--network-alias needs a user-defined network"),
    (dict(network="bridge", ip="172.17.0.9"), "--ip needs a user-defined network"),
    (dict(network="app", ip="10.0.0.300"), "invalid IP address"),
    (dict(network="app", ip="fe80::1"), "only IPv4"),
    (dict(network="app", network_aliases=["bad_alias!"]), "invalid hostname"),
    (dict(dns=["dns.example"]), "invalid IP address 'dns.example' in --dns"),
    (dict(add_hosts=["gw:host-gateway"]), "host-gateway is not supported"),
    (dict(add_hosts=["nocolon"]), "invalid --add-host"),
    (dict(cgroupns="container:db"), "invalid --cgroupns"),
])
def test_names_refused_as_docker_does(kwargs, text):
    with pytest.raises(UsageError, match=text):
        build_spec("mini", **kwargs)


def test_names_values():
    spec = build_spec("mini", network="app", ip="10.89.0.9", network_aliases=["www", "web", "www"],
                      add_hosts=["db.local:10.1.1.1", "v6=::1"], dns=["10.9.9.9"])
    assert (spec.ip, spec.network_aliases, spec.dns) == ("10.89.0.9", ("www", "web"), ("10.9.9.9",))
    assert spec.extra_hosts == (("db.local", "10.1.1.1"), ("v6", "::1"))
    assert parse_add_host("h:2001:db8::1") == ("h", "2001:db8::1")  # the first ':' separates, as docker


def _store(tmp_path):
    store = N.NetworkStore(tmp_path / "networks")
    store.define("front", subnet="10.89.1.0/24")
    store.define("back", subnet="10.89.2.0/24")
    return store


def _lease(store, net, c, **kw):
    return store.lease(net, container=c, cname=c, veth="v" + c, hosts=str(store.root / f"{c}.hosts"), **kw)


def test_a_fixed_address_is_refused_when_taken_or_outside_the_subnet(tmp_path):
    store = _store(tmp_path)
    assert _lease(store, "front", "a", ip="10.89.1.50").ip == "10.89.1.50"
    assert _lease(store, "front", "b").ip == "10.89.1.2"
    with pytest.raises(ContainerError, match="10.89.1.50 is already in use on network front"):
        _lease(store, "front", "c", ip="10.89.1.50")
    for ip, text in (("10.89.9.9", "not a host address of network front"), ("10.89.1.255", "not a host address"),
                     ("10.89.1.1", "is the gateway")):
        with pytest.raises(UsageError, match=text):
            _lease(store, "front", "c", ip=ip)
    assert sorted(lease.container for lease in store.leases("front")) == ["a", "b"]  # nothing left by refusals


def test_hosts_name_aliases_and_follow_a_container_across_its_networks(tmp_path):
    store = _store(tmp_path)
    _lease(store, "front", "web", aliases=("www",), hostname="webhost", extra_hosts=(("ext", "10.7.7.7"),))
    _lease(store, "back", "db", aliases=("database",))
    # `network connect back web`: a second lease, eth1, refused a second time
    _lease(store, "back", "web", hostname="webhost", extra_hosts=(("ext", "10.7.7.7"),), ifname="eth1",
           only_once=True)
    with pytest.raises(ContainerError, match="already on network back"):
        _lease(store, "back", "web", only_once=True)
    web = (store.root / "web.hosts").read_text().splitlines()
    assert web == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "10.7.7.7\text",
                   "10.89.1.2\tweb webhost www", "10.89.2.3\tweb webhost", "10.89.2.2\tdb database"]
    assert "10.89.2.3\tweb\n" in (store.root / "db.hosts").read_text()  # peers: its name and aliases
    # `network disconnect back web`: db forgets web, web forgets db, its front lease stays
    assert [lease.ip for lease in store.release("web", network="back")] == ["10.89.2.3"]
    assert "web" not in (store.root / "db.hosts").read_text()
    assert "db" not in (store.root / "web.hosts").read_text()
    assert [lease.network for lease in store.leases_of("web")] == ["front"]


def test_resolv_conf_as_docker_writes_it(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n")
    assert resolv_content(host_file=str(host)) == "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
    assert resolv_content(("9.9.9.9",), host_file=str(host)).startswith("nameserver 9.9.9.9\nsearch")
    host.write_text("nameserver 127.0.0.53\n")  # systemd-resolved's stub: unreachable from a container
    assert resolv_content(host_file=str(host)) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert resolv_content(host_file=str(host), host_net=True) == "nameserver 127.0.0.53\n"


def _attachment(tmp_path):
    store = _store(tmp_path)
    net = store.get("back")
    return store, P.NetworkAttachment(network=net, container="c" * 64, name="web", veth="vethc", peer="mcpc",
                                      hosts=str(tmp_path / "web.hosts"))


def test_connections_are_remembered_in_order_replaced_and_forgotten(tmp_path):
    from minicontainer.container import netconnect
    from minicontainer.container.state import ContainerState, StateStore

    store = StateStore(tmp_path / "state")
    store.reserve(ContainerState(id="c" * 64, name="web", image="mini", status="running"))
    d = store.containers / ("c" * 64)
    assert netconnect.connected(d) == []
    netconnect._remember(store, "c" * 64, "back", {"network": "back", "ip": "", "aliases": ["api"]})
    netconnect._remember(store, "c" * 64, "side", {"network": "side", "ip": "10.0.9.9", "aliases": []})
    netconnect._remember(store, "c" * 64, "back", {"network": "back", "ip": "10.0.8.8", "aliases": []})
    assert [(c["network"], c["ip"]) for c in netconnect.connected(d)] == [("side", "10.0.9.9"), ("back", "10.0.8.8")]
    netconnect._remember(store, "c" * 64, "side", None)
    assert [c["network"] for c in netconnect.connected(d)] == ["back"]
    (d / netconnect.CONNECTED_FILE).write_text('{"not": "a list"}')
    assert netconnect.connected(d) == []  # a damaged file is no connection, not a traceback


def test_connect_plan_puts_a_veth_into_the_pinned_pid1s_namespace_and_keeps_its_route(tmp_path):
    from minicontainer.container.interpreter import Interpreter

    store, att = _attachment(tmp_path)
    _lease(store, "front", "c" * 64)  # it is on front already: eth0 and its default route
    plan = P.build_connect_plan(att, pid=4321, pid_start=99, runtime_pid=1, ifname="eth1", default_route=False)
    assert [type(s).__name__ for s in plan.steps] == ["OpenNamespaces", "LeaseAddress", "EnsureBridge", "AddVeth",
                                                     "ConfigureEth"]
    assert "no default route (it keeps the one it has)" in plan.render()
    sc = Recorder()
    interp = Interpreter(sc, networks=store)
    interp.run(plan.steps)
    assert ("open_namespaces", 4321, ("net",)) in sc.calls
    veth = next(c for c in sc.calls if c[0] == "net_veth")
    conf = next(c for c in sc.calls if c[0] == "net_configure")
    assert veth[4] == conf[1]  # the namespace opened from PID 1 is the one configured
    assert conf[2:] == ("mcpc", "eth1", "10.89.2.2", 24, None)
    lease = next(lease for lease in store.leases("back"))
    assert (lease.ifname, lease.pid) == ("eth1", 1)  # held by the container's runtime (pid 1 here: alive)
    interp.close_namespaces()
    # disconnect: the lease and the veth go
    sc2 = Recorder()
    Interpreter(sc2, networks=store).run(P.build_disconnect_plan(lease).steps)
    assert sc2.calls == [("net_delete_link", "vethc")] and store.leases("back") == []


def test_a_failure_before_the_fork_closes_another_containers_namespaces():
    from minicontainer.container.interpreter import Interpreter

    from minicontainer.errors import SyscallError

    sc = Recorder(fail={"write_file": 5})
    interp = Interpreter(sc)
    steps = [S.OpenNamespaces(pid=5, pid_start=1, types=("net", "ipc"), container="db"),
             S.WriteFile(path="/s/resolv.conf", target="/etc/resolv.conf", content="nameserver 10.0.0.1\n")]
    with pytest.raises(SyscallError):
        interp.run(steps)
    assert sorted(interp.ns_fds) == ["ipc", "net"]
    interp.abandon()
    assert interp.ns_fds == {} and sc._fds == {}  # every fd it had opened is closed


def test_which_etc_files_a_run_binds(tmp_path, monkeypatch):
    from minicontainer.container.runtime import Runner

    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path))

    def etc(**kw):
        return Runner(build_spec("mini", **kw))._etc_files("c1", None, ())

    assert etc() is None  # --network none: the image's files, as before
    assert etc(network="host") is None
    own = etc(add_hosts=["db:10.1.1.1"])
    assert own.hosts == str(tmp_path / "containers" / "c1" / "hosts") and own.resolv == ""
    assert own.hosts_content == "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.1.1\tdb\n"
    dns = etc(dns=["10.9.9.9"])
    assert dns.hosts == "" and dns.resolv_content.startswith("nameserver 10.9.9.9\n")
    # another container's network: its files, written by nobody here
    shared = P.SharedNamespaces(name="db", id="d1", pid=5, pid_start=1, types=("net",))
    (tmp_path / "containers" / "d1").mkdir(parents=True)
    (tmp_path / "containers" / "d1" / "hosts").write_text("x\n")
    joined = Runner(build_spec("mini", network="container:db"))._etc_files("c1", None, (shared,))
    assert joined == P.EtcFiles(hosts=str(tmp_path / "containers" / "d1" / "hosts"), owner="db")
