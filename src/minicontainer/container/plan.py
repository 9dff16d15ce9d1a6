"""The planner: a frozen ContainerSpec becomes the ordered list of steps.

Pure: no system call is made here (the cgroup and security layers, which
read the host to decide their steps, are asked by the runtime and hand their
steps in). The order is the whole design of a run, readable top to bottom
in :func:`build_plan`; steps.py holds what each step is, and the
interpreter (interpreter.py) carries each one out. ``--dry-run`` prints this
list and ``--explain`` each step just before it runs, from the same objects,
so what you read is what runs.
"""

from __future__ import annotations

from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer.container.steps import (
    AwaitExec,
    AwaitStart,
    AwaitRelease,
    Chroot,
    Exec,
    Fork,
    MakeDevice,
    MakeMountsPrivate,
    Mount,
    MountRootfs,
    NewSession,
    PivotRoot,
    Plan,
    ReadonlyRecursive,
    RearmParentDeath,
    ReleaseChild,
    RemountReadonly,
    ResetSignals,
    SetHostname,
    SetWorkdir,
    Step,
    Symlink,
    Unshare,
    UnsharePid,
)
from minicontainer.container import steps as S
from minicontainer.container.spec import NamedVolume, Tmpfs
from minicontainer.syscalls.flags import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_STRICTATIME

# --- building the plan ---------------------------------------------------

INIT_PATH = "/dev/init"  # where --init's tini is bound in

STANDARD_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
)


@dataclass(frozen=True)
class RootfsLayout:
    """Where the container's root comes from (decided by the runtime)."""

    lower: str  # the image rootfs or the user's directory (a layered image: its top layer)
    layer: str  # the container's own directory (lower link, upper/, work/, merged/)
    mode: str = "overlay"  # overlay | bind
    writable: bool = True  # see MountRootfs.writable
    lower_stack: tuple[str, ...] = ()  # a layered image's other layers, below ``lower``, top first
    image_top: str = ""  # the image's (top) directory as the container sees it: a private copy is made of it
    # --userns as root (idshift.py): (image directory, its copy in the range), made before the run
    shifts: tuple[tuple[str, str], ...] = ()
    remap: object = None  # the userns.IdMapping of that range: the layer directories belong to its root
    idmapped: bool = False  # --userns as root: the layers are idmapped mounts instead of shifted copies

    @property
    def target(self) -> str:
        return self.layer + "/merged"


@dataclass(frozen=True)
class NetworkAttachment:
    """A container on a bridge network (decided by the runtime): the
    network (a network.store.Network) and the names of its pieces."""

    network: object
    container: str  # id
    name: str
    veth: str  # the host end
    peer: str  # the container's end, until it is renamed eth0
    hosts: str  # the container's /etc/hosts on the host
    ports: tuple = ()  # -p/-P: network.ports.PortMapping to publish
    nftables: bool = False  # does the host have nft(8)? (the runtime looks)


@dataclass(frozen=True)
class SharedNamespaces:
    """``--network/--pid/--ipc/--uts container:NAME`` (found by the runtime):
    the running container whose namespaces of ``types`` are joined."""

    name: str
    id: str
    pid: int  # its PID 1 on the host ...
    pid_start: int  # ... and that process's start time: a reused pid is never joined
    types: tuple[str, ...]


@dataclass(frozen=True)
class EtcFiles:
    """Files of the host bound on the container's /etc/hosts and
    /etc/resolv.conf (decided by the runtime). A ``*_content`` is written by
    the runtime first; None: someone else keeps the file (LeaseAddress, or
    the container whose network namespace is joined: ``owner``)."""

    hosts: str = ""
    hosts_content: str | None = None
    resolv: str = ""
    resolv_content: str | None = None
    owner: str = ""


def network_steps(att: NetworkAttachment, spec=None, hostname: str = "") -> list[Step]:
    net = att.network
    names = {}
    if spec is not None:
        names = dict(ip=spec.ip, aliases=spec.network_aliases, hostname=hostname, extra_hosts=spec.extra_hosts)
    out: list[Step] = [S.BindPorts(ports=att.ports)] if att.ports else []
    return out + [
        S.LeaseAddress(network=net.name, subnet=net.subnet, container=att.container, name=att.name, veth=att.veth,
                       hosts=att.hosts, **names),
        S.EnsureBridge(bridge=net.bridge, gateway=net.gateway, prefixlen=net.prefixlen),
        *nat_steps(net, att.nftables),
        S.CreateNetns(),
        S.AddVeth(host=att.veth, peer=att.peer, bridge=net.bridge),
        S.ConfigureEth(peer=att.peer, prefixlen=net.prefixlen, gateway="" if net.internal else net.gateway),
    ]


def interface_steps(att: NetworkAttachment, *, ifname: str, default_route: bool, hostname: str = "", ip: str = "",
                    aliases: tuple[str, ...] = (), holder: int = 0, nat: bool = False) -> list[Step]:
    """One more interface (eth1, eth2 ...) on a network, in the namespace the
    steps before made or opened: `network connect`, and its connections made
    again when the container starts (``nat``: the network's rules too, which
    a start may be the first to need)."""
    net = att.network
    out: list[Step] = [
        S.LeaseAddress(network=net.name, subnet=net.subnet, container=att.container, name=att.name, veth=att.veth,
                       hosts=att.hosts, hostname=hostname, ifname=ifname, holder=holder, ip=ip, aliases=tuple(aliases)),
        S.EnsureBridge(bridge=net.bridge, gateway=net.gateway, prefixlen=net.prefixlen),
    ]
    if nat:
        out += nat_steps(net, att.nftables)
    route = default_route and not net.internal
    out += [
        S.AddVeth(host=att.veth, peer=att.peer, bridge=net.bridge),
        S.ConfigureEth(peer=att.peer, ifname=ifname, prefixlen=net.prefixlen, gateway=net.gateway if route else "",
                       no_route="--internal" if net.internal else "it keeps the one it has"),
    ]
    return out


def nat_steps(net, nftables: bool) -> list[Step]:
    """Outbound NAT (or --internal's isolation) for the network, and forwarding (network/nat.py)."""
    from minicontainer.network import nat

    if not nftables:
        return [S.Note(phase=S.BEFORE_FORK, text=f"no nftables on this host: network {net.name} gets no "
                       + ("isolation rules (--internal: its containers still have no default route)" if net.internal
                          else "outbound NAT"),
                       reason="nft(8) is not installed: the containers of the network reach each other and the host, "
                       "but nothing beyond it; install nftables (apt-get install nftables) for docker's outbound NAT")]
    out: list[Step] = [S.SetupNat(network=net.name, bridge=net.bridge, subnet=net.subnet, internal=net.internal,
                                  commands=tuple(nat.setup_commands(net.bridge, net.subnet, net.internal)))]
    if not net.internal:
        out.append(S.EnableForwarding())
    return out


def build_plan(
    spec,
    *,
    hostname: str,
    rootfs: RootfsLayout,
    cgroup_steps: list[Step] = (),
    cgroup_view=None,
    security=None,
    userns_steps: list[Step] = (),
    rootless: bool = False,
    remap=None,
    detached: bool = False,
    wait_for_start: bool = False,
    init: str | None = None,
    network: NetworkAttachment | None = None,
    connected: tuple = (),
    volume_root: str = "",
    container_id: str = "",
    shared: tuple[SharedNamespaces, ...] = (),
    etc: EtcFiles | None = None,
) -> Plan:
    """Turn a ContainerSpec into the ordered steps (pure: no syscalls).

    ``userns_steps`` (rootless mode, userns.py) come first: the runtime enters
    the user namespace before it makes the PID namespace. ``cgroup_steps``
    come from the cgroup manager, and ``cgroup_view`` (a cgroups.CgroupView)
    says where the container's cgroup is, for its /sys/fs/cgroup; ``security``
    (a security.SecuritySteps) comes from the security layer. ``rootless``
    binds the host's devices instead of creating them. ``detached``: a
    monitor runs the container, which outlives it; ``wait_for_start``:
    ``create``, the process waits just before execve until ``start``.
    ``init``: the host's tini for --init.
    ``remap`` (a userns.IdMapping): --userns as root, the container in a
    subordinate range; the child makes the user namespace and the runtime
    writes its maps (steps.py shows the exchange). ``rootless`` is then set
    too: nothing can make device nodes in a user namespace.
    ``network``: a bridge network to join (its namespace is made and
    configured by the runtime first: threads cannot be started once the
    runtime has unshared its PID namespace, clone(2) EINVAL). ``connected``:
    the networks `network connect` added, made again after it as eth1, eth2
    ... ((NetworkAttachment, ip, aliases) each).
    ``volume_root``: the volume store's directory, for the named and
    anonymous volumes; ``container_id`` the container they are made for.
    ``shared``: other containers' namespaces to join (container:NAME);
    ``etc``: the files bound on /etc/hosts and /etc/resolv.conf.
    """
    plan = Plan()
    for s in volume_steps(spec, volume_root, container=container_id):
        plan.add(s)
    for s in (network_steps(network, spec, hostname) if network is not None else ()):
        plan.add(s)
    for i, (att, ip, aliases) in enumerate(connected, 1):
        for s in interface_steps(att, ifname=f"eth{i}", default_route=False, hostname=hostname, ip=ip,
                                 aliases=aliases, nat=True):
            plan.add(s)
    for s in _etc_writes(etc):
        plan.add(s)
    # The runtime, before the fork.
    for s in userns_steps:
        plan.add(s)
    # ns -> the container whose namespace it is (opened before anything changes)
    sharing = {ns: sh.name for sh in shared for ns in sh.types}
    for sh in shared:
        plan.add(S.OpenNamespaces(pid=sh.pid, pid_start=sh.pid_start, types=sh.types, container=sh.name))
    if "pid" in sharing:
        plan.add(S.JoinNamespace(ns="pid", phase=S.BEFORE_FORK, container=sharing["pid"]))
    elif remap is not None:
        plan.add(S.BecomeSubreaper())  # the child makes the PID namespace (ForkInit)
    elif "pid" in spec.namespaces:
        plan.add(UnsharePid())
    joined = dict(spec.join_namespaces)
    for ns, path in spec.join_namespaces:
        plan.add(S.OpenNamespacePath(ns=ns, path=path))
    plan.add(Fork(keep_fds=spec.preserve_fds))
    # The runtime, after the fork: the child waits until it is in its cgroup.
    for s in cgroup_steps:
        plan.add(s)
    if network is not None and network.ports:
        plan.add(S.StartPortProxy(ports=network.ports))
    # OCI hooks (config.json) that run in the runtime's namespaces while the
    # child waits with its mounts made: the child is released twice.
    runtime_hooks = [k for k in ("prestart", "createRuntime") if spec.hooks_of(k)]
    if runtime_hooks:
        plan.add(ReleaseChild(keep_open=True, reason="the child makes its namespaces and mounts, then waits "
                              "again for the runtime's hooks"))
    else:
        plan.add(ReleaseChild())
    if remap is not None:
        plan.add(S.WriteIdMaps(mapping=remap))
        if rootfs.idmapped:
            plan.add(S.SendIdmappedLayers(layers=(rootfs.lower, *rootfs.lower_stack)))
        plan.add(S.AdoptInit())
    if not runtime_hooks:
        plan.add(AwaitExec())
    # The child: namespaces, its root and its mounts, before pivot_root.
    plan.add(S.DieWithRuntime())
    # What needs no cgroup (the namespaces but the cgroup one, the root, the
    # mounts but /sys/fs/cgroup) is made while the runtime writes the cgroups:
    # the child is otherwise idle for most of it (the first cgroup.procs write
    # waits 10-17 ms for the kernel), and it saves ~5 ms of a start. Not with a
    # subordinate range (the runtime writes the child's id maps after the
    # release), the runtime's hooks (a second release), a joined cgroup
    # namespace, or a mount of the user's or the bundle's at /sys/fs/cgroup
    # (it must come after the container's own there, in its cgroup namespace).
    setup_first = (remap is None and not runtime_hooks and "cgroup" not in joined and "cgroup" not in sharing
                   and not any(t == CGROUP_DIR or t.startswith(CGROUP_DIR + "/") for t in _mount_targets(spec)))
    if not setup_first:
        plan.add(AwaitRelease(keep_open=bool(runtime_hooks)))
    # config.json's namespaces to join by path belong to the host's user
    # namespace: joined before the child makes its own (runc's nsexec order),
    # while it is still privileged over them
    early = tuple(ns for ns in ("cgroup", "ipc", "uts", "net") if ns in joined) if remap is not None else ()
    if remap is not None:
        for ns in early:
            plan.add(S.JoinNamespace(ns=ns, path=joined[ns]))
        plan.add(S.UnshareUser())
        plan.add(Unshare(namespaces=("mnt",)))
        if rootfs.idmapped:
            plan.add(S.ReceiveIdmappedLayers(count=1 + len(rootfs.lower_stack)))
        opening = plan.add(S.OpenHostPaths())  # its paths are filled in at the end, from the mounts
        plan.add(S.BecomeRoot(uid=remap.uids[0].outside, gid=remap.gids[0].outside))
        plan.add(S.ForkInit())
    if spec.hooks_of("createContainer") or spec.hooks_of("startContainer"):
        plan.add(S.ReadHostPid())
    if network is not None:
        plan.add(S.JoinNamespace(ns="net"))
    for ns in ("cgroup", "ipc", "uts", "net"):
        if ns in early:
            continue
        if ns in joined and not (ns == "net" and network is not None):
            plan.add(S.JoinNamespace(ns=ns, path=joined[ns]))
        elif ns in sharing:
            plan.add(S.JoinNamespace(ns=ns, container=sharing[ns]))
    unshared = ("mnt", "uts", "ipc", "cgroup") if network is not None else ("mnt", "uts", "ipc", "net", "cgroup")
    child_ns = tuple(ns for ns in unshared if ns in spec.namespaces and ns not in joined and ns not in sharing
                     and not (ns == "mnt" and remap is not None))  # (that one is unshared already)
    later = ("cgroup",) if setup_first and "cgroup" in child_ns else ()  # after the release: its root is our cgroup
    plan.add(Unshare(namespaces=tuple(ns for ns in child_ns if ns not in later)))
    # the other container's lo is up already; a joined one's owner is the host's user namespace
    if "net" in spec.namespaces and "net" not in sharing and "net" not in early:
        plan.add(S.LoopbackUp())
    plan.add(MakeMountsPrivate(slave=any("slave" in v.propagation for v in spec.volumes)))
    plan.add(
        MountRootfs(
            target=rootfs.target,
            layer=rootfs.layer,
            lower=rootfs.lower,
            readonly=spec.read_only,
            mode=rootfs.mode,
            writable=rootfs.writable,
            lower_stack=rootfs.lower_stack,
            opened=remap is not None,
            idmapped=rootfs.idmapped,
        )
    )
    if rootfs.mode == "bind" and not rootfs.writable:
        # --read-only straight on the image's directory, which may carry
        # mounts of its own (a directory given as the image)
        plan.add(ReadonlyRecursive(target="", reason="--read-only: the root filesystem cannot be written",
                                   old_kernel_hint="unmount what is mounted inside the image directory"))
    plan.add(
        Mount(
            target="/proc",
            fstype="proc",
            source="proc",
            flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
            reason="proc(5): a fresh procfs shows only the processes of the new PID namespace",
            create="no",
        )
    )
    sys_flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if "net" in spec.namespaces or not rootless:
        plan.add(
            Mount(
                target="/sys",
                fstype="sysfs",
                source="sysfs",
                flags=sys_flags,
                reason="sysfs(5), read-only: the container can look at devices but not reconfigure the host"
                + ("" if "net" in spec.namespaces else
                   "; a fresh one, not the host's, whose submounts (the cgroup hierarchies) would come along"),
                create="no",
            )
        )
    else:
        # sysfs belongs to the network namespace that mounts it, and a user
        # namespace does not own the host's: the kernel refuses a fresh one.
        plan.add(
            Mount(
                target="/sys",
                source="/sys",
                flags=MS_BIND | MS_REC,
                reason="--network host in a user namespace: sysfs(5) can only be mounted by the owner of its "
                "network namespace, so the host's is bound in",
                create="no",
                host_source=True,
            )
        )
        plan.add(ReadonlyRecursive(target="/sys", reason="the container must not reconfigure the host through /sys, "
                                   "nor through the cgroup hierarchies mounted below it",
                                   old_kernel_hint="drop --network host, or run as root (which gets a fresh sysfs)"))
    if not setup_first:
        for s in cgroup_mounts(cgroup_view, spec):
            plan.add(s)
    plan.add(
        Mount(
            target="/tmp",
            fstype="tmpfs",
            source="tmpfs",
            flags=MS_NOSUID | MS_NODEV,
            data="mode=1777",
            reason="a private, writable /tmp in memory, sticky like the host's (tmpfs(5))",
        )
    )
    plan.add(
        Mount(
            target="/dev",
            fstype="tmpfs",
            source="tmpfs",
            flags=MS_NOSUID | MS_STRICTATIME,
            data="mode=755,size=65536k",
            reason="a private /dev on its own tmpfs: whatever the image has under /dev is hidden, so "
            "nothing it planted there (symlinks to host files) is ever used (CVE-2025-31133)",
        )
    )
    # A --device for one of the standard paths replaces the standard node or link.
    own = {d.path for d in spec.devices}
    for path, major, minor in STANDARD_DEVICES:
        if path in own:
            continue
        if rootless:
            plan.add(
                Mount(
                    target=path,
                    source=path,
                    flags=MS_BIND,
                    reason="rootless: mknod(2) of a device needs CAP_MKNOD in the host's user namespace, "
                    "so the host's own device node is bind-mounted onto an empty file (as runc and podman do)",
                    create="file",
                    host_source=True,
                )
            )
        else:
            plan.add(MakeDevice(path=path, major=major, minor=minor))
    plan.add(
        Mount(
            target="/dev/pts",
            fstype="devpts",
            source="devpts",
            flags=MS_NOSUID | MS_NOEXEC,
            data="newinstance,ptmxmode=0666,mode=0620",
            reason="devpts(5) newinstance: the container's own ptys, not the host's",
        )
    )
    plan.add(
        Mount(
            target="/dev/shm",
            fstype="tmpfs",
            source="shm",
            flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data="mode=1777,size=65536k",
            reason="POSIX shared memory (shm_overview(7)), private to the container",
        )
    )
    for path, target in DEV_LINKS:
        if path not in own:
            plan.add(Symlink(path=path, target=target))
    # The user's mounts come after the standard ones, so a -v or --tmpfs on
    # /tmp or under /dev is not hidden by them (docker does the same).
    for s in user_mounts(spec, volume_root):
        plan.add(s)
    for s in _etc_mounts(etc, network):
        plan.add(s)
    for m in spec.mounts:
        for s in _bundle_mount(m):
            plan.add(s)
    for key, value in spec.sysctls:
        plan.add(S.SetSysctl(key=key, value=value))
    if init is not None:
        # Our own /dev tmpfs always has room for the mountpoint, even with --read-only.
        plan.add(
            Mount(
                target=INIT_PATH,
                source=init,
                flags=MS_BIND,
                reason="--init: tini becomes PID 1; it reaps orphaned processes and forwards signals to the "
                "command, which a plain command as PID 1 does not (pid_namespaces(7))",
                create="file",
                host_source=True,
            )
        )
        plan.add(RemountReadonly(target=INIT_PATH, reason="the container must not replace its own init"))
    # --device: the host's device node, after every mount (as runc), so no
    # mount hides it. Opening it is allowed by its rule in the device cgroup.
    for d in spec.devices:
        if rootless:
            plan.add(
                Mount(
                    target=d.path,
                    source=d.host,
                    flags=MS_BIND,
                    reason=f"--device {d.host}, in a user namespace: mknod(2) needs CAP_MKNOD in the host's, "
                    "so the host's node is bind-mounted onto an empty file; "
                    + (f"the device cgroup allows it '{d.access}'" if remap is not None else
                       "there is no device cgroup (rootless), the node's own permissions decide"),
                    create="file",
                    host_source=True,
                )
            )
        else:
            plan.add(
                MakeDevice(
                    path=d.path,
                    major=d.major,
                    minor=d.minor,
                    mode=d.mode,
                    kind=d.kind,
                    make_parent=True,
                    reason=f"--device {d.host}: a node with the host device's numbers and mode; the device "
                    f"cgroup allows it '{d.access}' (mknod(2))",
                )
            )
    for s in (security.masks if security else ()):
        plan.add(s)
    if spec.read_only and not (rootfs.mode == "bind" and not rootfs.writable):  # (that one is read-only already)
        plan.add(RemountReadonly(target="", reason="--read-only: the root filesystem cannot be written"))
    if "uts" in spec.namespaces and "uts" not in sharing:  # a joined one keeps the other's hostname
        plan.add(SetHostname(hostname=hostname))
    plan.add(NewSession(tty=spec.tty))
    if setup_first:
        plan.add(AwaitRelease(after_setup=True))
        if later:
            plan.add(Unshare(namespaces=later))
        for s in cgroup_mounts(cgroup_view, spec):
            plan.add(s)
    if runtime_hooks:
        plan.add(S.ReportMounted())
        plan.add(S.AwaitMounted())
        for kind in runtime_hooks:
            plan.add(_hooks(spec, kind, S.PARENT, "creating"))
        plan.add(ReleaseChild())
        plan.add(AwaitExec())
        plan.add(AwaitRelease(again=True))
    if spec.hooks_of("createContainer"):
        plan.add(_hooks(spec, "createContainer", S.CHILD, "creating"))
    for s in (security.before_pivot if security else ()):
        plan.add(s)
    if spec.use_chroot:
        plan.add(Chroot(root=rootfs.target))
    else:
        plan.add(PivotRoot(root=rootfs.target))
    # Inside the new root: only system calls from here on.
    plan.add(SetWorkdir(workdir=spec.cwd()))
    plan.add(ResetSignals())
    for s in (security.inside if security else ()):
        if detached and isinstance(s, RearmParentDeath):
            s = RearmParentDeath(outlive=True)
        if spec.preserve_fds and isinstance(s, S.CloseOnExec):
            s = S.CloseOnExec(first=3 + spec.preserve_fds)  # the engine's fds reach the command
        plan.add(s)
    if wait_for_start:
        plan.add(AwaitStart())
    if spec.hooks_of("startContainer"):
        plan.add(_hooks(spec, "startContainer", S.INSIDE, "created"))
    env = spec.environment(hostname)
    argv = spec.argv() if init is None else (INIT_PATH, "--", *spec.argv())
    plan.add(Exec(argv=argv, env=tuple(env.items())))
    if spec.hooks_of("poststart") and not wait_for_start:  # (after `create`, `start` runs them)
        plan.add(_hooks(spec, "poststart", S.PARENT, "running"))
    if remap is not None:
        plan.steps[plan.steps.index(opening)] = S.OpenHostPaths(paths=_host_paths(plan))
    return plan


def _host_paths(plan: Plan) -> tuple[str, ...]:
    """Every host path a mount of the plan comes from, in order, once."""
    out: dict[str, None] = {}
    for s in plan.steps:
        if isinstance(s, MountRootfs):
            out.update(dict.fromkeys(s.host_paths))
        elif isinstance(s, Mount) and s.host_source and s.flags & MS_BIND:
            out[s.source] = None
    return tuple(out)


# --- the user's mounts: -v, --mount, --tmpfs, the image's Volumes --------------


def volume_steps(spec, volume_root: str, *, container: str = "") -> list[Step]:
    """Before anything else: each named or anonymous volume exists (made on first use)."""
    return [S.EnsureVolume(name=v.name, path=f"{volume_root}/{v.name}", anonymous=v.anonymous, container=container)
            for v in spec.named_volumes]


def user_mounts(spec, volume_root: str = "") -> list[Step]:
    """Every -v, --mount and --tmpfs, parents before children (docker sorts
    them by the depth of the container path, so /data/sub is mounted on top
    of /data, never hidden by it)."""
    mounts = [*spec.volumes, *spec.named_volumes, *spec.tmpfs]
    mounts.sort(key=lambda m: len([p for p in m.target.split("/") if p]))  # stable: same depth keeps its order
    slave = any("slave" in v.propagation for v in spec.volumes)
    out: list[Step] = []
    for m in mounts:
        if isinstance(m, Tmpfs):
            out.append(Mount(
                target=m.target, fstype="tmpfs", source="tmpfs", flags=m.flags, data=m.data or "mode=1777",
                reason="--tmpfs: a private in-memory directory (ro, noexec, nosuid, nodev are mount flags; "
                "size, mode, nr_inodes, uid, gid are tmpfs(5) options)"))
        elif isinstance(m, NamedVolume):
            vdir = f"{volume_root}/{m.name}"
            if not m.nocopy:
                out.append(S.FillVolume(name=m.name, target=m.target, path=vdir))
            kind = "anonymous volume" if m.anonymous else "volume"
            out.append(Mount(
                target=m.target, source=f"{vdir}/_data", flags=MS_BIND | MS_REC, host_source=True,
                reason=f"{kind} {m.name}: its directory in the store appears at {m.target} and outlives the "
                "container; the mountpoint is created inside the root without following symlinks"))
            if m.readonly:
                out.append(RemountReadonly(target=m.target, reason=f"{kind} {m.name} mounted read-only"))
            if slave:
                out.append(S.SetPropagation(target=m.target, propagation="rprivate"))
        else:
            out.append(Mount(
                target=m.target, source=m.source, flags=MS_BIND | MS_REC,
                reason="-v: the host path appears inside the container; the mountpoint is created "
                "inside the root without following symlinks",
                create="dir" if m.is_dir else "file", host_source=True))
            if m.readonly:
                out.append(ReadonlyRecursive(target=m.target, reason="-v ...:ro, with whatever is mounted below "
                                             "the host path (a bind of / brings /proc along)"))
            if m.propagation or slave:
                out.append(S.SetPropagation(target=m.target, propagation=m.propagation or "rprivate"))
    return out


def _etc_writes(etc: EtcFiles | None) -> list[Step]:
    if etc is None:
        return []
    out: list[Step] = []
    if etc.hosts and etc.hosts_content is not None:
        out.append(S.WriteFile(path=etc.hosts, target="/etc/hosts", content=etc.hosts_content,
                               reason="hosts(5): localhost and the --add-host lines; no network, so no peers"))
    if etc.resolv and etc.resolv_content is not None:
        out.append(S.WriteFile(path=etc.resolv, target="/etc/resolv.conf", content=etc.resolv_content,
                               reason="resolv.conf(5): the --dns nameservers, else the host's (without its "
                               "127.x ones, which are the host's own loopback, unreachable from the container), "
                               "as docker does"))
    return out


def _etc_mounts(etc: EtcFiles | None, network: NetworkAttachment | None) -> list[Step]:
    """/etc/hosts and /etc/resolv.conf bound from the host (docker bind-mounts them the same way)."""
    hosts = etc.hosts if etc is not None else (network.hosts if network is not None else "")
    out: list[Step] = []
    if hosts:
        if etc is not None and etc.owner:
            why = (f"--network container:{etc.owner}: the names of that container, whose network namespace this "
                   "one shares (docker shares the file the same way)")
        elif network is not None:
            why = (f"names on network {network.network.name}: this container and its peers, kept current by "
                   "the runtime (docker bind-mounts its /etc/hosts the same way)")
        else:
            why = "--add-host: the names given, on top of localhost"
        out.append(Mount(target="/etc/hosts", source=hosts, flags=MS_BIND, reason=why, create="file",
                         host_source=True))
    if etc is not None and etc.resolv:
        why = "resolv.conf(5): where the container's resolver sends its queries"
        if etc.owner:
            why = f"--network container:{etc.owner}: that container's nameservers"
        out.append(Mount(target="/etc/resolv.conf", source=etc.resolv, flags=MS_BIND, reason=why, create="file",
                         host_source=True))
    return out


def _hooks(spec, kind: str, phase: str, status: str) -> Step:
    return S.RunHooks(phase=phase, kind=kind, hooks=spec.hooks_of(kind), state=spec.hook_state, status=status,
                      fatal=kind not in ("poststart", "poststop"))


def _mount_targets(spec) -> list[str]:
    """Where the user's and the bundle's mounts go (-v, --mount, --tmpfs, named volumes, config.json)."""
    out = [v.target for v in (*spec.volumes, *spec.tmpfs, *spec.named_volumes)]
    return out + [m.target for m in spec.mounts]


def _bundle_mount(m) -> list[Step]:
    """An OCI bundle's mount (spec.ExtraMount) as steps."""
    if m.fstype is not None:
        return [Mount(target=m.target, fstype=m.fstype, source=m.source, flags=m.flags, data=m.data or None,
                      reason="config.json mounts: a filesystem the bundle asks for")]
    steps = [Mount(target=m.target, source=m.source, flags=MS_BIND | (MS_REC if m.recursive else 0),
                   reason="config.json mounts: a host path bound into the container; the mountpoint is "
                   "created inside the root without following symlinks",
                   create="dir" if m.is_dir else "file", host_source=True)]
    if m.flags:
        steps.append(S.RemountFlags(target=m.target, flags=m.flags))
    return steps


def build_exec_plan(
    spec,
    *,
    pid: int,
    pid_start: int,
    namespaces: tuple[str, ...],
    argv: tuple[str, ...],
    env: tuple[tuple[str, str], ...],
    workdir: str,
    tty: bool,
    cgroup_steps: list[Step] = (),
    security=None,
    detached: bool = False,
) -> Plan:
    """``exec``: a new process in a running container (pure).

    The runtime makes itself non-dumpable first (runc CVE-2019-5736: root in
    the container must not open our /proc/PID/exe or memory while our code
    runs among its namespaces), opens PID 1's namespaces and joins its user
    (rootless) and PID namespaces, whose effect is on the next child; the
    child joins the others, the mount namespace last: from then on its root
    is the container's, and it drops privileges exactly as a run does, with
    the container's own security settings.
    """
    plan = Plan()
    plan.add(S.MakeUndumpable(phase=S.BEFORE_FORK))
    plan.add(S.OpenNamespaces(pid=pid, pid_start=pid_start, types=namespaces))
    for ns in ("user", "pid"):
        if ns in namespaces:
            plan.add(S.JoinNamespace(ns=ns, phase=S.BEFORE_FORK))
    plan.add(Fork())
    for s in cgroup_steps:
        plan.add(s)
    plan.add(ReleaseChild())
    plan.add(AwaitExec())
    plan.add(S.DieWithRuntime())
    plan.add(AwaitRelease())
    for ns in ("cgroup", "ipc", "uts", "net", "mnt"):
        if ns in namespaces:
            plan.add(S.JoinNamespace(ns=ns))
    plan.add(S.OpenRoot())
    plan.add(NewSession(tty=tty))
    for s in (security.before_pivot if security else ()):
        if not isinstance(s, S.MakeUndumpable):  # done by the runtime already, and inherited
            plan.add(s)
    plan.add(SetWorkdir(workdir=workdir))
    plan.add(ResetSignals())
    for s in (security.inside if security else ()):
        if detached and isinstance(s, RearmParentDeath):
            s = RearmParentDeath(outlive=True)
        plan.add(s)
    plan.add(Exec(argv=argv, env=env))
    return plan


def build_connect_plan(att: NetworkAttachment, *, pid: int, pid_start: int, runtime_pid: int, ifname: str,
                       default_route: bool, hostname: str = "", ip: str = "", aliases: tuple[str, ...] = ()) -> Plan:
    """``network connect``: a running container gets one more interface
    (pure). The same steps as a run's bridge network, on the namespace of
    its PID 1 (pinned and checked) instead of a new one; the lease is held
    by the container's runtime, so it goes when the container ends."""
    plan = Plan()
    # first: a container that has exited meanwhile is refused before anything is taken
    plan.add(S.OpenNamespaces(pid=pid, pid_start=pid_start, types=("net",), container=att.name))
    for s in interface_steps(att, ifname=ifname, default_route=default_route, hostname=hostname, ip=ip,
                             aliases=aliases, holder=runtime_pid):
        plan.add(s)
    return plan


def build_disconnect_plan(lease) -> Plan:
    """``network disconnect``: the lease (a network.store.Lease) and its veth go (pure)."""
    plan = Plan()
    plan.add(S.ReleaseLease(network=lease.network, container=lease.container, ip=lease.ip))
    plan.add(S.DeleteLink(name=lease.veth))
    return plan


CGROUP_DIR = "/sys/fs/cgroup"


def cgroup_mounts(view, spec) -> list[Step]:
    """What the container sees at /sys/fs/cgroup: its own cgroup, read-only
    (Docker's layout), so ``cat /sys/fs/cgroup/memory.max`` answers inside
    and runtimes that size themselves from it (the JVM, Go, Node) see the
    limits. Nothing without a cgroup (rootless, or a host without one).
    ``--privileged`` leaves them writable, as Docker does."""
    if view is None:
        return []
    ro = not getattr(spec.security, "privileged", False)
    kernel_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    out: list[Step] = []
    if view.version == "v2" and "cgroup" in spec.namespaces:
        out.append(Mount(
            target=CGROUP_DIR, fstype="cgroup2", source="cgroup2", flags=kernel_flags | (MS_RDONLY if ro else 0),
            reason="cgroups(7), cgroup_namespaces(7): mounted from inside the container's cgroup namespace, the "
            "hierarchy's root is the container's own cgroup, so its limits are the files at the top"
            + ("; read-only, so it cannot raise them" if ro else ""),
            create="no",
        ))
        return out
    if view.version == "v2":
        (_, leaf, _), = view.dirs
        out.append(Mount(
            target=CGROUP_DIR, source=leaf, flags=MS_BIND, host_source=True, create="no",
            reason="--cgroupns host: a fresh cgroup2 would show the host's whole tree, so only the container's "
            "own cgroup directory is bound in",
        ))
        if ro:
            out.append(RemountReadonly(target=CGROUP_DIR, reason="the container must not raise its own limits",
                                       flags=kernel_flags))
        return out
    out.append(Mount(
        target=CGROUP_DIR, fstype="tmpfs", source="tmpfs", flags=kernel_flags, data="mode=755", create="no",
        reason="cgroup v1 has one hierarchy per controller: a small tmpfs holds a directory for each, as on the host "
        "(and as Docker does)",
    ))
    for name, leaf, _ in view.dirs:
        target = f"{CGROUP_DIR}/{name}"
        out.append(Mount(
            target=target, source=leaf, flags=MS_BIND, host_source=True,
            reason=f"the container's own cgroup in the {name} hierarchy, so its limit files are at the top",
        ))
        if ro:
            out.append(RemountReadonly(target=target, reason="the container must not raise its own limits",
                                       flags=kernel_flags))
    for name, _, ctrls in view.dirs:
        for ctrl in ctrls:
            if ctrl != name:
                out.append(Symlink(path=f"{CGROUP_DIR}/{ctrl}", target=name,
                                   reason=f"{name} is one hierarchy with several controllers: each name leads to it, "
                                   "as on the host"))
    if ro:
        out.append(RemountReadonly(target=CGROUP_DIR, reason="nothing can be added next to the hierarchies",
                                   flags=kernel_flags))
    return out
