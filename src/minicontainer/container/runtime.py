"""The only module that knows the order of a run, from spec to exit code.

    1. resolve the image (rootfs.py: a name in the store, a directory, or a
       tarball); choose the id, name and hostname; lay out the layer dirs
    2. ask the cgroup and security layers for their steps, and build the
       plan (plan.py) — or, with --dry-run, print it and stop
    3. reserve the name and write state.json (state.py)
    4. start: the interpreter (interpreter.py) carries out the plan's steps
       in the runtime, forks, and carries out the child's, up to exec
       (process.py holds the pipes between the two)
    5. wait, forwarding signals; report OOM/pids events
    6. clean up: kill what is left in the cgroup, remove it, and with --rm
       the writable layer and the state

Whatever fails, step 6 runs: no cgroup, layer, state or process is left.
The security and cgroup layers are imported, never guarded: if one cannot
be loaded the run stops with an error instead of running with less
isolation.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from minicontainer import paths
from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.errors import ContainerError, ImageError, MiniError, NotRootError, UsageError, warn
from minicontainer.records import replace  # not dataclasses': that import is ~9 ms of every run (records.py)
from minicontainer.container.hostcheck import check_namespaces, check_shell, find_init, require_root
from minicontainer.container.rootfs import (ResolvedImage, make_shifted, needs_mountpoints, prepare_layer, remove_layer_dir,
                                           resolve_image, storage_mode)
from minicontainer.container.config import save_spec
from minicontainer.container.state import (
    LOG_FILE,
    START_FIFO,
    ContainerState,
    StateStore,
    namespace_inodes,
    new_id,
    pid_alive,
    proc_start_time,
)


def sweep_dead_runtimes(store: StateStore) -> None:
    """Finish the cleanup of containers whose runtime was killed (SIGKILL, a
    crash): kill what is left in their cgroup and remove it (with --pid host
    the kernel does not take the other processes down with PID 1), and for
    --rm containers remove the layer and the state too (reliability case 33).
    Each is swept once: its state is saved as exited.

    What can be swept is swept: only a cgroup that still holds processes
    (SIGKILL did not take yet) leaves the container for the next time. A
    host without a usable cgroup filesystem ran it without a cgroup, so
    there is nothing to kill there, and its layer and state go anyway."""
    for st in store.dead_runtimes():
        stop_port_proxy(st)
        try:
            release_network(st.id)
        except (MiniError, OSError):
            pass  # its lease is stale: the next lease on that network reclaims it
        if os.geteuid() == 0 and not _sweep_cgroup(st):
            continue  # try again next time
        if st.remove:
            if st.layer_dir:
                remove_layer_dir(st.layer_dir)
            vols = volumes_of(store, st)
            store.remove(st)
            release_volumes(vols, st.id, half_made=False)
        else:
            try:
                store.save(st)
            except OSError:
                pass


def saved_cgroup(resources) -> str:
    """The cgroup's place as the state keeps it (cgroups.manager_of reads it):
    a --cgroup-parent, or "/" + an OCI bundle's whole cgroupsPath."""
    if getattr(resources, "cgroup_path", None):
        return "/" + resources.cgroup_path
    return getattr(resources, "cgroup_parent", None) or ""


def _shifted_image(image: ResolvedImage, remap, layer: Path):
    """--userns as root: the image's directories as copies with their owners
    in the container's range (idshift.py). A store image's copies are cached
    and shared; a directory given as the image is copied into the container's
    own directory (it may change before the next run). Returns (lower,
    lower_stack, shifts); the copies are made by prepare_layer."""
    from minicontainer.container import idshift

    if image.image_id.startswith("dir:"):
        own = str(layer / "image")
        return own, (), ((image.rootfs, own),)
    shifts = tuple((d, idshift.cached_copy(d, remap)) for d in (image.rootfs, *image.lower_stack))
    return shifts[0][1], tuple(dst for _, dst in shifts[1:]), shifts


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _sweep_cgroup(st: ContainerState) -> bool:
    """Kill and remove what is left of a dead runtime's cgroup; False while
    a process of it is still alive."""
    from minicontainer.cgroups import manager_of

    try:
        m = manager_of(st.id, st.cgroup)
    except (MiniError, OSError):
        return True  # no usable cgroup filesystem here: the container could not have had a cgroup
    try:
        m.destroy()
        return True
    except (MiniError, OSError) as e:
        try:
            alive = m.procs()
        except (MiniError, OSError):
            alive = []
        if alive:
            return False
        warn(f"container {st.short_id}: its cgroup could not be removed ({e}); removing the rest")
        return True


def release_network(container_id: str) -> None:
    """The container's leases go (its peers' /etc/hosts lose it) and its veth
    with them. The veth would vanish with the container's network namespace
    anyway (veth(4)), but the kernel frees a namespace later, asynchronously."""
    root = paths.home() / "networks"
    if not root.is_dir():
        return  # no network was ever made: nothing to import or read
    from minicontainer.network.store import NetworkStore

    for lease in NetworkStore(root).release(container_id):
        from minicontainer.syscalls.linux import Linux

        Linux().net_delete_link(lease.veth)


def stop_port_proxy(state: ContainerState) -> None:
    """The container's published ports close with it: its proxy is stopped."""
    if state.proxy_pid:
        from minicontainer.syscalls.linux import Linux

        Linux().stop_process(state.proxy_pid, state.proxy_start)
    state.proxy_pid, state.proxy_start, state.ports = 0, 0, []


def volumes_of(store: StateStore, state: ContainerState) -> list:
    """The volumes a container names (read before its state is removed), as
    (name, anonymous). From container/config.py, not volumes.py: the end of
    every --rm run reads this, and most name none (volumes.py is ~1 ms to load)."""
    from minicontainer.container.config import named_volumes, saved_fields

    return named_volumes(saved_fields(store.containers / state.id))


def release_volumes(vols: list, cid: str, *, half_made: bool) -> None:
    """A removed container's anonymous volumes go (--rm, as docker), and, if it
    never started, the volumes its run made; a failure is a warning, the rest is removed."""
    if not vols:
        return
    from minicontainer.volumes import release

    try:
        release(vols, cid, half_made=half_made)
    except (MiniError, OSError) as e:
        warn(f"could not remove the container's volumes: {e}")


_SHARE_FLAG = {"net": "network", "pid": "pid", "ipc": "ipc", "uts": "uts"}
HOSTS_FILE = "hosts"  # in a container's state directory (network/store.py writes it)
RESOLV_FILE = "resolv.conf"


def _shared_hostname(shared, default: str) -> str:
    """docker: a container on another's UTS namespace has its hostname (the
    kernel's answer), and one on another's network namespace takes it too."""
    for ns in ("uts", "net"):
        sh = next((sh for sh in shared if ns in sh.types), None)
        if sh is not None:
            try:
                return StateStore().get(sh.id).hostname or default
            except MiniError:
                return default
    return default


def _network_files(cid: str, depth: int = 0) -> tuple[str, str]:
    """The /etc/hosts and /etc/resolv.conf of container ``cid``'s network
    namespace: its own files, or those of the container whose namespace it
    joined in turn ("" where there is none: --network none or host)."""
    store = StateStore()
    d = store.containers / cid
    hosts, resolv = d / HOSTS_FILE, d / RESOLV_FILE
    if depth < 8 and not hosts.exists() and not resolv.exists():
        from minicontainer.container.config import load_spec

        try:
            owner = dict(load_spec(d).share_with).get("net")
        except MiniError:
            owner = None
        if owner:
            return _network_files(owner, depth + 1)
    return (str(hosts) if hosts.exists() else "", str(resolv) if resolv.exists() else "")


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # docker's, when the host has no nameserver a container can reach


def resolv_content(dns=(), *, host_net: bool = False, host_file: str = "/etc/resolv.conf") -> str:
    """A container's resolv.conf(5), as docker writes it: the host's, with
    --dns replacing its nameservers; in a network namespace of its own the
    host's 127.x and ::1 nameservers go (the container's loopback is not the
    host's), and if none is left, docker's defaults."""
    import ipaddress

    lines = _read_lines(host_file)
    keep, servers = [], []
    for line in lines:
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            try:
                if not host_net and ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            servers.append(fields[1])
        elif fields and not line.lstrip().startswith(("#", ";")):
            keep.append(line)
    if dns:
        servers = list(dns)
    elif not servers and not host_net:
        servers = list(DEFAULT_DNS)
    return "".join(f"nameserver {ns}\n" for ns in servers) + "".join(line + "\n" for line in keep)


def _interrupted(sig, frame):
    raise MiniError(f"interrupted by {signal.Signals(sig).name} while setting up; cleaned up", None,
                    exit_code=128 + sig)


def finish(store: StateStore, state: ContainerState, cgroup, *, remove: bool, half_made: bool = False) -> str | None:
    """The end of every run, foreground or detached: the state says exited,
    the cgroup (when it is ours) is removed, and with ``remove`` (--rm, or a
    container that never started) the layer and the state go too, with its
    anonymous volumes, and (``half_made``: it never started) the volumes its
    run created. Returns what could not be cleaned up, if anything (for --report)."""
    state.status = "exited"
    state.finished = time.time()
    error = None
    stop_port_proxy(state)
    try:
        release_network(state.id)
    except (MiniError, OSError) as e:
        error = f"could not release the container's network address: {e}"
        warn(error)
    if cgroup is not None:
        try:
            cgroup.destroy()
        except MiniError as e:
            error = str(e)
            warn(error)
    if not store.owns(state):
        return error  # the name was taken, or a signal came first: nothing of ours to remove
    if remove:
        remove_layer_dir(Path(state.layer_dir))
        vols = volumes_of(store, state)
        store.remove(state)
        release_volumes(vols, state.id, half_made=half_made)
    else:
        store.save(state)
    return error


def finish_watched(args: dict, code: int) -> None:
    """The end of a detached run, in the monitor's watcher (watch.py)."""
    store = StateStore(Path(args["root"]))
    state = store._load(args["id"])
    if state is None:
        return  # removed meanwhile (rm -f): nothing left to record
    cgroup = None
    if args["cgroup"] is not None:
        from minicontainer.cgroups import manager_of
        from minicontainer.errors import CgroupError

        try:
            cgroup = manager_of(*args["cgroup"])
        except CgroupError:
            cgroup = None
    state.exit_code = code
    state.exit_reason = exit_report(cgroup) or ""
    from minicontainer.container.config import load_spec
    from minicontainer.container.spec import should_restart

    spec = load_spec(store.containers / state.id)
    again = should_restart(spec.restart, spec.restart_max, code, state.restart_count, store.stop_requested(state))
    finish(store, state, cgroup, remove=args["remove"] and not again)
    if again:
        from minicontainer.container import monitor

        monitor.restart(store, state)  # never returns


def exit_report(cgroup) -> str | None:
    """Why the container ended, if a limit did it (OOM kill, pids limit); read before the cgroup goes."""
    if cgroup is None:
        return None
    try:
        return cgroup.exit_report()
    except (MiniError, OSError):
        return None


class Runner:
    """Runs one ContainerSpec. ``out`` gets --explain/--dry-run text."""

    def __init__(self, spec, *, explain: bool = False, out=None, sc=None, userns: bool = False,
                 existing: ContainerState | None = None, wait_for_start: bool = False, recorder=None,
                 image: ResolvedImage | None = None, before_remove=None, handoff=None):
        self.spec = spec
        # ``existing``: `start` of a container that exited (or was created):
        # the same id, name and layer, fresh namespaces and cgroup.
        self.existing = existing
        self.wait_for_start = wait_for_start
        self.detached = False  # set by run_detached: a monitor owns the container
        self.recorder = recorder  # a report.Recorder with --report, else None (its module stays unimported)
        # ``build`` runs its RUN steps on a stack of layers that is no image
        # yet (``image``), and takes the upper directory as the step's layer
        # (``before_remove(layer_dir)``, called once the container has exited,
        # before the --rm cleanup).
        self._image = image
        self._before_remove = before_remove
        # ``minicontainer-runc create`` (oci/runtime.py): called with the
        # container and its state once PID 1 is set up and waiting; it does
        # not return: this process exits and PID 1 is left to our caller
        # (the engine's subreaper reaps it, runc's model), with no cleanup.
        self._handoff = handoff
        # Rootless mode (userns.py): whenever we are not the host's root.
        # ``unprivileged`` also rules out cgroups and mknod. Root's --userns (or
        # the userns-remap setting, or a container made so) puts the container
        # in a subordinate range instead (``remapped``, idshift.py).
        from minicontainer.container.userns import host_uid, remap_setting

        self.unprivileged = host_uid() != 0
        self._userns_asked = userns
        # (the setting applies to new containers: one made without a range keeps
        # its layer's owners, and `start` runs it as it was made)
        # An OCI bundle with its own user namespace (spec.id_mapping, oci/config.py)
        # takes the same path, with the bundle's maps.
        self.remapped = not self.unprivileged and (spec.id_mapping is not None or image is None and bool(
            userns or spec.userns_remap or (remap_setting() and existing is None)))
        self.userns = userns or self.unprivileged or self.remapped
        self.explain = explain
        self.out = out if out is not None else sys.stderr
        self._sc = sc
        self.cgroup = None  # a cgroups manager, when limits/cgroups are in use
        self._legend: dict[str, str] = {}

    @property
    def sc(self):
        if self._sc is None:
            from minicontainer.syscalls.linux import Linux

            self._sc = Linux()
        return self._sc

    # -- planning ---------------------------------------------------------
    def make_plan(self, *, dry_run: bool = False):
        image = self._image or resolve_image(self.spec.image, build=not dry_run)
        if image.config is not None:
            self.spec = self.spec.with_image(image.config)  # its Cmd, Env, WorkingDir, User ...
        spec = self.spec
        if self.existing is not None:
            cid, name, hostname = self.existing.id, self.existing.name, self.existing.hostname
            layer = Path(self.existing.layer_dir)
        else:
            cid = new_id()
            name = spec.name or cid[:12]
            hostname = spec.hostname or name
            layer = paths.home() / "containers" / cid
        mode = "bind" if image.in_place else storage_mode(layer.parent)
        userns_steps = []
        remap = None
        if self.userns:
            from minicontainer.container import userns

            if "pid" not in spec.namespaces:
                raise UsageError(
                    "--pid host cannot be combined with a user namespace (" +
                    ("--userns" if self.remapped else "rootless mode") + ")",
                    "mounting a /proc for the host's PID namespace needs privilege over it (proc(5)); " +
                    ("drop --userns or --pid host" if self.remapped else "run as root, or drop --pid host"),
                )
            if spec.id_mapping is not None:
                if self.unprivileged:
                    raise NotRootError("config.json: linux.uidMappings: a user namespace with mappings needs root "
                                       "here (rootless minicontainer-runc maps only the caller)",
                                       "run minicontainer-runc as root, or remove the user namespace")
                if not image.in_place:
                    # (`minicontainer start` of a stopped one would take the bundle's root for an image and
                    # shift its owners a second time)
                    raise UsageError("this container has config.json's user namespace: only its engine starts it, "
                                     "through minicontainer-runc", "create it again with the engine")
                remap = spec.id_mapping  # the bundle's own maps; its root was chowned by the engine
            elif self.remapped:
                remap = userns.remap_mapping(spec.userns_remap or None)
                if spec.named_volumes:
                    # The volume store is root's (0700) and a new volume is filled by the child, which is the
                    # range's root by then: refused before anything is made, rather than failing half-way.
                    raise UsageError(
                        "volumes cannot be used with --userns as root yet: the volume store is root's, out of "
                        "the range's reach (the image's VOLUMEs count too)",
                        f"bind a directory the range owns instead: chown {remap.uids[0].outside}:"
                        f"{remap.gids[0].outside} DIR, then -v DIR:/path")
                self.spec = spec = replace(spec, userns_remap=remap.user)  # `start` maps it the same way
            else:
                userns_steps = [S.UserNamespace(mapping=userns.plan_mapping())]
            if not userns.overlay_allowed():
                mode = "bind"  # overlayfs in a user namespace needs Linux 5.11
        if image.lower_stack and mode == "bind":
            raise ImageError(f"image {image.name} has layers, which only overlayfs can stack",
                             "run it where overlayfs works (not MINICONTAINER_STORAGE=copy, not on an overlay root)",
                             exit_code=125)
        # a layered image's /tmp and /dev may be in any layer: give it a layer for mountpoints
        writable = not spec.read_only or bool(image.lower_stack) or needs_mountpoints(spec, image.rootfs)
        writable = writable or image.in_place  # mountpoints are made in the bundle's root, then it is made read-only
        lower, lower_stack, shifts, idmapped = image.rootfs, image.lower_stack, (), False
        if remap is not None and not image.in_place:  # (an OCI bundle's root: as the engine prepared it)
            from minicontainer.container import idshift

            # the image's owners moved into the range: idmapped, or else a copy (idshift.py);
            # `start` of a container keeps the way its layer was made with
            if self.existing is not None:
                idmapped = (layer / "idmapped").is_dir()
            else:
                idmapped = mode == "overlay" and image.exists and idshift.idmap_works(image.rootfs, remap)
            if not idmapped:
                lower, lower_stack, shifts = _shifted_image(image, remap, layer)
        image_top = lower
        if mode == "bind" and writable and not image.in_place:
            lower = str(layer / "copy")  # no overlayfs: a private copy, made in run()
        rootfs = P.RootfsLayout(lower=lower, layer=str(layer), mode=mode, writable=writable,
                                lower_stack=lower_stack, image_top=image_top, shifts=shifts, remap=remap,
                                idmapped=idmapped)
        shared = self._shared()
        spec = self.spec  # with the ids of the containers it shares namespaces with
        hostname = _shared_hostname(shared, hostname)
        cgroup_steps = self._cgroup_steps(cid)
        network = self._network(cid, name, dry_run)
        connected = self._connected(cid, name, network, dry_run)
        etc = self._etc_files(cid, network, shared)
        from minicontainer.security import security_steps

        plan = P.build_plan(
            spec,
            hostname=hostname,
            rootfs=rootfs,
            cgroup_steps=cgroup_steps,
            cgroup_view=self.cgroup.view() if self.cgroup is not None else None,
            # the seccomp step comes from the state root's cache when this profile was used before
            security=security_steps(spec.security, cache_dir=StateStore().root / "cache", cache_write=not dry_run),
            userns_steps=userns_steps,
            rootless=self.userns,
            remap=remap,
            detached=self.detached,
            wait_for_start=self.wait_for_start,
            init=find_init() if spec.init else None,
            network=network,
            connected=connected,
            volume_root=str(paths.home() / "volumes") if spec.named_volumes else "",
            container_id=cid,
            shared=shared,
            etc=etc,
        )
        plan.legend = {"ID": cid, "ROOTFS": rootfs.target}
        if network is not None:
            plan.legend["NETWORKS"] = str(paths.home() / "networks")
        if spec.named_volumes:
            plan.legend["VOLUMES"] = str(paths.home() / "volumes")
        self._legend = plan.legend
        if self.existing is not None:
            return plan, self.existing, image, rootfs
        state = ContainerState(
            id=cid,
            name=name,
            image=image.name,
            image_id=image.image_id,
            command=list(spec.argv()),
            hostname=hostname,
            rootfs=rootfs.target,
            layer_dir=str(layer),
            remove=spec.remove,
            cgroup=saved_cgroup(spec.resources),
            stop_signal=image.config.stop_signal if image.config is not None else "",
        )
        return plan, state, image, rootfs

    def _network(self, cid: str, name: str, dry_run: bool):
        """``--network NAME``: the network (``bridge`` is made on first use) and its pieces' names."""
        if not self.spec.network:
            return None
        if self.remapped:
            raise UsageError(f"--network {self.spec.network} cannot be combined with --userns as root yet: the "
                             "network namespace is made by the runtime, outside the container's user namespace",
                             "use --network none or host, or drop --userns")
        if self.userns:
            raise NotRootError(f"--network {self.spec.network} needs root: a rootless container cannot put an "
                               "interface on a host bridge", "run as root, or use --network none")
        from minicontainer.network.store import NetworkStore

        networks = NetworkStore()
        net = networks.named(self.spec.network, save=not dry_run)
        if self.spec.ip:  # refused before anything exists; LeaseAddress checks again under the lock
            from minicontainer.network.store import check_fixed_ip

            check_fixed_ip(net, self.spec.ip)
            if any(lease.ip == self.spec.ip and lease.alive() for lease in networks.leases(net.name)):
                raise ContainerError(f"address {self.spec.ip} is already in use on network {net.name}",
                                     "choose another --ip, or leave it out to get a free one")
        import shutil

        ports = self.spec.published_ports()
        if ports and net.internal:
            # docker publishes nothing of a container on an internal network: it is cut off from outside
            warn(f"published ports are discarded on the internal network {net.name} (it reaches nothing outside)")
            ports = ()
        # IFNAMSIZ (netdevice(7)): interface names have at most 15 characters.
        return P.NetworkAttachment(network=net, container=cid, name=name, veth="veth" + cid[:11],
                                   peer="mcpeer" + cid[:9], hosts=str(StateStore().containers / cid / HOSTS_FILE),
                                   ports=ports, nftables=shutil.which("nft") is not None)

    def _connected(self, cid: str, name: str, network, dry_run: bool) -> tuple:
        """The networks `network connect` added to this container (netconnect.py), made again when it
        starts, after eth0, as docker does: ((NetworkAttachment, ip, aliases), ...)."""
        if self.existing is None or network is None:
            return ()  # a new container has none; connect refuses one without a network of its own
        from minicontainer.container.netconnect import attachment, connected

        records = connected(StateStore().containers / cid)
        if not records:
            return ()
        from minicontainer.network.store import NetworkStore

        networks = NetworkStore()
        out = []
        for rec in records:
            try:
                net = networks.named(rec["network"], save=not dry_run)
            except MiniError as e:
                raise ContainerError(f"container {name} is connected to network {rec['network']}: {e.message}",
                                     f"disconnect it (minicontainer network disconnect {rec['network']} {name}), "
                                     "then start it again") from None
            att = attachment(net, cid, name, network.hosts, network.nftables)
            out.append((att, str(rec.get("ip") or ""), tuple(str(a) for a in rec.get("aliases") or ())))
        return tuple(out)

    def _shared(self) -> tuple:
        """``container:NAME``: each running container whose namespaces are
        joined, with its PID 1 (opened and checked by the plan's
        OpenNamespaces step, before the fork). The spec keeps their ids."""
        if not self.spec.share_with:
            return ()
        flags = ", ".join(f"--{_SHARE_FLAG[ns]} container:{ref}" for ns, ref in self.spec.share_with)
        if self.userns:
            raise NotRootError(f"{flags} needs root: a rootless container cannot join another container's "
                               "namespaces (they belong to the host's user namespace)", "run as root")
        store = StateStore()
        found: dict[str, tuple] = {}
        ids = []
        for ns, ref in self.spec.share_with:
            st = store.get(ref)
            if st.status != "running" or not pid_alive(st.pid, st.pid_start):
                raise ContainerError(f"cannot join container {ref} (--{_SHARE_FLAG[ns]} container:{ref}): it is not "
                                     f"running ({st.status})", f"start it first: minicontainer start {ref}")
            found.setdefault(st.id, (st, []))[1].append(ns)
            ids.append((ns, st.id))
        self.spec = replace(self.spec, share_with=tuple(ids))
        return tuple(P.SharedNamespaces(name=st.name, id=st.id, pid=st.pid, pid_start=st.pid_start, types=tuple(types))
                     for st, types in found.values())

    def _etc_files(self, cid: str, network, shared):
        """The files bound on /etc/hosts and /etc/resolv.conf, if any: those
        of the container whose network namespace is joined (as docker), or
        this container's own, in its state directory."""
        spec = self.spec
        own = StateStore().containers / cid
        net_owner = next((sh for sh in shared if "net" in sh.types), None)
        if net_owner is not None:
            hosts, resolv = _network_files(net_owner.id)
            return P.EtcFiles(hosts=hosts, resolv=resolv, owner=net_owner.name)
        host_net = "net" not in spec.namespaces
        etc = {}
        if network is not None:
            etc["hosts"] = network.hosts  # written by LeaseAddress, and again as peers come and go
        elif spec.extra_hosts:
            # no network: localhost (with --network host, the host's file) and the --add-host lines
            from minicontainer.network.store import LOCALHOST

            base = _read_lines("/etc/hosts") if host_net else list(LOCALHOST)
            etc["hosts"] = str(own / HOSTS_FILE)
            etc["hosts_content"] = "\n".join(base + [f"{ip}\t{name}" for name, ip in spec.extra_hosts]) + "\n"
        if network is not None or spec.dns:  # (--network none keeps the image's, as before, unless --dns)
            etc["resolv"] = str(own / RESOLV_FILE)
            etc["resolv_content"] = resolv_content(spec.dns, host_net=host_net)
        return P.EtcFiles(**etc) if etc else None

    def _cgroup_steps(self, cid: str) -> list:
        """The cgroup part of the plan: cgroups/ decides the files.

        Every container gets a cgroup, limits or not: it is how the runtime
        finds and kills every process of the container at the end, and what
        stats and pause work on. If the host cannot give one and no limit was
        asked for, the container runs without, and we say so.
        """
        from minicontainer import cgroups
        from minicontainer.errors import CgroupError

        resources = self.spec.resources
        if self.unprivileged:
            return self._rootless_cgroup_steps(resources)
        # (--userns as root: the runtime stays the host's root, outside the
        # container's user namespace, and writes the whole cgroup, its device
        # allow-list too, as for any other container.)
        note = None
        if resources is not None and resources.all_devices:
            note = S.Note(phase=S.PARENT, text="no device allow-list (--privileged): every device may be opened",
                          reason="as Docker: the container's cgroup keeps its parent's device access")
        try:
            self.cgroup = cgroups.manager_for(cid, resources)
            writes = self.cgroup.steps()  # once: the interpreter executes these very objects
        except CgroupError as e:
            if resources is not None and not resources.is_empty():
                raise
            warn(f"running without a cgroup (so without limits and without a device allow-list): {e}")
            self.cgroup = None
            return []
        return [S.CgroupStep(write=w) for w in writes] + ([note] if note else [])

    def _rootless_cgroup_steps(self, resources) -> list:
        """Rootless: no cgroup. Creating one needs root, unless the host
        delegates a cgroup v2 subtree to the user (systemd Delegate=yes),
        which minicontainer does not use yet."""
        if resources is not None and not resources.is_empty():
            raise NotRootError(
                "resource limits need a cgroup, and a rootless container gets none: "
                "an unprivileged user cannot create cgroups (cgroups(7))",
                "run as root (sudo minicontainer run ...) to use -m/--cpus/--pids-limit..., or drop the limit flags",
            )
        return [
            S.Note(
                phase=S.PARENT,
                text="no cgroup for this container (rootless mode)",
                reason="cgroups(7): only root may create cgroups unless the host delegates a subtree to the user; "
                "no limit was asked for, so the container runs in the caller's cgroup (stats and pause do not apply). "
                "No device allow-list is needed: in a user namespace the kernel refuses to make device nodes and "
                "ignores those on filesystems mounted there",
            )
        ]

    # -- running ----------------------------------------------------------
    def dry_run(self) -> int:
        refused = self._plan_as_root()
        plan, state, image, _ = self.make_plan(dry_run=True)
        print(f"# container {state.short_id} ({state.name}), image {image.name}: the plan, not carried out", file=self.out)
        if refused:
            print(f"# you are not root: this is the plan of a run as root (a rootless run would refuse "
                  f"{' and '.join(refused)})", file=self.out)
        print(plan.render(), file=self.out)
        return 0

    def _plan_as_root(self) -> list[str]:
        """--dry-run changes nothing, so it needs no root for any flag: when
        one is asked for that a rootless run refuses (limits need a cgroup,
        --network a host bridge, --pid host the host's /proc), it shows what
        root would do instead, and returns what rootless would refuse.
        An explicit --userns keeps its refusals: they hold for root too."""
        if not self.unprivileged or self._userns_asked:
            return []
        resources = self.spec.resources
        refused = []
        if resources is not None and not resources.is_empty():
            refused.append("the limits (no cgroup)")
        if self.spec.network:
            refused.append(f"--network {self.spec.network} (no host bridge)")
        if "pid" not in self.spec.namespaces:
            refused.append("--pid host (no privilege over the host's /proc)")
        if refused:
            self.unprivileged = self.userns = False
        return refused

    def _checks(self) -> tuple:
        """Everything that can refuse before anything exists: privilege, the
        kernel, the image, the plan. Returns (plan, state, image, rootfs)."""
        if self.userns:
            from minicontainer.container.userns import check_allowed

            check_allowed()
        else:
            require_root()
        check_namespaces(self.spec.namespaces)
        if self.spec.name and self.existing is None:
            StateStore().check_name_free(self.spec.name)
        prepared = self.make_plan()
        image = prepared[2]
        if not image.lower_stack:  # a layered image's /bin/sh may be in any layer: exec will tell
            check_shell(image.rootfs, self.spec.argv())
        return prepared

    def run(self) -> int:
        """A foreground run: this process is the container's runtime until it exits."""
        return self._execute(self._checks())

    def run_detached(self) -> str:
        """``run -d`` and ``create``: a monitor process (monitor.py) becomes the
        container's runtime; this returns the id once the container is
        running (or, for ``create``, set up and waiting to be started)."""
        from minicontainer.container import monitor

        self.detached = True
        prepared = self._checks()  # refusals are reported here, synchronously
        return monitor.spawn(lambda report: self._execute(prepared, report=report))

    def _execute(self, prepared, report=None) -> int:
        plan, state, image, rootfs = prepared
        store = StateStore()
        existing = self.existing is not None
        state.runtime_pid = os.getpid()
        state.runtime_start = proc_start_time(os.getpid())
        state.detached = report is not None
        if not existing:
            state.created = time.time()
        # From here on something exists to clean up: SIGTERM or SIGHUP must
        # unwind through the finally below instead of killing us on the spot
        # (once the container runs, process.py forwards them to it instead).
        layer = Path(state.layer_dir)
        container = None
        started = False
        previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            sweep_dead_runtimes(store)
            if existing:
                # A user's `start` clears an old stop request; the monitor's restart keeps one that came
                # while it came back, so that run ends for good (should_restart) instead of losing it.
                if state.status != "restarting":
                    store.clear_stop(state)
                state.status, state.exit_code, state.exit_reason, state.finished = "created", None, "", 0.0
                state.pid, state.pid_start, state.namespaces = 0, 0, {}
                store.save(state)
                make_shifted(rootfs)  # the range's copy of the image, if it was removed meanwhile
            else:
                self._reserve(store, state, image)
                save_spec(store.containers / state.id, self.spec)
                prepare_layer(layer, rootfs, rootfs.image_top)
                store.write_note(state, layer)
            from minicontainer.container.process import Container, Hooks

            def record_ports():
                interp = container.interpreter if container is not None else None
                if interp is not None and interp.proxy is not None:
                    state.ports = list(interp.published)
                    state.proxy_pid, state.proxy_start = interp.proxy

            def on_created(pid):
                record_ports()
                state.pid = pid
                state.pid_start = proc_start_time(pid)
                state.namespaces = namespace_inodes(pid)
                state.status = "created"
                store.save(state)
                if self._handoff is not None:
                    self._handoff(container, state)  # never returns
                if report is not None:
                    report.ok(state.id)

            def on_started(pid):
                nonlocal started
                started = True
                record_ports()
                state.pid = pid
                state.pid_start = state.pid_start or proc_start_time(pid)
                state.namespaces = state.namespaces or namespace_inodes(pid)
                state.status = "running"
                state.started = time.time()
                store.save(state)
                if report is not None and not report.done:
                    report.ok(state.id)
                if self.recorder is not None:
                    self.recorder.started(pid, state, self.spec, self.cgroup)

            hooks = Hooks(
                explain=self._print_step if self.explain else None,
                on_created=on_created,
                on_started=on_started,
                after_kill=self._thaw,
            )
            if self.explain:
                print("\n".join(plan.header()), file=self.out)
            log = None
            if report is not None:
                from minicontainer.container.logs import LogWriter

                log = LogWriter(store.containers / state.id / LOG_FILE)
            # Without -t the container never gets our terminal as stdio: pipes
            # instead, copied by us (see Container._relay_loop).
            relay = report is None and not self.spec.tty and any(_is_tty(fd) for fd in (1, 2))
            container = Container(plan, self.sc, tty=self.spec.tty, interactive=self.spec.interactive, hooks=hooks,
                                  cgroup=self.cgroup, log=log, start_fifo=self._start_fifo(store, state),
                                  relay=relay)
            container.start()
            if report is not None:
                report.quiet()  # nothing of ours goes to the caller's terminal any more
                from minicontainer.container import watch

                # Replaces this process (its PID 1 stays our child): never returns.
                watch.become_watcher(container, store, state, self.cgroup if container.cgroup_owned else None,
                                     remove=self.spec.remove)
            code = container.wait()
            state.exit_code = code
            state.exit_reason = exit_report(self.cgroup) or ""
            if state.exit_reason and report is None:
                print(f"minicontainer: {state.exit_reason}", file=sys.stderr)
            return code
        except MiniError as e:
            state.exit_code = e.exit_code
            raise
        finally:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)  # finish the cleanup first
            if container is not None:
                container.ensure_dead()
            # A cgroup that was there and refused (busy or frozen, reliability
            # case 32) is not ours: only one that passed the check is destroyed.
            owned = container is not None and container.cgroup_owned
            # It never started: nothing to keep (docker keeps "Created"
            # containers, but a half-made one is only clutter here).
            half_made = not existing and not started and not (container is not None and container.pid)
            ran = self.recorder is not None and container is not None and bool(container.pid)
            if ran:
                self.recorder.finished(state.exit_code if state.exit_code is not None else 125, state.exit_reason)
            cleanup_error = None
            try:
                if (self.spec.remove and self._before_remove is not None and container is not None
                        and container.pid and store.owns(state)):
                    self._before_remove(layer)  # build: the step's upper directory becomes a layer
            finally:
                cleanup_error = finish(store, state, self.cgroup if owned else None,
                                       remove=self.spec.remove or half_made,
                                       half_made=not existing and not started)  # its new volumes go too
            if ran:
                self._write_report(cleanup_error)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _write_report(self, cleanup_error: str | None) -> None:
        self.recorder.cleaned(cleanup_error)
        try:
            self.recorder.write()
        except OSError as e:
            warn(f"could not write the report {self.recorder.path}: {e.strerror}")

    def _start_fifo(self, store: StateStore, state: ContainerState) -> str | None:
        """``create``: the container waits, just before execve, until
        ``start`` opens this fifo (runc's exec fifo)."""
        if not self.wait_for_start:
            return None
        path = store.containers / state.id / START_FIFO
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mkfifo(path, 0o600)
        # Writable by all, like runc's exec fifo: PID 1 opens it (through its
        # O_PATH fd) after it switched to the container's user, maybe not root;
        # nobody else can reach it: the state directory is root's, mode 0700.
        os.chmod(path, 0o622)
        return str(path)

    def _reserve(self, store: StateStore, state: ContainerState, image: ResolvedImage) -> None:
        """Write the state (which names the image) under the image store's lock,
        so `image rm`/`prune` cannot delete the image between our resolving it
        and our state saying it is in use."""
        if image.image_id.startswith(("dir:", "build:", "bundle:")):  # a build's layers are held by its lease
            store.reserve(state)
            return
        from minicontainer.images.store import ImageStore

        images = ImageStore()
        with images.lock():
            if not images.has_id(image.image_id):
                raise ImageError(f"image {image.name} was removed while the container was starting",
                                 "run it again", exit_code=125)
            store.reserve(state)

    def _print_step(self, i: int, step) -> None:
        text = "\n".join(S.render_step(i, step, self._legend)) + "\n"
        try:
            os.write(2 if self.out is sys.stderr else self.out.fileno(), text.encode())
        except (OSError, AttributeError, ValueError):
            self.out.write(text)

    # -- cgroup helpers around the run ---------------------------------------------
    def _thaw(self) -> None:
        if self.cgroup is None:
            return
        try:
            if self.cgroup.is_frozen():
                self.cgroup.thaw()
        except (MiniError, OSError):
            pass  # destroy() kills and thaws anyway

