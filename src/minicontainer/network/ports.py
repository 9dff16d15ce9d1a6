"""Published ports (``-p``, ``-P``): what the user asked for, parsed. Pure.

docker's forms (docker run --publish)::

    -p 8080:80                 host port 8080 on every address -> the container's 80/tcp
    -p 127.0.0.1:8080:80/udp   only on 127.0.0.1, udp
    -p 127.0.0.1::80           on 127.0.0.1, a host port the kernel chooses
    -p 80                      every address, a host port the kernel chooses
    -P                         every port of the image's ExposedPorts, each to a chosen host port

A published port is a listening socket on the host (bound by the runtime
before the container starts, so a port already taken is an error then) and
a small proxy process that forwards each connection (tcp) or datagram (udp)
to the container's address: docker's userland proxy (docker-proxy), no
firewall rule. Ranges (``8000-8010:80-90``) and IPv6 host addresses are not
supported: a network here is IPv4 only.
"""

from __future__ import annotations

import ipaddress
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer.errors import ImageError, UsageError

PROTOCOLS = ("tcp", "udp")
_HINT = "use [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp], e.g. -p 8080:80 or -p 127.0.0.1:8080:80/udp"


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    proto: str = "tcp"
    host_ip: str = "0.0.0.0"  # docker's default: every IPv4 address of the host
    host_port: int = 0  # 0: one the kernel chooses when the socket is bound (bind(2) of port 0)

    @property
    def key(self) -> str:
        """docker's name for the container's side: ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"

    def host_side(self, port: int | None = None) -> str:
        return f"{self.host_ip}:{self.host_port if port is None else port}"

    def describe(self) -> str:
        host = f"{self.host_ip}:{self.host_port or '(a free port)'}"
        return f"{host} -> {self.key}"


def _port(text: str, what: str, spec: str, *, zero: bool = False) -> int:
    if not text.isdigit() or not (0 if zero else 1) <= int(text) <= 65535:
        if "-" in text:
            raise UsageError(f"invalid -p {spec!r}: port ranges are not supported", "publish each port with its own -p")
        raise UsageError(f"invalid -p {spec!r}: {what} {text!r} is not a port number (1-65535)", _HINT)
    return int(text)


def parse_publish(text: str) -> PortMapping:
    """One ``-p`` value."""
    rest, slash, proto = text.partition("/")
    if slash and proto not in PROTOCOLS:
        raise UsageError(f"invalid -p {text!r}: protocol {proto!r}", "use tcp (the default) or udp")
    proto = proto or "tcp"
    if rest.startswith("["):
        raise UsageError(f"invalid -p {text!r}: IPv6 host addresses are not supported", "give an IPv4 address")
    parts = rest.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise UsageError(f"invalid -p {text!r}", _HINT)
    host_ip, host_port = "0.0.0.0", "0"
    if len(parts) == 3:
        host_ip, host_port = parts[0] or "0.0.0.0", parts[1] or "0"
    elif len(parts) == 2:
        host_port = parts[0] or "0"
    try:
        host_ip = str(ipaddress.IPv4Address(host_ip))
    except ValueError:
        raise UsageError(f"invalid -p {text!r}: {host_ip!r} is not an IPv4 address", _HINT) from None
    return PortMapping(container_port=_port(parts[-1], "container port", text), proto=proto, host_ip=host_ip,
                       host_port=_port(host_port, "host port", text, zero=True))


def exposed(keys) -> tuple[PortMapping, ...]:
    """``-P``: an image's ExposedPorts (``"80/tcp"``, ``"53/udp"``, ``"8080"``), each to a chosen host port."""
    out = []
    for key in keys:
        port, _, proto = key.partition("/")
        proto = proto or "tcp"
        if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in PROTOCOLS:
            raise ImageError(f"image config: ExposedPorts has {key!r}, which -P cannot publish",
                             "publish the ports with -p instead", exit_code=125)
        out.append(PortMapping(container_port=int(port), proto=proto))
    return tuple(out)


def merge(explicit, publish_all_from=()) -> tuple[PortMapping, ...]:
    """The ports to publish: every -p, then (-P) each exposed port that no -p publishes already (docker)."""
    out = list(explicit)
    have = {m.key for m in out}
    for m in publish_all_from:
        if m.key not in have:
            out.append(m)
            have.add(m.key)
    return tuple(out)


def check_unique(ports) -> None:
    """Two -p for the same host address, port and protocol cannot both be bound."""
    seen: list[PortMapping] = []
    for m in ports:
        for n in seen:
            same_address = n.host_ip == m.host_ip or "0.0.0.0" in (n.host_ip, m.host_ip)  # 0.0.0.0 is all
            if m.host_port and (n.host_port, n.proto) == (m.host_port, m.proto) and same_address:
                raise UsageError(f"host port {m.host_ip}:{m.host_port}/{m.proto} is published twice",
                                 "give each -p its own host port")
        seen.append(m)


def docker_lines(published) -> list[str]:
    """``port NAME``'s lines, docker's: ``80/tcp -> 127.0.0.1:18080``."""
    return [f"{p['container_port']}/{p['proto']} -> {p['host_ip']}:{p['host_port']}" for p in published]


def ps_column(published) -> str:
    """ps's PORTS column, docker's: ``127.0.0.1:18080->80/tcp, 0.0.0.0:32768->53/udp``."""
    return ", ".join(f"{p['host_ip']}:{p['host_port']}->{p['container_port']}/{p['proto']}" for p in published)
