"""-p/-P parsing, the spec and plan they make, the NAT rules' text, and the
interpreter's handling of the port steps (on the recording fake)."""

from __future__ import annotations

import pytest

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.interpreter import Interpreter
from minicontainer.container.spec import build_spec
from minicontainer.errors import ImageError, MiniError, UsageError
from minicontainer.images.config import ImageConfig
from minicontainer.network import nat
from minicontainer.network.ports import PortMapping, docker_lines, exposed, parse_publish, ps_column
from minicontainer.network.store import NetworkStore
from minicontainer.syscalls.fake import FakeChannels, Recorder

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, want", [
    ("8080:80", PortMapping(80, "tcp", "0.0.0.0", 8080)),
    ("127.0.0.1:18080:80", PortMapping(80, "tcp", "127.0.0.1", 18080)),
    ("127.0.0.1:5353:53/udp", PortMapping(53, "udp", "127.0.0.1", 5353)),
    ("127.0.0.1::80", PortMapping(80, "tcp", "127.0.0.1", 0)),
    ("80", PortMapping(80, "tcp", "0.0.0.0", 0)),
    ("53/udp", PortMapping(53, "udp", "0.0.0.0", 0)),
    (":80/tcp", PortMapping(80, "tcp", "0.0.0.0", 0)),
])
def test_publish_forms_as_docker(text, want):
    assert parse_publish(text) == want


@pytest.mark.parametrize("text, says", [
    ("8080:80/sctp", "protocol 'sctp'"),
    ("8080:0", "container port '0'"),
    ("70000:80", "host port '70000'"),
    ("8000-8010:80-90", "port ranges are not supported"),
    ("localhost:8080:80", "'localhost' is not an IPv4 address"),
    ("[::1]:8080:80", "IPv6"),
    ("1.2.3.4:1:2:3", "invalid -p"),
    ("8080:", "invalid -p"),
    ("", "invalid -p"),
])
def test_bad_publish_is_one_clear_error(text, says):
    with pytest.raises(UsageError) as e:
        parse_publish(text)
    assert says in str(e.value)


def test_publish_joins_bridge_unless_a_network_is_given_and_is_discarded_for_host_and_none(capsys):
    spec = build_spec("mini", publish=["127.0.0.1:18080:80"])
    assert spec.network == "bridge" and spec.ports == (PortMapping(80, "tcp", "127.0.0.1", 18080),)
    assert build_spec("mini", network="app-net", publish=["80"]).network == "app-net"
    for mode in ("host", "none"):
        spec = build_spec("mini", network=mode, publish=["8080:80"], publish_all=True)
        assert spec.ports == () and not spec.publish_all and spec.network == ""
        assert f"published ports are discarded when using the {mode} network" in capsys.readouterr().err


def test_a_host_port_published_twice_is_refused():
    with pytest.raises(UsageError, match="published twice"):
        build_spec("mini", publish=["8080:80", "127.0.0.1:8080:81"])
    # the same port on two addresses, or for tcp and udp, is fine
    assert len(build_spec("mini", publish=["127.0.0.1:8080:80", "127.0.0.2:8080:80", "8080:80/udp"]).ports) == 3


def test_publish_all_takes_the_image_exposed_ports_that_no_p_publishes():
    spec = build_spec("mini", publish=["127.0.0.1:18080:80"], publish_all=True)
    spec = spec.with_image(ImageConfig(exposed_ports=("443/tcp", "53/udp", "80/tcp", "8080")))
    assert spec.published_ports() == (
        PortMapping(80, "tcp", "127.0.0.1", 18080), PortMapping(443, "tcp"), PortMapping(53, "udp"),
        PortMapping(8080, "tcp"))
    with pytest.raises(ImageError, match="ExposedPorts has '1-2/tcp'"):
        exposed(["1-2/tcp"])
    assert build_spec("mini").published_ports() == ()


def test_port_and_ps_are_written_as_docker_writes_them():
    published = [{"container_port": 80, "proto": "tcp", "host_ip": "127.0.0.1", "host_port": 18080},
                 {"container_port": 53, "proto": "udp", "host_ip": "0.0.0.0", "host_port": 32768}]
    assert docker_lines(published) == ["80/tcp -> 127.0.0.1:18080", "53/udp -> 0.0.0.0:32768"]
    assert ps_column(published) == "127.0.0.1:18080->80/tcp, 0.0.0.0:32768->53/udp"


def test_nat_rules_masquerade_out_of_the_bridge_and_internal_drops_crossing():
    out = nat.setup_commands("mcbr-x", "10.89.0.0/24", internal=False)
    assert out[:3] == ["table ip minicontainer-mcbr-x", "delete table ip minicontainer-mcbr-x",
                       "add table ip minicontainer-mcbr-x"]  # one transaction that can be applied again
    assert 'add rule ip minicontainer-mcbr-x postrouting ip saddr 10.89.0.0/24 oifname != "mcbr-x" masquerade' in out
    # docker's isolation: nothing is routed from this bridge into another network's
    assert out[-2:] == ['add rule ip minicontainer-mcbr-x forward iifname "mcbr-x" oifname "mc0" drop',
                        'add rule ip minicontainer-mcbr-x forward iifname "mcbr-x" oifname "mcbr-*" '
                        'oifname != "mcbr-x" drop']
    default = nat.setup_commands("mc0", "10.88.0.0/16", internal=False)
    assert [c for c in default if "drop" in c] == [
        'add rule ip minicontainer-mc0 forward iifname "mc0" oifname "mcbr-*" oifname != "mc0" drop']
    internal = "\n".join(nat.setup_commands("mcbr-x", "10.89.0.0/24", internal=True))
    assert "masquerade" not in internal and 'iifname "mcbr-x" oifname != "mcbr-x" drop' in internal
    assert nat.remove_commands("mcbr-x") == ["table ip minicontainer-mcbr-x", "delete table ip minicontainer-mcbr-x"]


def _net(tmp_path, *, internal=False):
    store = NetworkStore(tmp_path / "networks")
    return store, store.define("app", subnet="10.89.0.0/24", internal=internal)


def test_internal_network_gets_isolation_and_no_forwarding_and_a_host_without_nft_a_note(tmp_path):
    _, net = _net(tmp_path, internal=True)
    steps = P.nat_steps(net, nftables=True)
    assert [type(s) for s in steps] == [S.SetupNat] and steps[0].internal
    (note,) = P.nat_steps(net, nftables=False)
    assert isinstance(note, S.Note) and note.phase == S.BEFORE_FORK and "no default route" in note.text


def test_the_proxy_gets_the_bound_sockets_and_the_leased_address(tmp_path):
    store, net = _net(tmp_path)
    ports = (PortMapping(80, "tcp", "127.0.0.1", 18080), PortMapping(53, "udp"))
    att = P.NetworkAttachment(network=net, container="c1", name="web", veth="vethc1", peer="mcpeerc1",
                              hosts=str(tmp_path / "hosts"), ports=ports, nftables=True)
    sc = Recorder(fork_returns=4242)
    interp = Interpreter(sc, channels=FakeChannels(sc), networks=store)
    steps = P.network_steps(att) + [S.StartPortProxy(ports=ports)]
    for step in steps:
        interp.apply(step)
    binds = [c for c in sc.calls if c[0] == "bind_port"]
    assert binds == [("bind_port", "tcp", "127.0.0.1", 18080), ("bind_port", "udp", "0.0.0.0", 0)]
    ((_, config, fds),) = [c for c in sc.calls if c[0] == "spawn_proxy"]
    assert [(p["proto"], p["listen"], p["target"]) for p in config["ports"]] == [
        ("tcp", ["127.0.0.1", 18080], ["10.89.0.2", 80]), ("udp", ["0.0.0.0", 32768], ["10.89.0.2", 53])]
    assert fds == tuple(p["fd"] for p in config["ports"])
    assert interp.published[1] == {"container_port": 53, "proto": "udp", "host_ip": "0.0.0.0", "host_port": 32768}
    assert interp.port_fds == [] and interp.proxy == (4343, 1)
    assert ("host_sysctl", "net/ipv4/ip_forward", "1") in sc.calls
    interp.abandon()  # a failure after the proxy started: it is stopped
    assert sc.calls[-1] == ("stop_process", 4343, 1)


def test_a_started_container_gets_its_connected_networks_after_eth0_and_ports_still_lead_to_eth0(tmp_path):
    # `start` of a container that `network connect` put on a second network (netconnect.py)
    store, net = _net(tmp_path)
    side = store.define("side", subnet="10.89.9.0/24")
    ports = (PortMapping(80, "tcp", "127.0.0.1", 18080),)
    att = P.NetworkAttachment(network=net, container="c1", name="web", veth="vethc1", peer="mcpeerc1",
                              hosts=str(tmp_path / "hosts"), ports=ports, nftables=True)
    extra = P.NetworkAttachment(network=side, container="c1", name="web", veth="vethc1side", peer="mcpc1side",
                                hosts=str(tmp_path / "hosts"), nftables=True)
    plan = P.build_plan(build_spec("mini", network="app"), hostname="web",
                        rootfs=P.RootfsLayout(lower="/img", layer=str(tmp_path / "layer")), network=att,
                        connected=((extra, "10.89.9.50", ("websvc",)),), container_id="c1")
    names = [type(s).__name__ for s in plan.steps]
    first, second = names.index("ConfigureEth"), names.index("ConfigureEth", names.index("ConfigureEth") + 1)
    assert names[first + 1:second + 1] == ["LeaseAddress", "EnsureBridge", "SetupNat", "EnableForwarding",
                                          "AddVeth", "ConfigureEth"]
    assert "eth1" in plan.render() and "no default route (it keeps the one it has)" in plan.render()
    sc = Recorder(fork_returns=4242)
    interp = Interpreter(sc, channels=FakeChannels(sc), networks=store)
    for step in plan.steps[:second + 1] + [s for s in plan.steps if isinstance(s, S.StartPortProxy)]:
        interp.apply(step)
    configured = [c[2:] for c in sc.calls if c[0] == "net_configure"]
    assert configured == [("mcpeerc1", "eth0", "10.89.0.2", 24, "10.89.0.1"),
                          ("mcpc1side", "eth1", "10.89.9.50", 24, None)]
    ((_, config, _),) = [c for c in sc.calls if c[0] == "spawn_proxy"]
    assert config["ports"][0]["target"] == ["10.89.0.2", 80]  # eth0's address, not the last one leased
    assert {(lease.network, lease.ifname, tuple(lease.aliases)) for net_ in ("app", "side")
            for lease in store.leases(net_)} == {("app", "eth0", ()), ("side", "eth1", ("websvc",))}
    interp.abandon()


def test_a_taken_port_fails_the_first_step_before_anything_exists(tmp_path):
    store, net = _net(tmp_path)
    att = P.NetworkAttachment(network=net, container="c1", name="web", veth="vethc1", peer="mcpeerc1",
                              hosts=str(tmp_path / "hosts"), ports=(PortMapping(80, "tcp", "127.0.0.1", 18080),))
    sc = Recorder(fail={"bind_port": 98})  # EADDRINUSE
    interp = Interpreter(sc, channels=FakeChannels(sc), networks=store)
    with pytest.raises(MiniError):
        interp.run(P.network_steps(att))
    assert sc.names() == ["bind_port"] and store.leases("app") == []


def test_nat_failure_warns_but_internal_isolation_failing_refuses(tmp_path, capsys):
    sc = Recorder(fail={"nft": 2})
    interp = Interpreter(sc, channels=FakeChannels(sc))
    interp.apply(S.SetupNat(network="app", bridge="b", subnet="10.0.0.0/24", commands=("x",)))
    assert "network app gets no outbound NAT" in capsys.readouterr().err
    with pytest.raises(MiniError):
        interp.apply(S.SetupNat(network="app", bridge="b", subnet="10.0.0.0/24", internal=True, commands=("x",)))


def test_port_ps_and_inspect_read_the_state_while_the_proxy_lives(tmp_path, monkeypatch, capsys):
    import json
    import os

    from minicontainer.cli import main
    from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time

    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "home"))
    me, start = os.getpid(), proc_start_time(os.getpid())  # we play the runtime and the proxy
    st = ContainerState(id=new_id(), name="web", image="mini", command=["httpd"], status="running",
                        runtime_pid=me, runtime_start=start, proxy_pid=me, proxy_start=start,
                        ports=[{"container_port": 80, "proto": "tcp", "host_ip": "127.0.0.1", "host_port": 18080}])
    store = StateStore()
    store.reserve(st)

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        out = capsys.readouterr()
        return e.value.code, out.out, out.err

    assert cli("port", "web") == (0, "80/tcp -> 127.0.0.1:18080\n", "")
    assert cli("port", "web", "80") == (0, "127.0.0.1:18080\n", "")
    code, out, err = cli("port", "web", "53/udp")
    assert (code, out) == (1, "") and "no public port '53/udp' published for web" in err and err.count("\n") == 1
    assert cli("port", "web", "http")[0] == 125  # UsageError
    assert cli("ps", "--format", "{{.Names}} {{.Ports}}") == (0, "web 127.0.0.1:18080->80/tcp\n", "")
    code, out, _ = cli("ps")
    assert out.splitlines()[0].split()[-2:] == ["PORTS", "NAMES"] and "127.0.0.1:18080->80/tcp   web" in out
    code, out, _ = cli("inspect", "web")
    assert json.loads(out)[0]["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    st.proxy_start = start + 1  # the proxy is gone (its pid is someone else now): nothing is published
    store.save(st)
    assert cli("port", "web") == (0, "", "")
    assert json.loads(cli("inspect", "web")[1])[0]["NetworkSettings"]["Ports"] == {}


def test_network_create_says_once_when_the_host_has_no_nft(tmp_path, monkeypatch, capsys):
    import shutil

    from minicontainer.cli import main

    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(shutil, "which", lambda name, *a, **kw: None)
    for args, says in ((["app"], "network app gets no outbound NAT"),
                       (["--internal", "iso"], "network iso gets no isolation rules")):
        with pytest.raises(SystemExit) as e:
            main(["network", "create", "--subnet", "10.89.%d.0/24" % len(args), *args])
        out = capsys.readouterr()
        assert e.value.code == 0 and len(out.out.strip()) == 64 and says in out.err and out.err.count("\n") == 1
