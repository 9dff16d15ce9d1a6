"""Bridge networks: what ``--network NAME`` and ``minicontainer network`` use.

- ``store.py``: the networks (a name, a subnet, a gateway, a bridge) and
  the address leases, as files under ``$MINICONTAINER_HOME/networks``; plain
  file work under one lock (flock(2)), no netlink.
- ``netlink.py``: the bridge, the veth pair and the container's eth0, made
  through pyroute2. It is imported only when a container joins a bridge
  network (pyroute2 takes a few hundred milliseconds to import), so
  ``--network none`` and ``--network host`` never load it.

A container on a network gets a network namespace made by the runtime
before the fork and held by an fd; the runtime configures it (veth end
renamed eth0, an address, a default route via the bridge) and the child
joins it with setns(2), like ``ip netns add`` + ``ip netns exec``.

Names: docker answers DNS queries for container names with a resolver
built into dockerd; minicontainer has no daemon, so it writes an
``/etc/hosts`` for each container on a network (itself and its peers),
rewritten in place whenever a peer comes or goes.
"""
