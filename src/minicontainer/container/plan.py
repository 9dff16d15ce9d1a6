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


def network_steps(att: NetworkAttachment) -> list[Step]:
    net = att.network
    return [
        S.LeaseAddress(network=net.name, subnet=net.subnet, container=att.container, name=att.name, veth=att.veth,
                       hosts=att.hosts),
        S.EnsureBridge(bridge=net.bridge, gateway=net.gateway, prefixlen=net.prefixlen),
        S.CreateNetns(),
        S.AddVeth(host=att.veth, peer=att.peer, bridge=net.bridge),
        S.ConfigureEth(peer=att.peer, prefixlen=net.prefixlen, gateway="" if net.internal else net.gateway),
    ]


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
    detached: bool = False,
    wait_for_start: bool = False,
    init: str | None = None,
    network: NetworkAttachment | None = None,
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
    ``network``: a bridge network to join (its namespace is made and
    configured by the runtime first: threads cannot be started once the
    runtime has unshared its PID namespace, clone(2) EINVAL).
    """
    plan = Plan()
    for s in (network_steps(network) if network is not None else ()):
        plan.add(s)
    # The runtime, before the fork.
    for s in userns_steps:
        plan.add(s)
    if "pid" in spec.namespaces:
        plan.add(UnsharePid())
    joined = dict(spec.join_namespaces)
    for ns, path in spec.join_namespaces:
        plan.add(S.OpenNamespacePath(ns=ns, path=path))
    plan.add(Fork(keep_fds=spec.preserve_fds))
    # The runtime, after the fork: the child waits until it is in its cgroup.
    for s in cgroup_steps:
        plan.add(s)
    plan.add(ReleaseChild())
    plan.add(AwaitExec())
    # The child: namespaces, its root and its mounts, before pivot_root.
    plan.add(AwaitRelease())
    if network is not None:
        plan.add(S.JoinNamespace(ns="net"))
    for ns in ("cgroup", "ipc", "uts", "net"):
        if ns in joined and not (ns == "net" and network is not None):
            plan.add(S.JoinNamespace(ns=ns, path=joined[ns]))
    unshared = ("mnt", "uts", "ipc", "cgroup") if network is not None else ("mnt", "uts", "ipc", "net", "cgroup")
    child_ns = tuple(ns for ns in unshared if ns in spec.namespaces and ns not in joined)
    plan.add(Unshare(namespaces=child_ns))
    if "net" in spec.namespaces:
        plan.add(S.LoopbackUp())
    plan.add(MakeMountsPrivate())
    plan.add(
        MountRootfs(
            target=rootfs.target,
            layer=rootfs.layer,
            lower=rootfs.lower,
            readonly=spec.read_only,
            mode=rootfs.mode,
            writable=rootfs.writable,
            lower_stack=rootfs.lower_stack,
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
    for vol in spec.volumes:
        plan.add(
            Mount(
                target=vol.target,
                source=vol.source,
                flags=MS_BIND | MS_REC,
                reason="-v: the host path appears inside the container; the mountpoint is created "
                "inside the root without following symlinks",
                create="dir" if vol.is_dir else "file",
                host_source=True,
            )
        )
        if vol.readonly:
            plan.add(ReadonlyRecursive(target=vol.target, reason="-v ...:ro, with whatever is mounted below the "
                                       "host path (a bind of / brings /proc along)"))
    for t in spec.tmpfs:
        plan.add(
            Mount(
                target=t.target,
                fstype="tmpfs",
                source="tmpfs",
                flags=t.flags,
                data=t.data or "mode=1777",
                reason="--tmpfs: a private in-memory directory (ro, noexec, nosuid, nodev are mount flags; "
                "size, mode, nr_inodes, uid, gid are tmpfs(5) options)",
            )
        )
    if network is not None:
        plan.add(
            Mount(
                target="/etc/hosts",
                source=network.hosts,
                flags=MS_BIND,
                reason=f"names on network {network.network.name}: this container and its peers, kept current by "
                "the runtime (docker bind-mounts its /etc/hosts the same way)",
                create="file",
                host_source=True,
            )
        )
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
                    reason=f"--device {d.host}, rootless: mknod(2) needs CAP_MKNOD in the host's user namespace, "
                    "so the host's node is bind-mounted onto an empty file; there is no device cgroup, the "
                    "node's own permissions decide",
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
    if "uts" in spec.namespaces:
        plan.add(SetHostname(hostname=hostname))
    plan.add(NewSession(tty=spec.tty))
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
    env = spec.environment(hostname)
    argv = spec.argv() if init is None else (INIT_PATH, "--", *spec.argv())
    plan.add(Exec(argv=argv, env=tuple(env.items())))
    return plan


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
