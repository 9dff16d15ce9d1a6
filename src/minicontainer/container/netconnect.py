"""``network connect`` and ``network disconnect`` of a container.

Connect gives the container one more interface (eth1, eth2 ...) on a
bridge network: the same steps as a run's network (plan.build_connect_plan),
on the network namespace of its PID 1, opened through a pidfd and checked
against the recorded start time, as ``exec`` does. The lease is held by the
container's runtime (its monitor, or a foreground ``run``), so it is released
with the others when the container ends (runtime.finish), and is stale if
that runtime is killed. Disconnect releases the lease and deletes the veth.
Both rewrite the /etc/hosts of the network's containers, and the
container's own.

A connection is remembered (networks.json in the container's state
directory, with its --ip and aliases), so a ``start`` or a restart makes it
again, in the run's plan (runtime.Runner.make_plan: the interfaces after
eth0, in the order they were connected), as docker does. ``connect`` of a
stopped container only remembers the connection, and ``disconnect`` of one
forgets it.
"""

from __future__ import annotations

import json
import os
import sys

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.state import StateStore, pid_alive
from minicontainer.errors import ContainerError, NotRootError


CONNECTED_FILE = "networks.json"  # in the container's state directory: [{"network", "ip", "aliases"}, ...]


def connected(state_dir) -> list[dict]:
    """The networks a container was connected to, in order ([] if none)."""
    try:
        data = json.loads((state_dir / CONNECTED_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("network"), str)] \
        if isinstance(data, list) else []


def attachment(net, cid: str, name: str, hosts: str, nftables: bool = False) -> P.NetworkAttachment:
    """The pieces of one more interface of container ``cid`` on ``net``, as
    connect names them (and start again): IFNAMSIZ allows 15 characters."""
    return P.NetworkAttachment(network=net, container=cid, name=name, veth="veth" + cid[:7] + net.id[:4],
                               peer="mcp" + cid[:8] + net.id[:4], hosts=hosts, nftables=nftables)


def _remember(store: StateStore, cid: str, network: str, entry: dict | None) -> None:
    """Add (``entry``) or drop (None) the connection to ``network``, under the container's state lock."""
    d = store.containers / cid
    with store._locked(cid):
        kept = [c for c in connected(d) if c["network"] != network] + ([entry] if entry else [])
        tmp = d / (CONNECTED_FILE + ".tmp")
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, d / CONNECTED_FILE)


def _network(name: str):
    from minicontainer.network.store import NetworkStore

    networks = NetworkStore()
    return networks, networks.named(name)


def _interpreter(plan: P.Plan, explain: bool, out, networks):
    from minicontainer.container.interpreter import Interpreter
    from minicontainer.syscalls.linux import Linux

    out = out if out is not None else sys.stderr

    def show(i, step):
        print("\n".join(S.render_step(i, step, plan.legend)), file=out)

    if explain:
        print("\n".join(plan.header()), file=out)
    return Interpreter(Linux(), explain=show if explain else None, networks=networks)


def _carry_out(interp, plan: P.Plan) -> None:
    try:
        interp.run(plan.steps)
    finally:
        interp.close_namespaces()


def connect(network: str, ref: str, *, ip: str | None = None, aliases=(), explain: bool = False, out=None) -> None:
    """``ip`` and ``aliases``: as run's --ip and --network-alias (checked the same way)."""
    from minicontainer.container.spec import build_spec

    names = build_spec("-", network=network, ip=ip, network_aliases=aliases)  # the checks of run's flags
    if os.geteuid() != 0:
        raise NotRootError("network connect needs root: it puts an interface on a host bridge", "run as root")
    store = StateStore()
    st = store.get(ref)
    # A live PID 1 (running, paused, or created and waiting for start) gets the interface now; a
    # stopped container only has the connection remembered, for its next start (as docker).
    live = st.status in ("running", "created") and pid_alive(st.pid, st.pid_start)
    from minicontainer.container.config import load_spec

    spec = load_spec(store.containers / st.id)
    shared = dict(spec.share_with).get("net")
    if "net" not in spec.namespaces or shared:
        mode = "host" if "net" not in spec.namespaces else f"container:{shared[:12]}"
        raise ContainerError(f"container {st.name} uses the network namespace of {mode}",
                             "connect the container whose namespace it shares, or one with a network of its own")
    if not spec.network:
        # as docker: its /etc/hosts is the image's, and nothing would keep it current
        raise ContainerError(f"container {st.name} runs with --network none", "run it on a network (--network NAME)")
    if live and not pid_alive(st.runtime_pid, st.runtime_start):
        raise ContainerError(f"container {st.name} has no runtime to hold the address",
                             "its monitor is gone; restart the container")
    networks, net = _network(network)
    if names.ip:
        from minicontainer.network.store import check_fixed_ip

        check_fixed_ip(net, names.ip)
    if live:
        mine = networks.leases_of(st.id)
        on = {lease.network for lease in mine}
    else:  # its own network and the remembered ones: what its start makes
        mine = []
        on = {spec.network} | {c["network"] for c in connected(store.containers / st.id)}
    if net.name in on:
        raise ContainerError(f"container {st.name} is already on network {net.name}",
                             f"disconnect it first: minicontainer network disconnect {net.name} {st.name}")
    entry = {"network": net.name, "ip": names.ip, "aliases": list(names.network_aliases)}
    if not live:
        _remember(store, st.id, net.name, entry)  # made when it starts (runtime.Runner._connected)
        return
    used = {lease.ifname for lease in mine}
    ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
    att = attachment(net, st.id, st.name, str(store.containers / st.id / "hosts"))
    plan = P.build_connect_plan(att, pid=st.pid, pid_start=st.pid_start, runtime_pid=st.runtime_pid, ifname=ifname,
                                default_route=not mine, hostname=st.hostname, ip=names.ip,
                                aliases=names.network_aliases)
    plan.legend = {"ID": st.id, "NETWORKS": str(networks.root)}
    interp = _interpreter(plan, explain, out, networks)
    try:
        _carry_out(interp, plan)
        _remember(store, st.id, net.name, entry)
    except BaseException:
        if interp.lease is None:
            raise  # refused before anything was made (the address is taken, it is on the network already)
        # nothing half-made is left: our lease (the only one it has there) and the veth, if it was made, go
        networks.release(st.id, network=net.name)
        try:
            interp.sc.net_delete_link(att.veth)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise


def disconnect(network: str, ref: str, *, explain: bool = False, out=None) -> None:
    if os.geteuid() != 0:
        raise NotRootError("network disconnect needs root: it deletes an interface", "run as root")
    store = StateStore()
    st = store.get(ref)
    if st.status != "running" and any(c["network"] == network for c in connected(store.containers / st.id)):
        # a stopped container: its next start does without it (even if the network is gone meanwhile)
        _remember(store, st.id, network, None)
        return
    networks, net = _network(network)
    lease = next((lease for lease in networks.leases(net.name) if lease.container == st.id), None)
    if lease is None or st.status != "running":
        raise ContainerError(f"container {st.name} is not connected to network {net.name}",
                             f"see its networks with: minicontainer inspect -f '{{{{json .NetworkSettings}}}}' {st.name}")
    plan = P.build_disconnect_plan(lease)
    plan.legend = {"ID": st.id, "NETWORKS": str(networks.root)}
    _carry_out(_interpreter(plan, explain, out, networks), plan)
    _remember(store, st.id, net.name, None)
