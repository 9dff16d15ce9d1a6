"""``minicontainer network ...``: create, ls, inspect, rm, prune, connect, disconnect. Thin:
parse flags, call minicontainer.network, print. The bridge of a network is
made when its first container starts and removed by ``rm``/``prune`` (so
only those import pyroute2)."""

from __future__ import annotations

import json

import click

from minicontainer.commands._each import ExitOneGroup, for_each


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
    click.echo(net.id)


@network.command("ls", short_help="List networks.")
@click.option("--quiet", "-q", is_flag=True, help="Only names.")
def ls(quiet):
    store = _store()
    if not quiet:
        click.echo(f"{'NETWORK ID':<14}{'NAME':<20}{'SUBNET':<20}{'BRIDGE':<17}CONTAINERS")
    for name in store.names():
        net = store.get(name)
        if net is None:
            continue
        if quiet:
            click.echo(net.name)
            continue
        users = sum(1 for lease in store.leases(name) if lease.alive())
        click.echo(f"{net.id[:12]:<14}{net.name:<20}{net.subnet:<20}{net.bridge:<17}{users}")


@network.command("inspect", short_help="Show networks as JSON.")
@click.argument("names", nargs=-1, required=True)
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


@network.command("connect", short_help="Connect a running container to a network.")
@click.option("--ip", metavar="IPV4", help="A fixed address (a user-defined network's).")
@click.option("--alias", multiple=True, metavar="NAME", help="Another name of it on this network (repeatable).")
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
@click.argument("name")
@click.argument("container")
def connect(ip, alias, explain, name, container):
    """Give the running CONTAINER one more interface (eth1, ...) on network
    NAME, with an address of it; the network's containers know it by name."""
    from minicontainer.container.netconnect import connect as do

    do(name, container, ip=ip, aliases=alias, explain=explain)


@network.command("disconnect", short_help="Disconnect a running container from a network.")
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
@click.argument("name")
@click.argument("container")
def disconnect(explain, name, container):
    """Remove CONTAINER's interface on network NAME and release its address."""
    from minicontainer.container.netconnect import disconnect as do

    do(name, container, explain=explain)


def _remove(store, name: str) -> None:
    net = store.remove(name)
    from minicontainer.syscalls.linux import Linux

    Linux().net_delete_link(net.bridge)


@network.command("rm", short_help="Remove networks (refused while a container uses one).")
@click.argument("names", nargs=-1, required=True)
def rm(names):
    store = _store()
    for_each(names, lambda name: _remove(store, name))


@network.command("prune", short_help="Remove every network no container uses.")
@click.option("--force", "-f", is_flag=True, help="Accepted for docker compatibility (never asks).")
def prune(force):
    from minicontainer.network.store import DEFAULT_NETWORK

    store = _store()
    for name in store.names():
        if name == DEFAULT_NETWORK:  # docker's prune keeps the default network too
            continue
        if any(lease.alive() for lease in store.leases(name)):
            continue
        _remove(store, name)
        click.echo(name)
