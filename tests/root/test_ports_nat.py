"""Published ports, outbound NAT and --internal for real (issue 12), each
test inside network namespaces it makes itself.

Every ``minicontainer`` runs through ``nsenter --net`` in a namespace made
with ``unshare --net`` (helpers.private_netns): the bridge, the veths, the
nft tables, ip_forward and every packet exist only there. The "outside" of
the NAT test is a second such namespace, joined to the first by a veth
pair: the first routes to it, it has no route back to the containers'
subnet, so only masquerading lets an answer return.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from helpers import PY, in_netns, private_netns

pytestmark = pytest.mark.root

HTTPD = "mkdir -p /www && echo hello from the container > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture
def netns():
    with private_netns() as (path, _):
        in_netns(path, "ip", "link", "set", "lo", "up", check=0)
        yield path


def nmc(netns, *args, **kw):
    return in_netns(netns, PY, "-m", "minicontainer", *args, **kw)


# A plain socket from the test's namespace: GET / until the server answers (it may still be starting).
_GET = textwrap.dedent("""
    import socket, sys, time
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
        except OSError:
            time.sleep(0.1)
            continue
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        if data:
            sys.stdout.write(data.decode())
            break
        time.sleep(0.1)  # the proxy took it, the container's httpd was not listening yet
""")


def get(netns, port: int) -> str:
    return in_netns(netns, PY, "-c", _GET, str(port), check=0).stdout


def links(netns) -> list[str]:
    out = in_netns(netns, "ip", "-o", "link", check=0).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def ruleset(netns) -> str:
    return in_netns(netns, "nft", "list", "ruleset", check=0).stdout


def proxies(netns) -> list[int]:
    """Port proxies running in the test's namespace (no one else's)."""
    ns = os.stat(netns).st_ino
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"minicontainer.network.proxy" in cmdline and os.stat(f"/proc/{pid}/ns/net").st_ino == ns:
                out.append(int(pid))
        except OSError:
            continue
    return out


def test_published_port_serves_httpd_and_a_taken_port_is_refused(netns):
    nmc(netns, "network", "create", "--subnet", "10.89.40.0/24", "pubnet", check=0)
    try:
        nmc(netns, "run", "-d", "--name", "web", "--network", "pubnet", "-p", "127.0.0.1:18080:80",
            "mini", "/bin/sh", "-c", HTTPD, check=0)
        try:
            assert "hello from the container" in get(netns, 18080)
            assert nmc(netns, "port", "web", check=0).stdout == "80/tcp -> 127.0.0.1:18080\n"
            assert nmc(netns, "port", "web", "80/tcp", check=0).stdout == "127.0.0.1:18080\n"
            missing = nmc(netns, "port", "web", "81")
            assert missing.returncode == 1 and "no public port '81/tcp' published for web" in missing.stderr
            assert "127.0.0.1:18080->80/tcp" in nmc(netns, "ps", check=0).stdout
            info = json.loads(nmc(netns, "inspect", "web", check=0).stdout)[0]
            assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
            assert len(proxies(netns)) == 1
            # the port is taken: one line, and nothing of the second container is left
            before = (links(netns), nmc(netns, "ps", "-aq", check=0).stdout)
            taken = nmc(netns, "run", "--rm", "--network", "pubnet", "-p", "127.0.0.1:18080:80", "mini", "true")
            assert taken.returncode == 125 and taken.stdout == ""
            assert taken.stderr.count("\n") == 1 and "host port 127.0.0.1:18080/tcp is already in use" in taken.stderr
            assert (links(netns), nmc(netns, "ps", "-aq", check=0).stdout) == before
            leases = json.loads(nmc(netns, "network", "inspect", "pubnet", check=0).stdout)[0]["containers"]
            assert [c["name"] for c in leases] == ["web"]
            assert len(proxies(netns)) == 1
        finally:
            nmc(netns, "rm", "-f", "web", check=0)
        assert proxies(netns) == []  # the proxy went with the container, and the port is free again
        free = in_netns(netns, PY, "-c", "import socket; s = socket.socket(); "  # (a closed connection's TIME_WAIT
                        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "  # stays: as the runtime, reuse)
                        "s.bind(('127.0.0.1', 18080)); s.listen()")
        assert free.returncode == 0, free.stderr
    finally:
        nmc(netns, "network", "rm", "pubnet", check=0)
    assert links(netns) == ["lo"] and ruleset(netns) == ""


def test_a_killed_monitor_takes_its_proxy_along_and_rm_f_cleans_up(netns):
    nmc(netns, "network", "create", "--subnet", "10.89.43.0/24", "orphnet", check=0)
    try:
        nmc(netns, "run", "-d", "--name", "orph", "--network", "orphnet", "-p", "127.0.0.1:18082:80", "mini",
            "sleep", "100", check=0)
        try:
            st = json.loads(nmc(netns, "ps", "--format", "json", check=0).stdout)[0]
            assert st["ports"] and proxies(netns) == [st["proxy_pid"]]
            os.kill(st["runtime_pid"], signal.SIGKILL)
            for _ in range(200):  # the kernel sends the proxy SIGTERM (PR_SET_PDEATHSIG)
                if not proxies(netns):
                    break
                time.sleep(0.02)
            assert proxies(netns) == []
            assert nmc(netns, "port", "orph", check=0).stdout == ""  # nothing is published any more
        finally:
            nmc(netns, "rm", "-f", "orph", check=0)
    finally:
        nmc(netns, "network", "rm", "orphnet", check=0)
    assert links(netns) == ["lo"] and ruleset(netns) == ""


def test_foreground_run_stops_its_proxy_and_publish_all_takes_exposed_ports(netns, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM mini\nEXPOSE 80/tcp\nCMD [\"/bin/sh\", \"-c\", \"{HTTPD}\"]\n")
    nmc(netns, "build", "-t", "ports-exposed", str(ctx), check=0, timeout=120)
    try:
        # -P without --network joins the default bridge network, as docker's -P does
        fg = subprocess.Popen(["nsenter", f"--net={netns}", "--", PY, "-m", "minicontainer", "run", "--rm",
                               "--name", "pall", "-P", "ports-exposed"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(200):
                line = nmc(netns, "port", "pall", "80").stdout.strip()
                if line:
                    break
                subprocess.run(["sleep", "0.05"])
            host, _, port = line.rpartition(":")
            assert host == "0.0.0.0" and int(port) > 0
            assert "hello from the container" in get(netns, int(port))
        finally:
            nmc(netns, "stop", "pall", check=0)
            fg.wait(timeout=60)
        # httpd as PID 1 has no SIGTERM handler, which the kernel then ignores (pid_namespaces(7)): stop kills it
        assert fg.returncode == 137, fg.stderr.read()
        assert proxies(netns) == []
        assert "table ip minicontainer-mc0" in ruleset(netns)  # docker's default network gets NAT too
    finally:
        nmc(netns, "network", "rm", "bridge", check=0)
        nmc(netns, "image", "rm", "ports-exposed", check=0)
    assert links(netns) == ["lo"] and ruleset(netns) == ""


# The "outside": a listener that reports the address each connection came from.
_LISTEN = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.bind(("192.0.2.2", 9000))
    s.listen()
    print("listening", flush=True)
    conn, (peer, _) = s.accept()
    print(peer, conn.recv(100).decode().strip(), flush=True)
""")


def test_nat_reaches_the_outside_and_internal_does_not(netns):
    host_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    with private_netns() as (outside, outside_pid):
        # the test's namespace <-> the outside: 192.0.2.1 here, 192.0.2.2 there; no route back to the containers
        in_netns(netns, "ip", "link", "add", "mcout0", "type", "veth", "peer", "name", "mcout1", "netns",
                 str(outside_pid), check=0)
        in_netns(netns, "ip", "addr", "add", "192.0.2.1/24", "dev", "mcout0", check=0)
        in_netns(netns, "ip", "link", "set", "mcout0", "up", check=0)
        for cmd in (("addr", "add", "192.0.2.2/24", "dev", "mcout1"), ("link", "set", "mcout1", "up"),
                    ("link", "set", "lo", "up")):
            in_netns(outside, "ip", *cmd, check=0)
        nmc(netns, "network", "create", "--subnet", "10.89.41.0/24", "natnet", check=0)
        nmc(netns, "network", "create", "--subnet", "10.89.42.0/24", "--internal", "intnet", check=0)
        try:
            listener = subprocess.Popen(["nsenter", f"--net={outside}", "--", PY, "-c", _LISTEN],
                                        stdout=subprocess.PIPE, text=True)
            try:
                assert listener.stdout.readline() == "listening\n"
                sent = nmc(netns, "run", "--rm", "--network", "natnet", "mini", "/bin/sh", "-c",
                           "echo through-nat | nc 192.0.2.2 9000", check=0)
                out, _ = listener.communicate(timeout=30)
            finally:
                listener.kill()
                listener.wait()
            assert out.strip() == "192.0.2.1 through-nat", sent.stderr  # masqueraded to the host's address
            assert in_netns(netns, "cat", "/proc/sys/net/ipv4/ip_forward", check=0).stdout == "1\n"
            # --internal: no default route, and the forward rules drop what would cross its bridge
            blocked = nmc(netns, "run", "--rm", "--network", "intnet", "-p", "127.0.0.1:18081:80", "mini",
                          "/bin/sh", "-c", "ip route; echo x | nc -w 2 192.0.2.2 9000")
            assert blocked.returncode != 0 and "default" not in blocked.stdout
            # as docker, nothing of a container on an internal network is published (here: with a warning)
            assert "published ports are discarded on the internal network intnet" in blocked.stderr
            rules = ruleset(netns)
            assert 'masquerade' in rules and 'ip saddr 10.89.41.0/24' in rules
            assert 'oifname != "mcbr-' in rules and "drop" in rules
        finally:
            nmc(netns, "network", "rm", "natnet", "intnet", check=0)
        assert ruleset(netns) == ""  # network rm removed both tables
        assert links(netns) == ["lo", "mcout0"]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forward  # only the test's namespace changed


# The proxy alone, through the runtime's own calls (syscalls.linux): a udp echo server behind it, two
# clients, each answered on its own; tcp with a half-close passed on. Run inside the test's namespace.
_PROXY = textwrap.dedent("""
    import socket, threading
    from minicontainer.syscalls.linux import Linux
    sc = Linux()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    def serve():
        while True:
            data, peer = echo.recvfrom(100)
            echo.sendto(b"echo " + data, peer)
    threading.Thread(target=serve, daemon=True).start()
    upper = socket.socket()
    upper.bind(("127.0.0.1", 0))
    upper.listen()
    def shout():
        conn, _ = upper.accept()
        data = b""
        while chunk := conn.recv(100):  # until the client's half-close reaches us through the proxy
            data += chunk
        conn.sendall(data.upper())
        conn.close()
    threading.Thread(target=shout, daemon=True).start()
    ufd, uport = sc.bind_port("udp", "127.0.0.1", 0)
    tfd, tport = sc.bind_port("tcp", "127.0.0.1", 0)
    pid, start = sc.spawn_proxy({"ports": [
        {"fd": ufd, "proto": "udp", "listen": ["127.0.0.1", uport], "target": list(echo.getsockname())},
        {"fd": tfd, "proto": "tcp", "listen": ["127.0.0.1", tport], "target": list(upper.getsockname())}]},
        [ufd, tfd])
    for name in (b"a", b"b"):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(10)
        c.sendto(name, ("127.0.0.1", uport))
        print(c.recvfrom(100)[0].decode())
    t = socket.create_connection(("127.0.0.1", tport), timeout=10)
    t.sendall(b"half-closed")
    t.shutdown(socket.SHUT_WR)
    print(t.recv(100).decode())
    sc.stop_process(pid, start)
    print(open(f"/proc/{pid}/stat").read() if __import__("os").path.exists(f"/proc/{pid}") else "gone")
""")


def test_the_proxy_relays_udp_per_client_and_tcp_half_closes(netns):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"),
                                                                  str(Path(__file__).parents[2] / "src")) if p))
    out = in_netns(netns, PY, "-c", _PROXY, check=0, env=env).stdout
    assert out.splitlines() == ["echo a", "echo b", "HALF-CLOSED", "gone"]
