"""Joining another container's namespaces, network connect/disconnect and
names (issue 12), for real. Every container and every packet is inside a
network namespace this test makes for itself (helpers.private_netns): the
machine's own interfaces are never touched.

The image store (and so its networks/) is shared by the session: each test
uses networks and subnets of its own and removes them.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from helpers import mc_in_netns, private_netns

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    with private_netns() as (path, _):
        yield path


GET = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 8080"  # busybox wget has no timeout


def in_ns(netns, *cmd) -> str:
    return subprocess.run(["nsenter", f"--net={netns}", "--", *cmd], capture_output=True, text=True,
                          check=True).stdout


def links(netns) -> list[str]:
    out = subprocess.run(["nsenter", f"--net={netns}", "--", "ip", "-o", "link"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def inspect(netns, name) -> dict:
    return json.loads(mc_in_netns(netns, "inspect", name, check=0).stdout)[0]


def one_line_error(proc, text: str) -> None:
    assert proc.returncode != 0 and text in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no traceback


def test_a_container_on_anothers_network_and_pid_namespace(netns):
    mc = lambda *a, **kw: mc_in_netns(netns, *a, **kw)  # noqa: E731
    mc("network", "create", "--subnet", "10.89.61.0/24", "pod-net", check=0)
    try:
        mc("run", "-d", "--name", "pod", "--hostname", "podhost", "--network", "pod-net", "mini",
           "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc", check=0)
        try:
            out = mc("run", "--rm", "--name", "side", "--network", "container:pod", "--pid", "container:pod", "mini",
                     "/bin/sh", "-c", "hostname; ip -o -4 addr show eth0; wget -q -O- http://127.0.0.1:8080/hosts; "
                     "echo ---; ps -o pid,args", check=0).stdout
            lines = out.splitlines()
            assert lines[0] == "podhost"  # docker: the hostname of the container whose network it shares
            assert "inet 10.89.61.2/24" in lines[1]  # pod's eth0, seen from inside side
            assert "10.89.61.2\tpod podhost" in out  # pod's /etc/hosts, served by pod's httpd on 127.0.0.1
            procs = out.split("PID   COMMAND\n")[1].splitlines()
            # one PID namespace: pod's PID 1 is its init, side's shell one more process in it
            assert procs[0].split(None, 1) == ["1", "httpd -f -p 127.0.0.1:8080 -h /etc"]
            assert any("/bin/sh -c hostname" in p for p in procs[1:])

            # the UTS namespace alone: pod's hostname, which this container does not set
            out = mc("run", "--rm", "--uts", "container:pod", "mini", "/bin/sh", "-c", "hostname; echo $HOSTNAME; "
                     "ls /sys/class/net", check=0).stdout.split()
            assert out == ["podhost", "podhost", "lo"]

            # inspect shows the mode with the id, as docker does (the name could be reused)
            mc("run", "-d", "--name", "side2", "--network", "container:pod", "mini", "sleep", "60", check=0)
            pod_id = inspect(netns, "pod")["Id"]
            host_config = inspect(netns, "side2")["HostConfig"]
            assert host_config["NetworkMode"] == f"container:{pod_id}" and host_config["PidMode"] == ""
            assert inspect(netns, "pod")["HostConfig"]["NetworkMode"] == "pod-net"
            # --dry-run shows the setns steps
            dry = mc("run", "--dry-run", "--network", "container:pod", "--ipc", "container:pod", "mini", "true",
                     check=0).stderr
            assert "open the namespaces of container pod's PID 1" in dry and "join container pod's net namespace" in dry
            assert "join container pod's ipc namespace" in dry
        finally:
            mc("rm", "-f", "pod", "side2")
    finally:
        mc("network", "rm", "pod-net", check=0)
    assert links(netns) == ["lo"]


def test_joining_a_container_that_is_not_running_is_refused_with_nothing_left(netns):
    mc = lambda *a, **kw: mc_in_netns(netns, *a, **kw)  # noqa: E731
    mc("run", "--name", "gone", "mini", "true", check=0)  # exited, kept
    try:
        for flag in ("--network", "--pid", "--ipc", "--uts"):
            refused = mc("run", "--name", "joiner", flag, "container:gone", "mini", "true")
            one_line_error(refused, f"cannot join container gone ({flag} container:gone): it is not running (exited)")
            assert refused.returncode == 125
        one_line_error(mc("run", "--network", "container:nobody", "mini", "true"), "no such container: nobody")
        names = mc("ps", "-a", "--format", "{{.Names}}", check=0).stdout.split()
        assert names == ["gone"]  # no half-made container
    finally:
        mc("rm", "-f", "gone", check=0)


def test_names_aliases_fixed_addresses_add_host_and_dns(netns):
    mc = lambda *a, **kw: mc_in_netns(netns, *a, **kw)  # noqa: E731
    mc("network", "create", "--subnet", "10.89.62.0/24", "names-net", check=0)
    try:
        mc("run", "-d", "--name", "srv", "--network", "names-net", "--network-alias", "api", "--network-alias",
           "api.internal", "--ip", "10.89.62.50", "mini", "httpd", "-f", "-p", "8080", "-h", "/etc", check=0)
        mc("run", "-d", "--name", "cli", "--network", "names-net", "--add-host", "db.example:10.1.2.3",
           "--dns", "10.89.62.1", "mini", "sleep", "60", check=0)
        try:
            out = mc("exec", "cli", "/bin/sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; "
                     "wget -q -O- http://srv:8080/hostname && wget -q -O- http://api.internal:8080/hostname && "
                     "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 2 api 8080", check=0).stdout
            hosts, resolv, reached = out.split("---\n")
            assert "10.89.62.50\tsrv api api.internal" in hosts  # --ip and both aliases
            assert "10.1.2.3\tdb.example" in hosts and "\tcli" in hosts
            assert [ln for ln in resolv.splitlines() if ln.startswith("nameserver")] == ["nameserver 10.89.62.1"]
            assert reached.splitlines()[:2] == ["mini", "mini"]  # by name and by alias, with wget
            assert "200 OK" in reached and reached.rstrip().endswith("mini")  # and with nc, by the other alias
            # srv's own /etc/hosts was rewritten when cli came: it names its peer
            assert "\tcli" in mc("exec", "srv", "cat", "/etc/hosts", check=0).stdout
            assert inspect(netns, "srv")["NetworkSettings"]["Networks"]["names-net"]["IPAddress"] == "10.89.62.50"
            # a taken address: one line, nothing left
            taken = mc("run", "--rm", "--name", "dup", "--network", "names-net", "--ip", "10.89.62.50", "mini", "true")
            one_line_error(taken, "address 10.89.62.50 is already in use on network names-net")
            outside = mc("run", "--rm", "--network", "names-net", "--ip", "10.89.99.5", "mini", "true")
            one_line_error(outside, "--ip 10.89.99.5 is not a host address of network names-net")
            assert sorted(mc("ps", "-a", "--format", "{{.Names}}", check=0).stdout.split()) == ["cli", "srv"]
        finally:
            mc("rm", "-f", "srv", "cli")
        # --add-host and --dns without a network
        out = mc("run", "--rm", "--add-host", "a.example:10.3.3.3", "--dns", "10.4.4.4", "mini", "/bin/sh", "-c",
                 "cat /etc/hosts /etc/resolv.conf", check=0).stdout
        assert "10.3.3.3\ta.example" in out and "nameserver 10.4.4.4" in out and "127.0.0.1\tlocalhost" in out
    finally:
        mc("network", "rm", "names-net", check=0)
    assert links(netns) == ["lo"]


def test_connect_and_disconnect_a_running_container(netns):
    mc = lambda *a, **kw: mc_in_netns(netns, *a, **kw)  # noqa: E731
    mc("network", "create", "--subnet", "10.89.63.0/24", "conn-a", check=0)
    mc("network", "create", "--subnet", "10.89.64.0/24", "conn-b", check=0)
    try:
        mc("run", "-d", "--name", "web", "--network", "conn-a", "mini", "httpd", "-f", "-p", "8080", "-h", "/etc",
           check=0)
        mc("run", "-d", "--name", "other", "--network", "conn-b", "mini", "sleep", "60", check=0)
        try:
            assert "\tweb" not in mc("exec", "other", "cat", "/etc/hosts", check=0).stdout
            # two networks do not reach each other (docker's isolation rules): the host routes nothing from
            # conn-b's bridge into conn-a's, though it forwards (for the NAT) and has a route to both
            web_a = inspect(netns, "web")["NetworkSettings"]["Networks"]["conn-a"]["IPAddress"]
            assert "mini" not in mc("exec", "other", "/bin/sh", "-c", GET.format(web_a)).stdout
            assert in_ns(netns, "cat", "/proc/sys/net/ipv4/ip_forward") == "1\n"
            explained = mc("network", "connect", "--explain", "--alias", "webalias", "conn-b", "web", check=0).stderr
            assert "open the namespaces of container web's PID 1" in explained and "rename" in explained
            out = mc("exec", "web", "/bin/sh", "-c", "ip -o -4 addr show eth1; ip route", check=0).stdout
            assert "inet 10.89.64.3/24" in out and "default via 10.89.63.1 dev eth0" in out  # its route stays
            # the peer on conn-b reaches web by name, through web's new interface
            for name in ("web", "webalias"):
                assert mc("exec", "other", "wget", "-q", "-O-", f"http://{name}:8080/hostname", check=0).stdout == "mini\n"
            assert "10.89.64.3\tweb webalias" in mc("exec", "other", "cat", "/etc/hosts", check=0).stdout
            assert "mini" in mc("exec", "other", "/bin/sh", "-c", GET.format("10.89.64.3"), check=0).stdout
            nets = inspect(netns, "web")["NetworkSettings"]["Networks"]
            assert {n: v["Interface"] for n, v in nets.items()} == {"conn-a": "eth0", "conn-b": "eth1"}
            one_line_error(mc("network", "connect", "conn-b", "web"), "already on network conn-b")

            mc("network", "disconnect", "conn-b", "web", check=0)
            assert mc("exec", "web", "ip", "link", "show", "eth1").returncode != 0
            assert "\tweb" not in mc("exec", "other", "cat", "/etc/hosts", check=0).stdout
            info = json.loads(mc("network", "inspect", "conn-b", check=0).stdout)[0]
            assert [c["name"] for c in info["containers"]] == ["other"]  # the lease is released
            one_line_error(mc("network", "disconnect", "conn-b", "web"), "not connected to network conn-b")
            # connected again (a fixed address), then the container ends: the lease and veth go with it
            mc("network", "connect", "--ip", "10.89.64.99", "conn-b", "web", check=0)
            assert "inet 10.89.64.99/24" in mc("exec", "web", "ip", "-o", "-4", "addr", "show", "eth1", check=0).stdout
            # remembered, as docker: a start makes it again, after eth0, with its fixed address
            mc("stop", "-t", "1", "web", check=0)
            mc("start", "web", check=0)
            out = mc("exec", "web", "/bin/sh", "-c", "ip -o -4 addr show eth1; ip route", check=0).stdout
            assert "inet 10.89.64.99/24" in out and "default via 10.89.63.1 dev eth0" in out
            assert mc("exec", "other", "wget", "-q", "-O-", "http://web:8080/hostname", check=0).stdout == "mini\n"
            # a remembered network that is gone: start refuses in one line and makes nothing
            mc("network", "create", "--subnet", "10.89.65.0/24", "conn-c", check=0)
            mc("network", "connect", "conn-c", "web", check=0)
            mc("stop", "-t", "1", "web", check=0)
            mc("network", "rm", "conn-c", check=0)
            one_line_error(mc("start", "web"), "connected to network conn-c")
            assert inspect(netns, "web")["State"]["Status"] == "exited"
            assert len([n for n in links(netns) if n.startswith("veth")]) == 1  # other's: web made none
            # disconnected while stopped: forgotten, and the next start does without it
            mc("network", "disconnect", "conn-c", "web", check=0)
            mc("network", "disconnect", "conn-b", "web", check=0)
            mc("start", "web", check=0)
            assert mc("exec", "web", "ip", "link", "show", "eth1").returncode != 0
            assert "inet 10.89.63." in mc("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0", check=0).stdout
        finally:
            mc("rm", "-f", "web", "other")
        assert json.loads(mc("network", "inspect", "conn-b", check=0).stdout)[0]["containers"] == []
        assert not [n for n in links(netns) if n.startswith("veth")]
        # a stopped container: the connection is remembered, and made when it starts (as docker)
        show = ["/bin/sh", "-c", "ip -o -4 addr show | grep -o 'eth[0-9] *inet [0-9.]*'"]
        assert "eth1" not in mc("run", "--name", "stopped", "--network", "conn-a", "mini", *show, check=0).stdout
        mc("network", "connect", "--ip", "10.89.64.77", "conn-b", "stopped", check=0)
        one_line_error(mc("network", "connect", "conn-b", "stopped"), "already on network conn-b")
        one_line_error(mc("network", "connect", "conn-a", "stopped"), "already on network conn-a")  # its own
        assert "eth1    inet 10.89.64.77" in mc("start", "-a", "stopped", check=0).stdout.replace("\t", "    ")
        mc("rm", "stopped", check=0)
    finally:
        mc("network", "rm", "conn-a", "conn-b", check=0)
    assert links(netns) == ["lo"]


def test_a_restart_makes_the_remembered_connections_again(netns):
    mc = lambda *a, **kw: mc_in_netns(netns, *a, **kw)  # noqa: E731
    mc("network", "create", "--subnet", "10.89.66.0/24", "rs-a", check=0)
    mc("network", "create", "--subnet", "10.89.67.0/24", "rs-b", check=0)
    try:
        # the first run waits for the interface `network connect` adds, then fails; the restart (its
        # layer keeps /ran) prints what the restart's own plan made and succeeds
        script = ("if [ -e /ran ]; then ip -o -4 addr show; exit 0; fi; touch /ran; "
                  "while ! ip link show eth1 >/dev/null 2>&1; do sleep 0.1; done; exit 1")
        mc("run", "-d", "--name", "flaky", "--restart", "on-failure:1", "--network", "rs-a", "mini",
           "/bin/sh", "-c", script, check=0)
        try:
            mc("network", "connect", "--ip", "10.89.67.40", "rs-b", "flaky", check=0)
            deadline = time.monotonic() + 30
            while True:
                row = next(r for r in json.loads(mc("ps", "-a", "--format", "json", check=0).stdout)
                           if r["name"] == "flaky")
                if row["status"] == "exited" and row["restart_count"] == 1:
                    break
                assert time.monotonic() < deadline, row
                time.sleep(0.1)
            assert row["exit_code"] == 0
            logs = mc("logs", "flaky", check=0).stdout
            assert "eth1" in logs and "10.89.67.40/24" in logs and "10.89.66." in logs, logs
        finally:
            mc("rm", "-f", "flaky", check=0)
    finally:
        mc("network", "rm", "rs-a", "rs-b", check=0)
    assert links(netns) == ["lo"]
