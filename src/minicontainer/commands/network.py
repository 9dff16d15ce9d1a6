"""``minicontainer network ...``: create, ls, inspect, rm, prune, connect, disconnect. Thin:
parse flags, call minicontainer.network, print. The bridge of a network is
made when its first container starts and removed by ``rm``/``prune`` (so
only those import pyroute2)."""

from __future__ import annotations

import json

import click

from minicontainer.commands._each import ExitOneGroup, for_each
from minicontainer.commands.completion import complete_containers, complete_networks
from minicontainer.commands._format import format_option, print_listing


def _store():
    from minicontainer.network.store import NetworkStore

    return NetworkStore()


@click.group(cls=ExitOneGroup, short_help="Manage networks.")
def network():
    """Manage bridge networks: create, ls, inspect, rm, prune, connect, disconnect.

    A container joins one with `run --network NAME` (or `bridge`, the default
    network, made on first use): a veth pair from a host bridge to its eth0,
    an address of the network's subnet, and an /etc/hosts naming its peers.
    """


@network.command("create", short_help="Create a bridge network.")
@click.option("--subnet", metavar="CIDR", help="e.g. 10.89.0.0/24 (default: a free one of 172.17-31.0.0/16).")
@click.option("--gateway", metavar="IP", help="The bridge's address (default: the subnet's first).")
@click.option("--internal", is_flag=True, help="No default route out of the network.")
@click.option("--driver", "-d", default="bridge", metavar="bridge", help="Only bridge.")
@click.argument("name")
def create(subnet, gateway, internal, driver, name):
    from minicontainer.errors import UsageError
    from minicontainer.network.store import RESERVED

    if driver != "bridge":
        raise UsageError(f"network driver {driver!r} is not supported", "use --driver bridge (the default)")
    if name in RESERVED:
        raise UsageError(f"network name {name} is reserved", "choose another name")
    net = _store().define(name, subnet=subnet, gateway=gateway, internal=internal)
    import shutil

    if shutil.which("nft") is None:  # the rules are made by the first container's run (network/nat.py)
        from minicontainer.errors import warn

        warn(f"no nft(8) on this host: network {name} gets no " + ("isolation rules (its containers still get no "
             "default route)" if internal else "outbound NAT (its containers reach each other and the host only)")
             + "; install nftables for them")
    click.echo(net.id)


NETWORK_COLUMNS = (("NETWORK ID", "ID"), ("NAME", "Name"), ("SUBNET", "Subnet"), ("BRIDGE", "Bridge"),
                   ("CONTAINERS", "Containers"))


@network.command("ls", short_help="List networks.")
@click.option("--quiet", "-q", is_flag=True, help="Only names.")
@format_option("{{.Name}} {{.Subnet}}")
def ls(quiet, fmt):
    """List networks: NETWORK ID, NAME, SUBNET, BRIDGE, CONTAINERS (how many use it now).

    \b
    Template fields: .ID .FullID .Name .Driver .Subnet .Gateway .Bridge .Internal .Containers
    """
    from dataclasses import asdict

    store = _store()
    nets = [net for net in map(store.get, store.names()) if net is not None]
    if quiet:
        for net in nets:
            click.echo(net.name)
        return
    users = {net.name: sum(1 for lease in store.leases(net.name) if lease.alive()) for net in nets}

    def fields(net) -> dict:
        return {"ID": net.id[:12], "FullID": net.id, "Name": net.name, "Driver": "bridge", "Subnet": net.subnet,
                "Gateway": net.gateway, "Bridge": net.bridge, "Internal": "true" if net.internal else "false",
                "Containers": str(users[net.name])}

    print_listing(fmt, nets, fields=fields, columns=NETWORK_COLUMNS,
                  as_json=lambda net: asdict(net) | {"containers": users[net.name]})


@network.command("inspect", short_help="Show networks as JSON.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_networks)
def inspect(names):
    from dataclasses import asdict

    store = _store()
    out = []
    for name in names:
        net = store.require(name)
        entry = asdict(net)
        entry["containers"] = [{"id": lease.container, "name": lease.name, "address": lease.ip,
                                "veth": lease.veth, "interface": lease.ifname, "aliases": list(lease.aliases)}
                               for lease in store.leases(name) if lease.alive()]
        out.append(entry)
    click.echo(json.dumps(out, indent=2))


@network.command("connect", short_help="Connect a container to a network.")
@click.option("--ip", metavar="IPV4", help="A fixed address (a user-defined network's).")
@click.option("--alias", multiple=True, metavar="NAME", help="Another name of it on this network (repeatable).")
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
@click.argument("name", shell_complete=complete_networks)
@click.argument("container", shell_complete=complete_containers)
def connect(ip, alias, explain, name, container):
    """Give CONTAINER one more interface (eth1, ...) on network NAME, with an
    address of it; the network's containers know it by name. The connection
    is remembered: a stopped CONTAINER gets it when it starts, and a started
    one again each time."""
    from minicontainer.container.netconnect import connect as do

    do(name, container, ip=ip, aliases=alias, explain=explain)


@network.command("disconnect", short_help="Disconnect a container from a network.")
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
@click.argument("name", shell_complete=complete_networks)
@click.argument("container", shell_complete=complete_containers)
def disconnect(explain, name, container):
    """Remove CONTAINER's interface on network NAME and release its address;
    a stopped CONTAINER forgets the connection."""
    from minicontainer.container.netconnect import disconnect as do

    do(name, container, explain=explain)


def _remove(store, name: str) -> None:
    """The network's files, its bridge and its nftables table (outbound NAT or
    --internal's isolation, network/nat.py), in the namespace we are in."""
    import shutil

    net = store.remove(name)
    from minicontainer.network import nat
    from minicontainer.syscalls.linux import Linux

    Linux().net_delete_link(net.bridge)
    if shutil.which("nft") is not None:
        from minicontainer.errors import MiniError, warn

        try:
            Linux().nft(nat.remove_commands(net.bridge))
        except MiniError as e:  # the network is gone already; say what is left
            warn(f"network {name} is removed, but its nftables table {nat.table_name(net.bridge)} may be left: {e}")


@network.command("rm", short_help="Remove networks (refused while a container uses one).")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_networks)
def rm(names):
    store = _store()
    for_each(names, lambda name: _remove(store, name))


@network.command("prune", short_help="Remove every network no container uses.")
@click.option("--force", "-f", is_flag=True, help="Accepted for docker compatibility (never asks).")
def prune(force):
    prune_networks(_store(), click.echo)


def prune_networks(store, removed) -> None:
    """Remove every network no container uses (``bridge``, the default,
    stays), calling ``removed(name)`` after each."""
    from minicontainer.network.store import DEFAULT_NETWORK

    for name in store.names():
        if name == DEFAULT_NETWORK:  # docker's prune keeps the default network too
            continue
        if any(lease.alive() for lease in store.leases(name)):
            continue
        _remove(store, name)
        removed(name)
