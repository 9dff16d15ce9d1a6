"""The netlink side of a bridge network, through pyroute2 (rtnetlink(7)).

Imported only when a container joins a bridge network, or a network is
removed: pyroute2 is slow to import. Every function here is called through
the syscall layer (syscalls/linux.py), so unit tests record them instead.

A socket belongs to the network namespace it was created in (netlink(7)),
so the work inside the container's namespace is done by a short thread that
first joins it with setns(2) (a thread's namespace is its own) and opens its
IPRoute there.
"""

from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from minicontainer.errors import SyscallError


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _fail(what: str, e: NetlinkError, name: str) -> SyscallError:
    return SyscallError(what, e.code or errno.EIO, name)


def ensure_bridge(name: str, address: str, prefixlen: int) -> None:
    """The bridge with the gateway address, up (ip-link(8) type bridge); kept if it exists."""
    with IPRoute() as ipr:
        try:
            if _index(ipr, name) is None:
                ipr.link("add", ifname=name, kind="bridge")
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # a concurrent run made it first
                raise _fail("creating the bridge", e, name) from None
        idx = _index(ipr, name)
        try:
            if not any(a.get("address") == address for a in ipr.get_addr(index=idx)):
                ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _fail(f"adding {address}/{prefixlen} to the bridge", e, name) from None
        ipr.link("set", index=idx, state="up")


def add_veth(host: str, peer: str, bridge: str, netns_fd: int) -> None:
    """A veth pair (veth(4)): ``host`` on the bridge and up, ``peer`` moved into the container's namespace."""
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=host, kind="veth", peer=peer)
        except NetlinkError as e:
            raise _fail("creating the veth pair", e, host) from None
        try:
            ipr.link("set", index=_index(ipr, peer), net_ns_fd=netns_fd)
            ipr.link("set", index=_index(ipr, host), master=_index(ipr, bridge), state="up")
        except NetlinkError as e:
            ipr.link("del", index=_index(ipr, host))  # takes the peer with it, wherever it is
            raise _fail("attaching the veth pair", e, host) from None


def configure_inside(peer: str, ifname: str, address: str, prefixlen: int, gateway: str | None) -> None:
    """In the container's namespace (the caller's thread joined it): rename, address, up, default route."""
    with IPRoute() as ipr:
        try:
            idx = _index(ipr, peer)
            ipr.link("set", index=idx, ifname=ifname)
            ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
            if gateway:
                ipr.route("add", dst="default", gateway=gateway)
        except NetlinkError as e:
            raise _fail(f"configuring {ifname} ({address}/{prefixlen})", e, peer) from None


def delete_link(name: str) -> bool:
    """Remove an interface if it is there (a veth takes its peer along, veth(4)). True if it was."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return False
            raise _fail("removing the interface", e, name) from None
        return True
