"""Networks and address leases, as files (no netlink here).

    $MINICONTAINER_HOME/networks/
        .lock                 flock(2): every change below happens under it
        NAME/network.json     name, id, subnet, gateway, bridge, internal, created
        NAME/leases/IP        one per container on the network: its id, name,
                              host veth, hosts file, and the runtime (pid and
                              start time) that holds the lease

A lease is created with O_EXCL under the lock, so two runs starting at the
same moment never get the same address. It is removed when the container
ends (runtime.finish); a lease whose runtime is gone (killed with SIGKILL,
or a reboot) is stale and is reclaimed by the next lease on that network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import time
from minicontainer.records import asdict, dataclass  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

from minicontainer import paths
from minicontainer.errors import ContainerError, UsageError
from minicontainer.names import check_name
from minicontainer.procfs import proc_start_time

DEFAULT_NETWORK = "bridge"  # docker's name for the default network
RESERVED = ("none", "host", "bridge")
# Docker's pool: 172.17-31.0.0/16, then 192.168.x.0/20.
_POOL = [f"172.{n}.0.0/16" for n in range(17, 32)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]


@dataclass(frozen=True)
class Network:
    name: str
    id: str
    subnet: str  # "172.18.0.0/16"
    gateway: str  # the bridge's own address
    bridge: str  # the host bridge's interface name
    internal: bool = False
    created: float = 0.0

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


@dataclass(frozen=True)
class Lease:
    network: str
    ip: str
    container: str  # id
    name: str
    veth: str  # the host end of the container's veth pair
    hosts: str  # the container's /etc/hosts on the host
    pid: int  # the runtime holding the lease
    start: int  # its start time (proc(5) field 22): a reused pid is not it
    # Names (issue 12), each with a default so older lease files still read:
    aliases: tuple[str, ...] = ()  # --network-alias: more names of it on this network
    hostname: str = ""  # its own hostname, on its own line of its /etc/hosts
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host NAME:IP, in its /etc/hosts
    ifname: str = "eth0"  # its interface on this network (eth1 ... after `network connect`)

    def alive(self) -> bool:
        return self.pid > 0 and proc_start_time(self.pid) == self.start


def check_network_name(name: str) -> str:
    return check_name(name, "network name", "use 1-64 letters, digits and _.-, starting with a letter or digit")


def host_routes(path: str = "/proc/net/route") -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations our network namespace routes (route(8)'s table,
    in proc(5)'s hex, little-endian), the default route left out."""
    out = []
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                dest, mask = (ipaddress.IPv4Address(int(x, 16).to_bytes(4, "little")) for x in (fields[1], fields[7]))
                if int(mask):
                    out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except (OSError, ValueError, IndexError):
        pass
    return out


def choose_subnet(taken: list, routes: list) -> str:
    """The first subnet of docker's pool that overlaps no route of the host and no other network."""
    used = list(routes) + [ipaddress.ip_network(t) for t in taken]
    for cand in _POOL:
        net = ipaddress.ip_network(cand)
        if not any(net.overlaps(u) for u in used):
            return cand
    raise ContainerError("no free subnet for a new network: every one of 172.17-31.0.0/16 and 192.168.0.0/16 "
                         "overlaps a host route or another network", "give one with network create --subnet CIDR")


class NetworkStore:
    def __init__(self, root: Path | None = None):
        self.root = root if root is not None else paths.home() / "networks"

    def lock(self):
        return paths.dir_lock(self.root)

    # -- networks ------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "network.json").is_file())

    def get(self, name: str) -> Network | None:
        try:
            data = json.loads((self.root / name / "network.json").read_text())
        except (OSError, ValueError):
            return None
        return Network(**data)

    def require(self, name: str) -> Network:
        net = self.get(check_network_name(name))
        if net is None:
            raise UsageError(f"network {name} not found", "create it with: minicontainer network create " + name)
        return net

    def named(self, name: str, *, save: bool = True) -> Network:
        """What ``--network NAME`` (or ``network connect NAME``) means: ``bridge``
        is docker's default network, made on first use (``save=False``: not
        written, for --dry-run); any other name must exist."""
        return self.default(save=save) if name == DEFAULT_NETWORK else self.require(name)

    def define(self, name: str, *, subnet: str | None = None, gateway: str | None = None, internal: bool = False,
               save: bool = True) -> Network:
        """A new network (``save=False``: what it would be, for --dry-run)."""
        check_network_name(name)
        with (self.lock() if save else contextlib.nullcontext()):
            if self.get(name) is not None:
                raise UsageError(f"network {name} already exists", "choose another name, or use it as it is")
            others = [n for n in (self.get(x) for x in self.names()) if n is not None]
            net = self._make(name, subnet, gateway, internal, others)
            if save:
                d = self.root / name
                d.mkdir(mode=0o700)
                (d / "leases").mkdir(mode=0o700)
                tmp = d / "network.json.tmp"
                tmp.write_text(json.dumps(asdict(net), indent=1))
                tmp.rename(d / "network.json")
        return net

    def _make(self, name, subnet, gateway, internal, others) -> Network:
        if subnet is None:
            if gateway is not None:
                raise UsageError("--gateway needs --subnet", "give the subnet the gateway is in")
            subnet = choose_subnet([o.subnet for o in others], host_routes())
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as e:
            raise UsageError(f"invalid --subnet {subnet!r}: {e}", "use an IPv4 network, e.g. 10.89.0.0/24") from None
        if net.prefixlen > 29:
            raise UsageError(f"--subnet {subnet} is too small", "use at most /29: a gateway and a few containers")
        for o in others:
            if net.overlaps(ipaddress.ip_network(o.subnet)):
                raise UsageError(f"--subnet {subnet} overlaps network {o.name} ({o.subnet})", "choose another subnet")
        hosts = net.hosts()
        gw = ipaddress.IPv4Address(gateway) if gateway else next(hosts)
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise UsageError(f"--gateway {gateway} is not a host address of {subnet}", "choose one inside the subnet")
        nid = os.urandom(32).hex()
        from minicontainer.network.nat import BRIDGE_PREFIX, DEFAULT_BRIDGE  # (nat.py's isolation rules match them)

        bridge = DEFAULT_BRIDGE if name == DEFAULT_NETWORK else BRIDGE_PREFIX + nid[:10]  # IFNAMSIZ: at most 15
        return Network(name=name, id=nid, subnet=str(net), gateway=str(gw), bridge=bridge, internal=internal,
                       created=time.time())

    def default(self, *, save: bool = True) -> Network:
        """docker's ``bridge`` network, made on first use."""
        net = self.get(DEFAULT_NETWORK)
        if net is not None:
            return net
        try:
            return self.define(DEFAULT_NETWORK, save=save)
        except UsageError:  # made by a concurrent run meanwhile
            return self.require(DEFAULT_NETWORK)

    def remove(self, name: str) -> Network:
        """Forget a network (the caller removes its bridge); refused while in use."""
        with self.lock():
            net = self.require(name)
            users = [lease.name for lease in self._live_leases(name)]
            if users:
                raise ContainerError(f"network {name} is in use by {', '.join(users)}",
                                     "stop or remove those containers first")
            shutil.rmtree(self.root / name)
        return net

    # -- leases --------------------------------------------------------------------
    def leases(self, name: str) -> list[Lease]:
        d = self.root / name / "leases"
        out = []
        for p in sorted(d.iterdir()) if d.is_dir() else ():
            try:
                out.append(Lease(**json.loads(p.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def _live_leases(self, name: str) -> list[Lease]:
        return [lease for lease in self.leases(name) if lease.alive()]

    def lease(self, name: str, *, container: str, cname: str, veth: str, hosts: str, ip: str = "",
              aliases=(), hostname: str = "", extra_hosts=(), ifname: str = "eth0", holder: int = 0,
              only_once: bool = False) -> Lease:
        """Take the lowest free address of network ``name`` for ``container``
        (or ``ip``, refused if taken). ``holder``: the process whose life is
        the lease's (default: ours, the container's runtime); ``only_once``:
        refused if the container has a lease there already (`network connect`)."""
        with self.lock():
            net = self.require(name)
            d = self.root / name / "leases"
            for old in self.leases(name):
                if not old.alive():  # its runtime was killed: the address is free again
                    (d / old.ip).unlink(missing_ok=True)
            if only_once and any(lease.container == container for lease in self.leases(name)):
                raise ContainerError(f"container {cname} is already on network {name}",
                                     f"disconnect it first: minicontainer network disconnect {name} {cname}")
            taken = {lease.ip for lease in self.leases(name)} | {net.gateway}
            if ip:
                check_fixed_ip(net, ip)
                if ip in taken:
                    raise ContainerError(f"address {ip} is already in use on network {name}",
                                         "choose another --ip, or leave it out to get a free one")
                candidates = [ipaddress.ip_address(ip)]
            else:
                candidates = ipaddress.ip_network(net.subnet).hosts()
            for addr in candidates:
                if str(addr) in taken:
                    continue
                me = holder or os.getpid()
                lease = Lease(network=name, ip=str(addr), container=container, name=cname, veth=veth, hosts=hosts,
                              pid=me, start=proc_start_time(me), aliases=tuple(aliases), hostname=hostname,
                              extra_hosts=tuple(tuple(h) for h in extra_hosts), ifname=ifname)
                fd = os.open(d / str(addr), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(asdict(lease)))
                self._write_hosts(name)
                return lease
        raise ContainerError(f"network {name} ({net.subnet}) has no free address", "remove containers from it, "
                             "or create a network with a larger --subnet")

    def leases_of(self, container: str) -> list[Lease]:
        """The container's leases on every network."""
        return [lease for name in self.names() for lease in self.leases(name) if lease.container == container]

    def release(self, container: str, network: str | None = None) -> list[Lease]:
        """Remove the leases of ``container`` on every network (or on ``network``);
        its peers' hosts files lose it, and its own loses them."""
        if not self.root.is_dir():
            return []
        gone = []
        with self.lock():
            for name in self.names() if network is None else [network]:
                mine = [lease for lease in self.leases(name) if lease.container == container]
                for lease in mine:
                    (self.root / name / "leases" / lease.ip).unlink(missing_ok=True)
                    gone.append(lease)
                if mine:
                    self._write_hosts(name, also=mine)
        return gone

    def _write_hosts(self, name: str, also=()) -> None:
        """Every container on network ``name`` (and those of ``also``) gets its
        /etc/hosts rewritten: localhost, itself, its peers on each of its
        networks, its --add-host lines. Rewritten in place (the file is
        bind-mounted: a new inode would not be seen)."""
        everyone = [lease for n in self.names() for lease in self.leases(n) if lease.alive()]  # not the stale
        touched = {lease.container: lease.hosts for lease in [*self.leases(name), *also]}
        for container, path in touched.items():
            mine = sorted((lease for lease in everyone if lease.container == container), key=lambda x: x.ifname)
            if not mine:  # it left every network: only its --add-host lines stay
                mine_extra = next((lease.extra_hosts for lease in also if lease.container == container), ())
                write_hosts_file(path, hosts_lines([], [], mine_extra))
                continue
            nets = {lease.network for lease in mine}
            peers = [p for p in everyone if p.network in nets and p.container != container]
            write_hosts_file(path, hosts_lines(mine, peers, mine[0].extra_hosts))


def check_fixed_ip(net: Network, ip: str) -> None:
    """``--ip``: an address of the subnet that is not its network, broadcast or gateway address."""
    subnet = ipaddress.ip_network(net.subnet)
    addr = ipaddress.ip_address(ip)
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise UsageError(f"--ip {ip} is not a host address of network {net.name} ({net.subnet})",
                         "choose an address inside the subnet")
    if ip == net.gateway:
        raise UsageError(f"--ip {ip} is the gateway of network {net.name}", "choose another address")


LOCALHOST = ("127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback")


def hosts_lines(mine, peers, extra_hosts) -> list[str]:
    """An /etc/hosts (hosts(5)): docker's localhost lines and --add-host ones,
    then the container itself (its name, hostname and aliases), then each
    peer (name and aliases) once per address."""
    lines = list(LOCALHOST)
    lines += [f"{ip}\t{host}" for host, ip in extra_hosts]
    for lease in mine:
        lines.append(f"{lease.ip}\t" + " ".join(dict.fromkeys(filter(None, (lease.name, lease.hostname,
                                                                          *lease.aliases)))))
    seen = set()
    for p in peers:
        if (p.ip, p.network) not in seen:
            seen.add((p.ip, p.network))
            lines.append(f"{p.ip}\t" + " ".join(dict.fromkeys((p.name, *p.aliases))))
    return lines


def write_hosts_file(path: str, lines) -> None:
    """Rewrite ``path`` in place, never through a symlink; a missing directory
    (its container is being removed) is skipped."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    with os.fdopen(fd, "w") as f:
        f.truncate()
        f.write("\n".join(lines) + "\n")
