"""The plan's vocabulary: every step a run can take, as plain data.

Each step says *what* it does, *why* (with the man page), and the *shell*
command a person would type to do the same by hand. ``--dry-run`` prints a
plan made of these, ``--explain`` prints each step just before
``interpreter.Interpreter`` carries it out; one method there runs each step
type, so what you read is what runs. Paths written ``$ROOTFS/...`` are
inside the container's new root; they are reached through
``safepath.open_beneath``, so a symlink planted by the image can never
redirect a mount (reliability cases B11-B14).

A step's ``phase`` says which process runs it, and when:

- ``BEFORE_FORK``: the runtime, before it forks (user namespace, PID
  namespace, the fork itself);
- ``PARENT``: the runtime, after the fork, while the child waits (cgroup,
  release, wait for exec);
- ``CHILD``: the forked child, which becomes the container, up to and
  including pivot_root (namespaces, mounts, reading the image's users);
- ``INSIDE``: the child after pivot_root, with the image as ``/``: system
  calls only, no import and no file read (reliability lesson 3), ending in
  execve.

The planner (plan.py) orders the steps; security/steps.py and cgroups/
decide their own steps' contents.
"""

from __future__ import annotations

import shlex
from minicontainer.records import dataclass, field  # dataclasses without exec: steps import 37 -> 4 ms

from minicontainer.syscalls.flags import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    mount_flag_names,
)

BEFORE_FORK = "before-fork"
PARENT = "parent"
CHILD = "child"
INSIDE = "inside"
RUNTIME_PHASES = (BEFORE_FORK, PARENT)

_UNSHARE_LONG = {"mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net", "pid": "--pid", "cgroup": "--cgroup"}
_NS_FLAG = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "cgroup": CLONE_NEWCGROUP,
}
_NS_WHY = {
    "mnt": "its own mount table, so mounts made for the container never reach the host",
    "uts": "its own hostname",
    "ipc": "its own System V IPC and POSIX message queues",
    "net": "its own network stack: only a loopback interface, no route out",
    "pid": "its own process numbers: the command becomes PID 1 and sees no host process",
    "cgroup": "its own view of /proc/self/cgroup, rooted at its cgroup",
}


@dataclass(frozen=True)
class Step:
    """One thing a run does. ``phase`` says which process does it, and when."""

    phase = CHILD

    def what(self) -> str:  # one line
        raise NotImplementedError

    def why(self) -> str:
        return ""

    def shell(self) -> str:
        return ""


# --- before the fork: the runtime ----------------------------------------


@dataclass(frozen=True)
class UnsharePid(Step):
    """unshare(CLONE_NEWPID) in the runtime: only its *next child* enters the new
    namespace, as PID 1. Doing it before fork avoids an extra process that
    would otherwise stay around as the namespace's parent."""

    phase = BEFORE_FORK

    def what(self) -> str:
        return "create a new PID namespace for the next child"

    def why(self) -> str:
        return "pid_namespaces(7): the first process forked into it is PID 1 and sees only its own descendants"

    def shell(self) -> str:
        return "unshare --pid --fork ...   # (the --fork is the fork below)"


@dataclass(frozen=True)
class Fork(Step):
    """The runtime forks; from here the runtime runs the PARENT steps and the
    child the CHILD and INSIDE steps of the same plan."""

    phase = BEFORE_FORK
    keep_fds: int = 0  # --preserve-fds N (minicontainer-runc): the engine's fds 3..3+N-1 stay open

    def what(self) -> str:
        if self.keep_fds:
            return (f"fork the container's first process; it closes every fd it inherited but its pipes "
                    f"and the engine's fds 3-{2 + self.keep_fds}")
        return "fork the container's first process; it closes every fd it inherited but its pipes"

    def why(self) -> str:
        return ("the child must be in its cgroup before it runs anything of the container's (no moment without "
                "limits); an fd left open on a host directory would let the container reach the host (CVE-2024-21626)")


# --- before the fork: a bridge network (network/) --------------------------


@dataclass(frozen=True)
class LeaseAddress(Step):
    """The address is chosen when this step runs, under the network's lock;
    the steps after it use the one it got (interpreter: ``self.lease``)."""

    phase = BEFORE_FORK
    network: str = ""
    subnet: str = ""
    container: str = ""  # id
    name: str = ""  # the container's name: the one its peers' /etc/hosts give it
    veth: str = ""
    hosts: str = ""  # its /etc/hosts file on the host
    ip: str = ""  # --ip: this address, refused if taken ("" the lowest free one)
    aliases: tuple[str, ...] = ()  # --network-alias: its peers know it by these names too
    hostname: str = ""  # its own line of its /etc/hosts
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host NAME:IP
    ifname: str = "eth0"  # `network connect`: eth1, eth2 ...
    # `network connect`: the container's runtime, whose life is the lease's
    # (0: ours); and then a second lease on the same network is refused.
    holder: int = 0

    def what(self) -> str:
        which = f"the address {self.ip}" if self.ip else "a free address"
        names = f" (also known as {', '.join(self.aliases)})" if self.aliases else ""
        return (f"lease {which} of network {self.network} ({self.subnet}){names} and write the /etc/hosts of its "
                "containers")

    def why(self) -> str:
        return ("a lease file made with O_EXCL under the network's lock (flock(2)): concurrent runs never get the "
                "same address; each container's /etc/hosts names itself and its peers (docker's embedded DNS needs "
                "a daemon; these files are rewritten in place as peers come and go)")

    def shell(self) -> str:
        return f"flock $NETWORKS/.lock touch $NETWORKS/{self.network}/leases/$IP"


@dataclass(frozen=True)
class WriteFile(Step):
    """A file of the container's state directory that is bound into it
    (/etc/resolv.conf, an /etc/hosts without a network), written by the
    runtime before the fork. Rewritten in place: a bind mount follows the inode."""

    phase = BEFORE_FORK
    path: str = ""  # on the host
    target: str = ""  # where it appears in the container
    content: str = ""
    reason: str = ""

    def what(self) -> str:
        lines = self.content.count("\n")
        return f"write the container's {self.target} ({lines} line{'s' if lines != 1 else ''}) to {self.path}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        return f"printf %s {shlex.quote(self.content)} > {self.path}"


@dataclass(frozen=True)
class ReleaseLease(Step):
    """``network disconnect``: the container's lease on one network goes;
    its peers' /etc/hosts lose it and its own loses them."""

    phase = BEFORE_FORK
    network: str = ""
    container: str = ""  # id
    ip: str = ""

    def what(self) -> str:
        return f"release the address {self.ip} on network {self.network} and rewrite the /etc/hosts of its containers"

    def why(self) -> str:
        return "the lease file goes under the network's lock (flock(2)); the address is free for the next container"

    def shell(self) -> str:
        return f"flock $NETWORKS/.lock rm $NETWORKS/{self.network}/leases/{self.ip}"


@dataclass(frozen=True)
class DeleteLink(Step):
    phase = BEFORE_FORK
    name: str = ""  # the host end of a veth pair

    def what(self) -> str:
        return f"delete the veth pair {self.name} (its end inside the container goes with it)"

    def why(self) -> str:
        return "veth(4): deleting either end of a pair deletes both"

    def shell(self) -> str:
        return f"ip link del {self.name}"


@dataclass(frozen=True)
class EnsureBridge(Step):
    phase = BEFORE_FORK
    bridge: str = ""
    gateway: str = ""
    prefixlen: int = 16

    def what(self) -> str:
        return f"make sure the bridge {self.bridge} exists with the gateway address {self.gateway}/{self.prefixlen}, up"

    def why(self) -> str:
        return ("ip-link(8) type bridge: a virtual switch on the host that the containers' veth ends plug into; "
                "its own address is the containers' gateway (kept until `network rm`, as docker)")

    def shell(self) -> str:
        return (f"ip link add {self.bridge} type bridge; ip addr add {self.gateway}/{self.prefixlen} dev {self.bridge}; "
                f"ip link set {self.bridge} up")


@dataclass(frozen=True)
class CreateNetns(Step):
    phase = BEFORE_FORK

    def what(self) -> str:
        return "create the container's network namespace, held open by an fd of the runtime"

    def why(self) -> str:
        return ("network_namespaces(7): made before the fork so the runtime can configure it while the child "
                "waits; the child joins it with setns(2) instead of unsharing one")

    def shell(self) -> str:
        return "ip netns add $ID"


@dataclass(frozen=True)
class AddVeth(Step):
    phase = BEFORE_FORK
    host: str = ""
    peer: str = ""
    bridge: str = ""

    def what(self) -> str:
        return f"create the veth pair {self.host} <-> {self.peer}: {self.host} on {self.bridge}, {self.peer} into the container"

    def why(self) -> str:
        return ("veth(4): a pair of connected interfaces, one in each namespace; what the container sends on its "
                "end comes out of the host end, on the bridge. It goes away with the container's namespace")

    def shell(self) -> str:
        return (f"ip link add {self.host} type veth peer name {self.peer} netns $ID && "
                f"ip link set {self.host} master {self.bridge} up")


@dataclass(frozen=True)
class ConfigureEth(Step):
    phase = BEFORE_FORK
    peer: str = ""
    ifname: str = "eth0"
    prefixlen: int = 16
    gateway: str = ""  # "" for an --internal network: no default route
    no_route: str = "--internal"  # why there is no default route (`network connect`: it has one already)

    def what(self) -> str:
        route = f", default route via {self.gateway}" if self.gateway else f", no default route ({self.no_route})"
        return f"in the container's namespace: rename {self.peer} to {self.ifname}, give it the leased address/{self.prefixlen}{route}"

    def why(self) -> str:
        return ("rtnetlink(7) from a thread that joined the namespace (a netlink socket works in the namespace "
                "it was opened in)")

    def shell(self) -> str:
        out = (f"ip -n $ID link set {self.peer} name {self.ifname} && ip -n $ID addr add $IP/{self.prefixlen} dev "
               f"{self.ifname} && ip -n $ID link set {self.ifname} up")
        return out + (f" && ip -n $ID route add default via {self.gateway}" if self.gateway else "")


@dataclass(frozen=True)
class BindPorts(Step):
    """-p/-P: the listening sockets, bound before anything else of the
    container exists, so a port already taken refuses the run at once.
    ``ports`` are network.ports.PortMapping; StartPortProxy hands the
    sockets to the proxy."""

    phase = BEFORE_FORK
    ports: tuple = ()

    def what(self) -> str:
        return "bind the published ports on the host: " + ", ".join(m.describe() for m in self.ports)

    def why(self) -> str:
        return ("socket(7), bind(2), listen(2) in the runtime, before the container starts: a port another "
                "program holds is a clear error now (EADDRINUSE), not a proxy failing later; port 0 is one the "
                "kernel chooses (ip(7))")

    def shell(self) -> str:
        return "; ".join(f"ss -l{'t' if m.proto == 'tcp' else 'u'}n 'sport = :{m.host_port}'"
                         for m in self.ports if m.host_port)


@dataclass(frozen=True)
class SetupNat(Step):
    """A network's nftables table (network/nat.py): masquerade out, or
    --internal's isolation; applied again by each run (one transaction)."""

    phase = BEFORE_FORK
    network: str = ""
    bridge: str = ""
    subnet: str = ""
    internal: bool = False
    commands: tuple[str, ...] = ()  # nft commands, one transaction

    def what(self) -> str:
        if self.internal:
            return f"nftables: drop what would leave or enter network {self.network} (--internal) through the host"
        return f"nftables: masquerade what {self.network}'s containers ({self.subnet}) send out of the host"

    def why(self) -> str:
        if self.internal:
            return ("an --internal network reaches only itself: no default route in its containers, and these "
                    "forward rules keep it so (docker's isolation rules); a table of its own, removed by `network rm`")
        return ("outbound NAT, docker's MASQUERADE rule: packets leave with the host's address and conntrack maps "
                "the answers back (nft(8)); a table of its own per network, removed by `network rm`")

    def shell(self) -> str:
        from minicontainer.network.nat import shell

        return shell(list(self.commands))


@dataclass(frozen=True)
class EnableForwarding(Step):
    phase = BEFORE_FORK

    def what(self) -> str:
        return "turn on IPv4 forwarding (net.ipv4.ip_forward=1) in the namespace the bridge is in"

    def why(self) -> str:
        return ("routing between the bridge and the host's other interfaces is off by default; docker turns it on "
                "too. It is a setting of this network namespace (network_namespaces(7)), not of every one")

    def shell(self) -> str:
        return "sysctl -w net.ipv4.ip_forward=1"
# --- volumes (volumes.py): made before the fork, filled and mounted by the child --


@dataclass(frozen=True)
class EnsureVolume(Step):
    """A named or anonymous volume, created now if it does not exist yet
    (docker creates a volume on first use)."""

    phase = BEFORE_FORK
    name: str = ""
    path: str = ""  # its directory in the store (volume.json, _data/)
    anonymous: bool = False
    container: str = ""  # id: a volume made for a container that never starts is removed with it

    def what(self) -> str:
        kind = "anonymous volume" if self.anonymous else "volume"
        return f"use {kind} {self.name} at {self.path}, created now if it does not exist"

    def why(self) -> str:
        return ("a volume is a directory of the store that outlives the container; it is made whole under a "
                "temporary name and renamed into place under the store's lock (flock(2), rename(2)), so a "
                "concurrent volume rm or a second run never sees half of one")

    def shell(self) -> str:
        return f"mkdir -p -m 0755 {self.path}/_data"


@dataclass(frozen=True)
class FillVolume(Step):
    """Docker's rule: a new volume gets the image's files at its mount point, once."""

    name: str = ""
    target: str = ""  # inside the container
    path: str = ""  # the volume's directory in the store

    def what(self) -> str:
        return f"if volume {self.name} is new, copy the image's {self.target} into it"

    def why(self) -> str:
        return ("docker fills a new volume from the image (a database image's initial files); the image's "
                "directory is reached through the new root without following a symlink, and copied with owners "
                "and modes, links as links, under the volume's flock(2) so it happens once")

    def shell(self) -> str:
        return f"[ -e {self.path}/fresh ] && cp -a $ROOTFS{self.target}/. {self.path}/_data/ && rm {self.path}/fresh"


@dataclass(frozen=True)
class SetPropagation(Step):
    """``--mount type=bind,bind-propagation=...`` (mount_namespaces(7))."""

    target: str = ""
    propagation: str = "rprivate"

    @property
    def flags(self) -> int:
        kind = MS_SLAVE if self.propagation.endswith("slave") else MS_PRIVATE
        return kind | (MS_REC if self.propagation.startswith("r") else 0)

    def what(self) -> str:
        return f"make {self.target} {self.propagation}"

    def why(self) -> str:
        if "slave" in self.propagation:
            return ("bind-propagation=" + self.propagation + ": mounts made later on the host below the source "
                    "appear in the container, none of the container's reach the host")
        return "bind-propagation=" + self.propagation + ": no mount event crosses between host and container"

    def shell(self) -> str:
        return f"mount --make-{self.propagation} $ROOTFS{self.target}"


# --- after the fork: the runtime ------------------------------------------


@dataclass(frozen=True)
class StartPortProxy(Step):
    """The published ports' proxy (network/proxy.py), a process of its own
    that gets the sockets BindPorts made and forwards to the container's
    leased address. Stopped when the container ends (runtime.finish), and
    by the kernel if the runtime dies first (PR_SET_PDEATHSIG, prctl(2))."""

    phase = PARENT
    ports: tuple = ()

    def what(self) -> str:
        return "start the port proxy: " + ", ".join(f"{m.host_ip}:{m.host_port or '$PORT'} -> $IP:{m.key}"
                                                     for m in self.ports)

    def why(self) -> str:
        return ("docker's userland proxy (docker-proxy): each connection (tcp) or datagram (udp) to the host port is "
                "copied to the container's address on its network, so no firewall rule is needed; it is this "
                "container's, and stops with it")

    def shell(self) -> str:
        return "; ".join(f"socat {m.proto.upper()}-LISTEN:{m.host_port or '$PORT'},bind={m.host_ip},fork "
                         f"{m.proto.upper()}:$IP:{m.container_port} &" for m in self.ports)


@dataclass(frozen=True)
class CgroupStep(Step):
    """A cgroup operation the runtime does for the child.

    ``write`` is a ``cgroups.base.CgroupWrite`` (file, value, why, the file's
    name in the other cgroup version); cgroups/ decides them, this step only
    shows and carries them.
    """

    phase = PARENT
    write: object = None

    @property
    def stage(self) -> str:
        return self.write.stage  # create | limit | join

    def what(self) -> str:
        return self.write.describe()

    def why(self) -> str:
        return self.write.why or "cgroups(7)"

    def shell(self) -> str:
        return self.write.shell()


@dataclass(frozen=True)
class ReleaseChild(Step):
    phase = PARENT
    keep_open: bool = False  # the child waits on the pipe once more (for the runtime's hooks)
    reason: str = ""

    def what(self) -> str:
        return "release the child: write one byte to the sync pipe it waits on"

    def why(self) -> str:
        return self.reason or "everything the runtime does for the child (its cgroup) is done; pipe(7)"


@dataclass(frozen=True)
class AwaitMounted(Step):
    """The runtime waits until the child has its mounts (the OCI hooks that
    run in the runtime's namespaces, before pivot_root)."""

    phase = PARENT

    def what(self) -> str:
        return "wait until the child reports its mounts are made (a marker on its error pipe, or its error)"

    def why(self) -> str:
        return ("runtime-spec: prestart and createRuntime hooks run after the container's namespaces and mounts "
                "exist, before pivot_root, while the container waits")


@dataclass(frozen=True)
class RunHooks(Step):
    """OCI hooks of one kind, in order: each program gets the state JSON on
    stdin, only its own env, and is killed after its timeout."""

    phase: str = PARENT  # prestart/createRuntime/poststart/poststop: the runtime; the others: the container
    kind: str = ""
    hooks: tuple = ()  # spec.Hook
    state: str = ""  # the state JSON without pid and status
    status: str = "creating"  # the status the hooks are told
    fatal: bool = True  # poststart, poststop: a failure is only a warning (runtime-spec config.md)

    def what(self) -> str:
        where = "in the runtime's namespaces" if self.phase in RUNTIME_PHASES else "in the container's namespaces"
        paths = ", ".join(h.path for h in self.hooks)
        return f"run the {self.kind} hook{'s' if len(self.hooks) != 1 else ''} {where}: {paths}"

    def why(self) -> str:
        why = {
            "prestart": "the engine's preparations that need the container's pid and mounts (deprecated "
                        "name of createRuntime)",
            "createRuntime": "the engine's preparations, with the container's namespaces made but its root not yet "
                             "changed",
            "createContainer": "in the container's mount namespace, before pivot_root: the hook still resolves in the "
                               "runtime's filesystem and can mount into the root",
            "startContainer": "inside the container, with its own root and privileges, just before the command",
            "poststart": "the command runs; a failure is a warning",
            "poststop": "the container is deleted; a failure is a warning",
        }.get(self.kind, "")
        return f"runtime-spec config.md, hooks: {why}; state JSON on stdin ({self.status})"

    def shell(self) -> str:
        parts = []
        for h in self.hooks:
            env = "".join(f" {shlex.quote(e)}" for e in h.env)
            parts.append(f'echo "$STATE" | env -i{env} {shlex.join((h.path, *h.args[1:]))}')
        return "; ".join(parts)


@dataclass(frozen=True)
class AwaitExec(Step):
    phase = PARENT

    def what(self) -> str:
        return "wait until the child execs: its error pipe closes on execve, or carries the error"

    def why(self) -> str:
        return "the pipe is close-on-exec (O_CLOEXEC, open(2)), so EOF without data means the command is running"


# --- the child, before its root changes -----------------------------------


@dataclass(frozen=True)
class DieWithRuntime(Step):
    def what(self) -> str:
        return "die with the runtime (parent-death signal SIGKILL)"

    def why(self) -> str:
        return ("prctl(2) PR_SET_PDEATHSIG: the container cannot outlive the runtime (reliability case F37); "
                "if the runtime died before this, the wait on the sync pipe below reads EOF and the child exits")


@dataclass(frozen=True)
class AwaitRelease(Step):
    again: bool = False  # the second wait: for the runtime's hooks, after ReportMounted
    keep_open: bool = False  # a second wait follows
    after_setup: bool = False  # the setup that needs no cgroup came first, while the runtime wrote them

    def what(self) -> str:
        if self.again:
            return "wait on the sync pipe again, until the runtime's hooks are done"
        return "wait on the sync pipe until the runtime has put this process in its cgroups"

    def why(self) -> str:
        if self.again:
            return "the runtime's hooks may still change the mounts; a failed hook closes the pipe (the child exits)"
        if self.after_setup:
            return ("the namespaces and mounts above need no cgroup, so they were made while the runtime wrote "
                    "the cgroups (the first cgroup.procs write waits ~10-17 ms for the kernel); what follows does: "
                    "the cgroup namespace, /sys/fs/cgroup, and the command")
        return "nothing of the container's runs before the runtime has put it in its cgroups"


@dataclass(frozen=True)
class ReadHostPid(Step):
    def what(self) -> str:
        return "read our pid as the host sees it: readlink /proc/self, while /proc is still the host's"

    def why(self) -> str:
        return "the hooks' state JSON carries the container's pid in the runtime's namespace; getpid() says 1 here"

    def shell(self) -> str:
        return "readlink /proc/self"


@dataclass(frozen=True)
class ReportMounted(Step):
    def what(self) -> str:
        return "tell the runtime the mounts are made (a marker on the error pipe)"

    def why(self) -> str:
        return "its prestart and createRuntime hooks run now, while the child waits (runtime-spec runtime.md)"


@dataclass(frozen=True)
class Unshare(Step):
    namespaces: tuple[str, ...] = ()

    @property
    def flags(self) -> int:
        out = 0
        for ns in self.namespaces:
            out |= _NS_FLAG[ns]
        return out

    def what(self) -> str:
        return "unshare namespaces: " + ", ".join(self.namespaces)

    def why(self) -> str:
        return "; ".join(f"{ns}: {_NS_WHY[ns]}" for ns in self.namespaces) + " (namespaces(7), unshare(2))"

    def shell(self) -> str:
        return "unshare " + " ".join(_UNSHARE_LONG[ns] for ns in self.namespaces)


@dataclass(frozen=True)
class LoopbackUp(Step):
    """A new network namespace has a loopback interface, but it is down."""

    def what(self) -> str:
        return "bring the loopback interface lo up"

    def why(self) -> str:
        return ("network_namespaces(7): a new namespace's lo starts down, so even 127.0.0.1 would be unreachable; "
                "set IFF_UP with the SIOCSIFFLAGS ioctl (netdevice(7)), as docker's --network none does")

    def shell(self) -> str:
        return "ip link set lo up"


@dataclass(frozen=True)
class MakeMountsPrivate(Step):
    # a bind with bind-propagation=(r)slave: the host's events still come in, none go out
    slave: bool = False

    @property
    def flags(self) -> int:
        return (MS_SLAVE if self.slave else MS_PRIVATE) | MS_REC

    def what(self) -> str:
        if self.slave:
            return "make every mount a slave of the host's (recursively)"
        return "make every mount private (recursively)"

    def why(self) -> str:
        if self.slave:
            return ("mount_namespaces(7): a --mount asks for slave propagation, so the host's mount events still "
                    "reach the container, and MS_SLAVE|MS_REC stops the container's from reaching the host; the run's "
                    "other binds are made rprivate once mounted")
        return (
            "mount_namespaces(7): a new mount namespace copies the host's shared mounts, and "
            "mount events would still propagate both ways; MS_PRIVATE|MS_REC cuts that"
        )

    def shell(self) -> str:
        return "mount --make-rslave /" if self.slave else "mount --make-rprivate /"


@dataclass(frozen=True)
class MountRootfs(Step):
    """The container's root: an overlay (image as lower layer), or a bind mount.

    The overlay is mounted from inside the container's layer directory with
    relative option paths (``lowerdir=lower`` where ``lower`` is a symlink to
    the image), so the container's /proc/self/mountinfo shows no host paths.
    """

    target: str = ""  # <layer>/merged
    layer: str = ""  # the container's directory: lower -> image, upper/, work/, merged/
    lower: str = ""  # the image rootfs (for the bind mode and for reading)
    readonly: bool = False
    mode: str = "overlay"  # overlay | bind
    # False only for --read-only when no mountpoint must be made in the image:
    # then there is no upper layer at all. Otherwise the root gets one, and
    # --read-only remounts it read-only after the mountpoints exist.
    writable: bool = True
    # A layered image's layers below ``lower``, top first: linked as lower-1,
    # lower-2 ... in the layer directory and stacked after ``lower``
    # (overlayfs.rst, "Multiple lower layers": the leftmost is the top).
    lower_stack: tuple[str, ...] = ()
    # --userns as root: the layer directory and the image are reached through
    # fds opened before the user namespace (OpenHostPaths), from which root
    # inside could not search the store's directories.
    opened: bool = False
    # ... and the image's layers are idmapped mounts (ReceiveIdmappedLayers),
    # attached on idmapped/0, idmapped/1 ... of the layer directory
    idmapped: bool = False

    @property
    def lower_names(self) -> list[str]:
        return ["lower"] + [f"lower-{i}" for i in range(1, len(self.lower_stack) + 1)]

    @property
    def idmapped_names(self) -> list[str]:
        """Where each idmapped layer is attached, top first, in the layer directory."""
        return [f"idmapped/{i}" for i in range(1 + len(self.lower_stack))]

    @property
    def host_paths(self) -> list[str]:
        """What OpenHostPaths opens for this step: the layer directory, then each lower layer."""
        if self.mode != "overlay":
            return [self.layer, self.lower]
        if self.idmapped:
            return [self.layer]
        return [self.layer] + [f"{self.layer}/{name}" for name in self.lower_names]

    def overlay_options_with(self, lowers: list[str]) -> str:
        """The mount options with ``lowers`` for the lower layers (names in the layer directory, or fd paths)."""
        options = self.overlay_options
        return options.replace("lowerdir=" + ":".join(self.lower_names), "lowerdir=" + ":".join(lowers), 1)

    @property
    def overlay_options(self) -> str:
        lowers = ":".join(self.lower_names)
        if not self.writable:
            # overlayfs wants two lower layers when there is no upper one; the
            # last is an empty directory, so the root is the image, read-only.
            return f"lowerdir={lowers}:empty"
        return f"lowerdir={lowers},upperdir=upper,workdir=work"

    def what(self) -> str:
        if self.mode == "overlay":
            kind = "a read-only overlay" if not self.writable else "an overlay"
            layers = f" ({len(self.lower_stack) + 1} layers)" if self.lower_stack else ""
            idmapped = ", its layers attached idmapped" if self.idmapped else ""
            return f"mount the root filesystem: {kind} of the image{layers} on {self.target}{idmapped}"
        return f"bind-mount {self.lower} on {self.target} as the root filesystem" + (" (read-only)" if self.readonly else "")

    def why(self) -> str:
        if self.mode == "overlay":
            stack = (" (a layered image: lower is its top layer, lower-1, lower-2 ... the ones below, each an "
                     "image layer's directory, shared read-only with every image that has it)") if self.lower_stack else ""
            return (
                "overlayfs: reads come from the image (lower, a link to it)" + stack + ", writes go to this "
                "container's own upper directory, so the image is never modified and every container starts clean"
            )
        return "pivot_root(2) needs the new root to be a mount point; a bind mount of the directory makes it one"

    def shell(self) -> str:
        via = "   # lower, the image, through the fd opened before the user namespace" if self.opened else ""
        if self.mode == "overlay" and self.idmapped:
            options = self.overlay_options_with(self.idmapped_names)
            return f"cd {self.layer} && mount -t overlay overlay -o {options} merged   # after move_mount of each layer"
        if self.mode == "overlay":
            return f"cd {self.layer} && mount -t overlay overlay -o {self.overlay_options} merged{via}"
        return f"mount --rbind {self.lower} {self.target}{via}"


@dataclass(frozen=True)
class Mount(Step):
    """Mount a filesystem on a path inside the new root (never through a symlink)."""

    target: str = ""  # inside the container
    fstype: str | None = None
    source: str = "none"
    flags: int = 0
    data: str | None = None
    reason: str = ""
    create: str = "dir"  # dir | file | no : make the mountpoint if missing
    host_source: bool = False  # source is a host path (bind mounts)

    def what(self) -> str:
        if self.flags & MS_BIND:
            return f"bind-mount {self.source} on {self.target}" + (" read-only" if self.flags & MS_RDONLY else "")
        return f"mount {self.fstype} on {self.target}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        opts = [n for n in mount_flag_names(self.flags) if n not in ("bind", "rec")]
        if self.data:
            opts.append(self.data)
        o = f" -o {','.join(opts)}" if opts else ""
        if self.flags & MS_BIND:
            kind = "--rbind" if self.flags & MS_REC else "--bind"
            return f"mount {kind} {self.source} $ROOTFS{self.target}{o}"
        return f"mount -t {self.fstype} {self.source} $ROOTFS{self.target}{o}"


@dataclass(frozen=True)
class RemountReadonly(Step):
    """A bind mount ignores MS_RDONLY on the first call: a second, remount call sets it (mount(2))."""

    target: str = ""  # inside the container; "" = the root itself
    reason: str = ""
    flags: int = 0  # more MS_* flags to set with it (nosuid, nodev, noexec)

    def what(self) -> str:
        return f"make {self.target or '/'} read-only"

    def why(self) -> str:
        return self.reason or "mount(2): MS_RDONLY is applied to a bind mount by a separate MS_REMOUNT"

    def shell(self) -> str:
        more = "".join("," + n for n in mount_flag_names(self.flags))
        return f"mount -o remount,bind,ro{more} $ROOTFS{self.target}"


@dataclass(frozen=True)
class ReadonlyRecursive(Step):
    """A bind mount and every mount below it, read-only in one call.

    A bind of a host tree (``-v /:/host:ro``, the host's ``/sys``) brings the
    mounts under it along (MS_REC), and a remount changes only the top one:
    ``/host/proc`` would stay writable, and with it the host's
    ``/proc/sys/kernel/core_pattern``. mount_setattr(2) with AT_RECURSIVE
    (Linux 5.12) sets MOUNT_ATTR_RDONLY on the whole tree at once. On an
    older kernel a tree with nothing mounted below is remounted as before,
    and one with mounts below is refused, never left half writable.
    """

    target: str = ""  # inside the container; "" = the root itself
    reason: str = ""
    # what to do instead, when an old kernel refuses it
    old_kernel_hint: str = "bind a path with nothing mounted below it, or drop :ro"

    def what(self) -> str:
        return f"make {self.target or '/'} and every mount below it read-only"

    def why(self) -> str:
        return ((self.reason + "; ") if self.reason else "") + (
            "mount_setattr(2) MOUNT_ATTR_RDONLY with AT_RECURSIVE: a remount would change only the top mount "
            "and leave the ones below it writable")

    def shell(self) -> str:
        t = f"$ROOTFS{self.target}"
        return (f"for m in $(findmnt -Rlno TARGET {t}); do mount -o remount,bind,ro $m; done   "
                "# one call: mount_setattr(2) AT_RECURSIVE")


@dataclass(frozen=True)
class RemountFlags(Step):
    """Like RemountReadonly, for the other per-mount flags (nosuid, nodev,
    noexec, ro) an OCI bundle puts on a bind mount: the first bind call
    ignores them too (mount(2))."""

    target: str = ""  # inside the container
    flags: int = 0
    reason: str = ""

    def what(self) -> str:
        return f"remount {self.target} with " + ",".join(mount_flag_names(self.flags))

    def why(self) -> str:
        return self.reason or "mount(2): a bind mount's flags are set by a separate MS_REMOUNT"

    def shell(self) -> str:
        return f"mount -o remount,bind,{','.join(mount_flag_names(self.flags))} $ROOTFS{self.target}"


@dataclass(frozen=True)
class SetSysctl(Step):
    """Write one namespaced kernel parameter (an OCI bundle's linux.sysctl),
    through the container's own fresh /proc, before /proc/sys is made read-only."""

    key: str = ""  # e.g. net.ipv4.ping_group_range
    value: str = ""

    def what(self) -> str:
        return f"set the sysctl {self.key} = {self.value}"

    def why(self) -> str:
        return ("sysctl(8): net.* belong to the container's network namespace, the IPC ones to its IPC "
                "namespace, so setting them does not touch the host")

    def shell(self) -> str:
        return f"echo {shlex.quote(self.value)} > $ROOTFS/proc/sys/{self.key.replace('.', '/')}"


@dataclass(frozen=True)
class MakeDevice(Step):
    """A device node inside the new root. Opening it is still up to the
    device cgroup (cgroups/devices.py), which the child has joined by now."""

    path: str = ""  # inside the container, under /dev (our own tmpfs) for the standard ones
    major: int = 0
    minor: int = 0
    mode: int = 0o666
    kind: str = "c"  # c (character) | b (block)
    reason: str = ""
    make_parent: bool = False  # create missing directories on the way (--device /dev/snd/x)

    def what(self) -> str:
        what = "block" if self.kind == "b" else "character"
        return f"create the {what} device {self.path} ({self.major}:{self.minor})"

    def why(self) -> str:
        return self.reason or "programs expect the standard devices; the host's /dev is not visible in the container"

    def shell(self) -> str:
        parent = self.path.rpartition("/")[0]
        mkdir = f"mkdir -p $ROOTFS{parent} && " if self.make_parent and parent not in ("", "/dev") else ""
        return f"{mkdir}mknod -m {self.mode:o} $ROOTFS{self.path} {self.kind} {self.major} {self.minor}"


@dataclass(frozen=True)
class Symlink(Step):
    path: str = ""
    target: str = ""
    reason: str = "the standard /dev links (see the OCI runtime spec's default devices)"

    def what(self) -> str:
        return f"link {self.path} -> {self.target}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        return f"ln -s {self.target} $ROOTFS{self.path}"


@dataclass(frozen=True)
class MaskPath(Step):
    """Hide or freeze a kernel interface (from the security layer)."""

    path: str = ""
    kind: str = "mask_file"  # mask_file | mask_dir | readonly
    reason: str = ""

    def what(self) -> str:
        if self.kind == "readonly":
            return f"make {self.path} read-only"
        return f"mask {self.path}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        if self.kind == "mask_file":
            return f"mount --bind /dev/null $ROOTFS{self.path}"
        if self.kind == "mask_dir":
            return f"mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=0555 tmpfs $ROOTFS{self.path}"
        return (f"mount --bind $ROOTFS{self.path} $ROOTFS{self.path} && "
                f"mount -o remount,bind,ro,nosuid,nodev,noexec $ROOTFS{self.path}")


@dataclass(frozen=True)
class SetHostname(Step):
    hostname: str = ""

    def what(self) -> str:
        return f"set the hostname to {self.hostname}"

    def why(self) -> str:
        return "uts_namespaces(7): the change is seen only inside the container"

    def shell(self) -> str:
        return f"hostname {self.hostname}"


@dataclass(frozen=True)
class NewSession(Step):
    tty: bool = False

    def what(self) -> str:
        if self.tty:
            return "start a new session with the container's pty as controlling terminal"
        return "start a new session (no controlling terminal)"

    def why(self) -> str:
        return (
            "setsid(2): detaches from the host terminal so the container cannot push keystrokes "
            "into it with TIOCSTI (CVE-2017-5226)"
        )

    def shell(self) -> str:
        return "setsid"


@dataclass(frozen=True)
class PivotRoot(Step):
    root: str = ""

    def what(self) -> str:
        return f"pivot_root into {self.root} and detach the old root"

    def why(self) -> str:
        return (
            "pivot_root(2) swaps the root mount itself, and the detached old root is gone from the mount "
            "table, so unlike chroot there is no way back to the host's files"
        )

    def shell(self) -> str:
        return (
            f"cd {self.root} && pivot_root . . && umount -l .   "
            "# classic form: mkdir .old; pivot_root . .old; umount -l /.old; rmdir /.old"
        )


@dataclass(frozen=True)
class Chroot(Step):
    root: str = ""

    def what(self) -> str:
        return f"chroot into {self.root} (--chroot: escapable, for teaching only)"

    def why(self) -> str:
        return (
            "chroot(2) only changes how '/' is resolved; a root process can chroot again into a "
            "subdirectory and climb out with ../.. — pivot_root is the safe way"
        )

    def shell(self) -> str:
        return f"chroot {self.root}"


@dataclass(frozen=True)
class UserNamespace(Step):
    """Rootless mode: the runtime moves itself into a new user namespace
    (userns.py explains why the runtime, and not the child)."""

    phase = BEFORE_FORK
    mapping: object = None  # userns.IdMapping

    def what(self) -> str:
        return f"create a user namespace and enter it: {self.mapping.describe()}"

    def why(self) -> str:
        how = {
            "self": "written by a helper left outside, with the caller's own right to map itself "
                    "(after 'deny' in setgroups)",
            "newidmap": "written by newuidmap/newgidmap(1), which check /etc/subuid and /etc/subgid",
            "root": "written by a helper left outside, with root's privilege there",
        }[self.mapping.writer]
        out = ("user_namespaces(7): the caller becomes root inside, with capabilities that count only for "
               f"what this namespace owns; the maps are {how}")
        return out + (f". Note: {self.mapping.note}" if self.mapping.note else "")

    def shell(self) -> str:
        return self.mapping.shell()


# --- root's --userns: the child makes the user namespace (runc's order) ------
#
#   runtime (root) ──fork──▶ child: unshare(CLONE_NEWUSER) ─── "U" ──▶
#      │ writes /proc/CHILD/uid_map, gid_map ◀──────────────────────────┘
#      │ ─── "M" ──▶ unshare(CLONE_NEWNS); open the host paths to mount
#      │             setresuid(0): uid 0 inside, 300000 outside
#      │             unshare(CLONE_NEWPID), fork ──▶ PID 1 (goes on with the plan)
#      │ ◀── PID 1's pid ── exits
#      ▼ reaps it; PID 1 is re-parented to the runtime (a child subreaper)
#
# The user namespace comes first, so every namespace made after it belongs
# to it; the PID namespace too, which is why PID 1 is a second fork.


@dataclass(frozen=True)
class BecomeSubreaper(Step):
    phase = BEFORE_FORK

    def what(self) -> str:
        return "become a child subreaper"

    def why(self) -> str:
        return ("prctl(2) PR_SET_CHILD_SUBREAPER: the container's PID 1 is forked by the first child, which then "
                "exits; PID 1 is re-parented to the runtime, which waits for it and gets its exit status")


@dataclass(frozen=True)
class OpenHostPaths(Step):
    """Each mount from the host (the layer, the image, -v sources ...) is made
    from an fd opened here, while the child is still the host's root."""

    paths: tuple[str, ...] = ()

    def what(self) -> str:
        return (f"open the {len(self.paths)} host paths the container's mounts come from, while this process "
                "is still uid 0 of the host")

    def why(self) -> str:
        return ("once root of the user namespace, the process is an unprivileged uid of the host, which cannot "
                "search root's 0700 directories (the store, a -v source below /root); uid 0 still owns them "
                "(path_resolution(7)). Each mount is made from the fd opened here (O_PATH, open(2)), in the "
                "container's mount namespace already, so the kernel lets it be mounted there")


@dataclass(frozen=True)
class UnshareUser(Step):
    """The child: a new user namespace, whose maps the runtime writes (WriteIdMaps)."""

    def what(self) -> str:
        return "create a user namespace, and wait until the runtime has written its maps"

    def why(self) -> str:
        return ("user_namespaces(7): made first, so the mount, PID, network ... namespaces made after it belong to "
                "it: root inside has capabilities only over what it owns")

    def shell(self) -> str:
        return "unshare --user ..."


@dataclass(frozen=True)
class BecomeRoot(Step):
    uid: int = 0  # on the host
    gid: int = 0

    def what(self) -> str:
        return f"become root of the user namespace: uid and gid 0 inside, {self.uid} and {self.gid} on the host"

    def why(self) -> str:
        return ("setresgid(2), setresuid(2), no supplementary groups (setgroups(2)): from here on what this process "
                "creates (the container's files, its processes) belongs to the range, not to the host's root")

    def shell(self) -> str:
        return "setpriv --reuid 0 --regid 0 --clear-groups"


@dataclass(frozen=True)
class WriteIdMaps(Step):
    phase = PARENT
    mapping: object = None  # userns.IdMapping

    def what(self) -> str:
        return f"write the maps of the child's user namespace: {self.mapping.describe()}"

    def why(self) -> str:
        r = self.mapping.uids[0]
        if getattr(self.mapping, "source", "") == "config.json":
            return (f"user_namespaces(7): only a process privileged outside may map a range; the maps are "
                    f"config.json's linux.uidMappings and gidMappings: uid 0 inside is {r.outside} on the host")
        return (f"user_namespaces(7): only a process privileged outside may map a range; uid 0 inside is "
                f"{r.outside} on the host, an unprivileged uid of user {self.mapping.user}'s subordinate range "
                "(/etc/subuid, /etc/subgid): a process that escapes the container is nobody on the host")

    def shell(self) -> str:
        if len(self.mapping.uids) == 1 and len(self.mapping.gids) == 1:
            u, g = self.mapping.uids[0], self.mapping.gids[0]
            return f"echo '{u.line()}' > /proc/$CHILD/uid_map; echo '{g.line()}' > /proc/$CHILD/gid_map"
        u = "\\n".join(r.line() for r in self.mapping.uids)
        g = "\\n".join(r.line() for r in self.mapping.gids)
        return f"printf '{u}\\n' > /proc/$CHILD/uid_map; printf '{g}\\n' > /proc/$CHILD/gid_map"


@dataclass(frozen=True)
class SendIdmappedLayers(Step):
    """The image without a copy (idshift.py): each layer as a detached bind
    mount that shows its files' owners through the child's user namespace."""

    phase = PARENT
    layers: tuple[str, ...] = ()

    def what(self) -> str:
        return (f"mount the image's {len(self.layers)} layer(s) idmapped to the child's user namespace, and pass "
                "them to the child")

    def why(self) -> str:
        return ("mount_setattr(2) MOUNT_ATTR_IDMAP: on disk the image's files belong to the host's uids 0-65535; "
                "through these mounts they belong to the range (uid 0 reads as root inside), without a copy. "
                "Only the runtime may make them (CAP_SYS_ADMIN over the image's filesystem): detached mounts "
                "(open_tree(2) OPEN_TREE_CLONE) sent over the socket (SCM_RIGHTS, unix(7))")

    def shell(self) -> str:
        return "mount --bind -o X-mount.idmap=/proc/$CHILD/ns/user LAYER $LAYER_DIR/idmapped/N   # for each layer"


@dataclass(frozen=True)
class ReceiveIdmappedLayers(Step):
    count: int = 1

    def what(self) -> str:
        return f"receive the {self.count} idmapped layer(s) from the runtime"

    def why(self) -> str:
        return "they are attached (move_mount(2)) in the layer directory when the root filesystem is mounted"


@dataclass(frozen=True)
class ForkInit(Step):
    def what(self) -> str:
        return ("create the PID namespace and fork the container's PID 1 into it; this first child then exits, "
                "and PID 1 goes on")

    def why(self) -> str:
        return ("pid_namespaces(7): a proc(5) for a PID namespace can only be mounted by its owner, so it is made "
                "inside the user namespace, and only the next child is born in it. PID 1 arms its parent-death "
                "signal once the runtime says it is its parent (prctl(2) PR_SET_PDEATHSIG)")

    def shell(self) -> str:
        return "unshare --pid --fork ..."


@dataclass(frozen=True)
class AdoptInit(Step):
    phase = PARENT

    def what(self) -> str:
        return ("receive PID 1's pid from the first child and reap that child: PID 1 is now the runtime's child, "
                "and is told so")

    def why(self) -> str:
        return "a child subreaper inherits the orphans of its descendants (prctl(2)), and waits for them like its own"


# --- security: the child before pivot_root (may read the image's files) ---


@dataclass(frozen=True)
class ResolveUser(Step):
    """Look the user up in the image (never the host's NSS). The ids found
    are what SwitchUser and SetCapabilities use after pivot_root."""

    user: str | None = None
    group_add: tuple[str, ...] = ()

    def what(self) -> str:
        extra = f", extra groups {', '.join(self.group_add)}" if self.group_add else ""
        return f"look up user {self.user or 'root (uid 0)'}{extra} in the image's /etc/passwd and /etc/group"

    def why(self) -> str:
        return ("read by our own code from the container's root, before pivot_root: after it, Python must not "
                "open a file of the image (an NSS module from the image would run with the runtime's privileges)")


@dataclass(frozen=True)
class MakeUndumpable(Step):
    """In ``run`` the child does it before pivot_root; in ``exec`` the
    runtime does it before it joins the container's namespaces."""

    phase: str = CHILD

    def what(self) -> str:
        return "make the runtime's process non-dumpable until exec"

    def why(self) -> str:
        return ("prctl(2) PR_SET_DUMPABLE 0: while our code runs in the container's namespaces, root inside "
                "must not open /proc/<pid>/exe and overwrite the host's Python (CVE-2019-5736); execve resets it")


# --- inside the new root: system calls only --------------------------------


@dataclass(frozen=True)
class SetWorkdir(Step):
    phase = INSIDE
    workdir: str = "/"

    def what(self) -> str:
        return f"change to the working directory {self.workdir} (created if missing, as docker does)"

    def why(self) -> str:
        return ("chdir(2) inside the new root, then getcwd(3) must name a path inside it: a directory reached "
                "through a leaked fd would be on the host (CVE-2024-21626)")

    def shell(self) -> str:
        return f"mkdir -p {self.workdir} && cd {self.workdir}"


@dataclass(frozen=True)
class ResetSignals(Step):
    phase = INSIDE

    def what(self) -> str:
        return "reset every signal to its default action and empty the signal mask"

    def why(self) -> str:
        return ("signal(7): execve keeps ignored signals and the mask; Python ignores SIGPIPE and SIGXFSZ, "
                "which would break pipelines in the container (reliability case F39)")


@dataclass(frozen=True)
class SetRlimits(Step):
    phase = INSIDE
    # (name, RLIMIT_* number, soft, hard); -1 is unlimited (RLIM_INFINITY)
    limits: tuple[tuple[str, int, int, int], ...] = ()

    def _text(self, sep: str) -> list[str]:
        fmt = lambda v: "unlimited" if v < 0 else str(v)  # noqa: E731
        return [f"{name}={fmt(soft)}{sep}{fmt(hard)}" for name, _, soft, hard in self.limits]

    def what(self) -> str:
        return "set resource limits " + ", ".join(self._text(":"))

    def why(self) -> str:
        return "--ulimit; setrlimit(2), before capabilities go (raising a hard limit needs CAP_SYS_RESOURCE)"

    def shell(self) -> str:
        return "prlimit " + " ".join("--" + t for t in self._text(":")) + " --pid $$"


@dataclass(frozen=True)
class DropBoundingSet(Step):
    phase = INSIDE
    keep: int = 0  # mask of capability numbers kept
    last_cap: int = 40
    kept: tuple[str, ...] = ()  # names, for the text
    dropped: tuple[str, ...] = ()

    def what(self) -> str:
        return ("shrink the capability bounding set to " + (", ".join(sorted(c[4:] for c in self.kept)) or "nothing")
                + "; empty the ambient set")

    def why(self) -> str:
        notable = [c[4:] for c in ("CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO")
                   if c in self.dropped]
        return ("capabilities(7): what is dropped from the bounding set can never come back, not even through a "
                "setuid-root binary" + (f"; gone: {', '.join(notable)}..." if notable else "; --privileged keeps them all"))

    def shell(self) -> str:
        drop = ",".join(c.lower() for c in self.dropped)
        return f"capsh --drop={drop} --" if drop else ""


@dataclass(frozen=True)
class SwitchUser(Step):
    phase = INSIDE
    user: str | None = None
    group_add: tuple[str, ...] = ()

    def what(self) -> str:
        extra = f", extra groups {', '.join(self.group_add)}" if self.group_add else ""
        return f"switch to user {self.user or 'root (uid 0)'}{extra}: setgroups, setresgid, setresuid"

    def why(self) -> str:
        return ("groups first and the uid last, because each needs a privilege the next one drops (setgroups(2)); "
                "a uid change away from 0 empties the effective and permitted sets (capabilities(7))")

    def shell(self) -> str:
        return "setpriv --reuid U --regid G --groups ..."


@dataclass(frozen=True)
class SetCapabilities(Step):
    phase = INSIDE
    keep: int = 0

    def what(self) -> str:
        return ("set effective = permitted capabilities to the kept set for root, none for other users; "
                "inheritable empty")

    def why(self) -> str:
        return "capset(2), then read back with capget(2); like Docker, a non-root user keeps only the bounding set"


@dataclass(frozen=True)
class RearmParentDeath(Step):
    """``outlive``: a detached container must outlive its monitor (found
    again through its cgroup), so the signal is cleared instead."""

    phase = INSIDE
    outlive: bool = False

    def what(self) -> str:
        if self.outlive:
            return "keep the process non-dumpable and clear the parent-death signal: it outlives its monitor"
        return "re-arm the parent-death signal (SIGKILL) and keep the process non-dumpable"

    def why(self) -> str:
        if self.outlive:
            return ("prctl(2): a detached container keeps running if its monitor dies (as with conmon); until "
                    "here it would have died with the runtime. If the runtime already died, stop")
        return ("prctl(2): a uid change clears both; the container must die with the runtime, and root inside must "
                "not reach the runtime through /proc/<pid>/exe (CVE-2019-5736). If the runtime already died, stop")


@dataclass(frozen=True)
class NoNewPrivs(Step):
    phase = INSIDE

    def what(self) -> str:
        return "set no_new_privs"

    def why(self) -> str:
        return "prctl(PR_SET_NO_NEW_PRIVS): setuid bits and file capabilities grant nothing from now on"

    def shell(self) -> str:
        return "setpriv --no-new-privs"


@dataclass(frozen=True)
class CloseOnExec(Step):
    phase = INSIDE
    first: int = 3

    def what(self) -> str:
        return f"mark every fd from {self.first} up close-on-exec"

    def why(self) -> str:
        return ("close_range(2) CLOSE_RANGE_CLOEXEC: nothing the runtime had open reaches the command "
                "(CVE-2024-21626)")


@dataclass(frozen=True)
class InstallSeccomp(Step):
    """The filter is compiled while planning; ``fprog`` holds it as the C
    structure the kernel reads, so installing it is one prctl call."""

    phase = INSIDE
    text: str = ""
    reason: str = ""
    fprog: object = field(default=None, compare=False, repr=False)

    def what(self) -> str:
        return self.text

    def why(self) -> str:
        return self.reason



# --- exec: entering a running container --------------------------------------

_NS_SETNS_WHY = {
    "user": "first: the other namespaces belong to it, and joining them needs its capabilities",
    "pid": "only our next child is born in it (setns(2)): the runtime itself stays outside",
    "cgroup": "/proc/self/cgroup shows the container's cgroup as its root",
    "ipc": "the container's System V IPC and message queues",
    "uts": "the container's hostname",
    "net": "the container's network interfaces",
    "mnt": "last: the container's mount table, and its root and working directory become the container's root "
           "(setns(2)); from here our code reads nothing of the image but its user database",
}


@dataclass(frozen=True)
class OpenNamespaces(Step):
    """Open every namespace of PID 1 first, while /proc is the host's."""

    phase = BEFORE_FORK
    pid: int = 0
    pid_start: int = 0
    types: tuple[str, ...] = ()
    container: str = ""  # run --network/--pid/--ipc/--uts container:NAME: the other container ("" exec's own)

    def what(self) -> str:
        whose = f"container {self.container}'s" if self.container else "the container's"
        return f"open the namespaces of {whose} PID 1 ({self.pid}): " + ", ".join(self.types)

    def why(self) -> str:
        out = ("each /proc/PID/ns/TYPE is a handle for setns(2); PID 1 is pinned with a pidfd and its start time "
               "checked, so a reused pid is never joined (pidfd_open(2))")
        if self.container:
            out += "; opened before the fork, so a container that is not running is refused before anything runs"
        return out

    def shell(self) -> str:
        return f"ls -l /proc/{self.pid}/ns/"


@dataclass(frozen=True)
class OpenNamespacePath(Step):
    """An OCI bundle's linux.namespaces[].path: a namespace that exists
    already (an engine's network namespace, a pod's), opened by the runtime
    and joined by the child (JoinNamespace) instead of a new one."""

    phase = BEFORE_FORK
    ns: str = "net"
    path: str = ""

    def what(self) -> str:
        return f"open the {self.ns} namespace {self.path}"

    def why(self) -> str:
        return "config.json names a namespace to join; setns(2) refuses a file of another namespace type"

    def shell(self) -> str:
        return f"ls -l {shlex.quote(self.path)}"


@dataclass(frozen=True)
class JoinNamespace(Step):
    ns: str = "mnt"
    phase: str = CHILD
    path: str = ""  # an OCI bundle's namespace file; "" = the container's PID 1's (exec)
    container: str = ""  # run ... container:NAME: that container's (opened by OpenNamespaces)

    def what(self) -> str:
        if self.path:
            return f"join the {self.ns} namespace {self.path}"
        if self.container:
            return f"join container {self.container}'s {self.ns} namespace"
        return f"join the container's {self.ns} namespace"

    def why(self) -> str:
        if self.container:
            return _NS_SHARE_WHY.get(self.ns, "setns(2)")
        return _NS_SETNS_WHY.get(self.ns, "setns(2)")

    def shell(self) -> str:
        long = {"mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net", "pid": "--pid",
                "cgroup": "--cgroup", "user": "--user"}[self.ns]
        if self.path:
            return f"nsenter {long}={shlex.quote(self.path)}"
        if self.container:
            return f"nsenter --target $(minicontainer inspect -f '{{{{.State.Pid}}}}' {self.container}) {long}"
        return f"nsenter --target $PID1 {long}"


# run --network/--pid/--ipc/--uts container:NAME (docker's container mode, the pod idea)
_NS_SHARE_WHY = {
    "pid": "setns(2) of a PID namespace sets where our next child is born: the fork below puts the container "
           "among the other's processes (it is not PID 1 there), and the runtime comes back to its own",
    "net": "network_namespaces(7): the same interfaces, addresses and ports as the other container; 127.0.0.1 "
           "reaches its listeners",
    "ipc": "ipc_namespaces(7): the other container's System V IPC objects and POSIX message queues",
    "uts": "uts_namespaces(7): the other container's hostname, which this one does not set",
}


@dataclass(frozen=True)
class OpenRoot(Step):
    def what(self) -> str:
        return "open the container's root directory (now /) for the user lookup and its devpts"

    def why(self) -> str:
        return "every later path inside is reached from this fd without following symlinks"


@dataclass(frozen=True)
class AwaitStart(Step):
    """``create``: everything is set up; the process waits for ``start``."""

    phase = INSIDE

    def what(self) -> str:
        return "tell the runtime the container is created, then wait until `minicontainer start` opens the start fifo"

    def why(self) -> str:
        return ("fifo(7): opening a fifo for writing blocks until a reader opens it; the fifo was opened (O_PATH) "
                "before pivot_root and is reopened through /proc/self/fd, as runc's exec fifo")


@dataclass(frozen=True)
class Exec(Step):
    phase = INSIDE
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def what(self) -> str:
        return f"exec {shlex.join(self.argv)}"

    def why(self) -> str:
        return "execve(2) replaces the runtime's Python with the command, as PID 1; $PATH is searched by our own code"

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"exec env -i {env} {shlex.join(self.argv)}"


@dataclass(frozen=True)
class Note(Step):
    """A line of --explain that is not an action (e.g. "no cgroup: rootless").
    Its phase places it in the plan; nothing is carried out."""

    phase: str = CHILD

    text: str = ""
    reason: str = ""
    command: str = ""  # the shell equivalent, if there is one

    def what(self) -> str:
        return self.text

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        return self.command


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    # Long values shown as shell variables, e.g. {"ID": "<64 hex>"}: the
    # lines stay readable, and after `ID=...` they can be typed as they are.
    legend: dict[str, str] = field(default_factory=dict)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def phase(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.phase == name]

    def header(self) -> list[str]:
        """``NAME=value`` lines, each using the names before it (shell-ready)."""
        out = []
        for i, (k, v) in enumerate(self.legend.items()):
            earlier = dict(list(self.legend.items())[:i])
            out.append(f"{k}={_substitute(v, earlier)}")
        return out

    def render(self) -> str:
        """The --dry-run text: the legend, then numbered steps with why and shell equivalent."""
        lines = self.header()
        for i, step in enumerate(self.steps, 1):
            lines.extend(render_step(i, step, self.legend))
        return "\n".join(lines)


def render_step(i: int, step: Step, legend: dict[str, str] | None = None) -> list[str]:
    who = "runtime" if step.phase in RUNTIME_PHASES else "container"
    out = [f"{i:2}. [{who}] {step.what()}"]
    if step.why():
        out.append(f"      why:   {step.why()}")
    if step.shell():
        out.append(f"      shell: {step.shell()}")
    return [_substitute(line, legend or {}) for line in out]


def _substitute(text: str, legend: dict[str, str]) -> str:
    """Replace each legend value by $NAME, longest value first."""
    for name, value in sorted(legend.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, "$" + name)
    return text


