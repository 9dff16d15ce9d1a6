"""The interpreter: carries out every step of every phase of a plan.

One method per step type (``Interpreter._handlers``), so the answer to
"which code runs step N of --dry-run?" is one function. Every call to the
kernel goes through the syscall object ``sc`` (syscalls.linux.Linux for
real, syscalls.fake.Recorder in unit tests), so a test can run a whole plan
and compare the recorded calls with the steps the plan printed.

One plan, two processes. The runtime runs the BEFORE_FORK steps; the Fork
step forks; from there the runtime runs the PARENT steps and the child the
CHILD and INSIDE steps of the same list (steps.py explains the phases). In
the child nothing returns to the caller: it execs, or reports its error to
the runtime over the error pipe and exits (``channels.child_failed``).

Every path inside the container is reached with safepath.open_beneath from
a directory fd of the new root, and the kernel is handed the magic link
``/proc/self/fd/N``; a string like ``rootfs + "/proc"`` is never resolved the
host way (reliability lesson 1). After pivot_root no Python module may be
imported and no file opened (lesson 3): everything the INSIDE handlers use
is imported at the top of this module or of syscalls/linux.py.
"""

from __future__ import annotations

import errno
import json  # the hooks' state JSON, also after pivot_root (startContainer)
import os
import signal
import stat

from minicontainer.container import steps as S
from minicontainer.container import userns
from minicontainer.errors import CommandError, ContainerError, MiniError, SecurityError, SyscallError, UsageError, warn
from minicontainer.security.users import user_for_exec
from minicontainer.syscalls.flags import (
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MOUNT_ATTR_IDMAP,
    NAMESPACE_FLAGS,
    MNT_DETACH,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)

_MASK_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC


class Interpreter:
    """Runs a plan's steps. ``explain(i, step)`` is called before each step
    is carried out (--explain). ``channels`` are the pipes between runtime
    and child (process.Channels); ``cgroup`` the container's cgroup manager,
    which carries out the writes the plan's CgroupSteps hold."""

    def __init__(self, sc, *, explain=None, channels=None, cgroup=None, on_created=None, networks=None,
                 volumes=None, warn=None, pid=0):
        self.sc = sc
        self.volumes = volumes  # a volumes.VolumeStore (made on first use)
        self.warn = warn  # a failed poststart/poststop hook: one line (default: on stderr)
        self.host_pid = pid  # the container's pid as the host sees it, for hooks (ReadHostPid in the child)
        self.networks = networks  # a network.store.NetworkStore (made on first use)
        self.lease = None  # the address the last LeaseAddress got (for the ConfigureEth after it)
        self.first_lease = None  # eth0's: the one published ports lead to
        self._own_netns = False
        self.port_fds: list[tuple[object, int, int]] = []  # BindPorts: (mapping, fd, host port), until the proxy has them
        self.published: list[dict] = []  # what is published, for the state (ps, port, inspect)
        self.proxy: tuple[int, int] | None = None  # StartPortProxy: (pid, start time)
        self.on_created = on_created  # `create`: called when the child is set up and waits for `start`
        self.explain = explain
        self.chan = channels
        self.cgroup = cgroup
        self.phases: tuple[str, ...] = (S.BEFORE_FORK,)
        self.in_child = False
        self.child_pid = 0
        self.cgroup_owned = False  # set once the cgroup check passed: from then on it is ours to destroy
        self.root_fd: int | None = None
        self.user = None  # security.users.ExecUser, from ResolveUser
        self.setgroups_allowed = True
        self.parent_pid = 0
        self._in_userns = False
        self._own_pidns: int | None = None
        self.ns_fds: dict[str, int] = {}  # exec: the container's namespaces, opened before joining
        self.host_fds: dict[str, int] = {}  # --userns as root: host paths opened before the user namespace
        self.layer_mounts: list[int] = []  # ... and the image's idmapped layers, from the runtime
        self._handlers = {
            S.UserNamespace: self._user_namespace,
            S.BecomeSubreaper: self._become_subreaper,
            S.OpenHostPaths: self._open_host_paths,
            S.UnshareUser: self._unshare_user,
            S.BecomeRoot: self._become_root,
            S.WriteIdMaps: self._write_id_maps,
            S.ForkInit: self._fork_init,
            S.SendIdmappedLayers: self._send_idmapped_layers,
            S.ReceiveIdmappedLayers: self._receive_idmapped_layers,
            S.AdoptInit: self._adopt_init,
            S.UnsharePid: self._unshare_pid,
            S.Fork: self._fork,
            S.LeaseAddress: self._lease_address,
            S.WriteFile: self._write_file,
            S.ReleaseLease: self._release_lease,
            S.DeleteLink: self._delete_link,
            S.EnsureBridge: self._ensure_bridge,
            S.CreateNetns: self._create_netns,
            S.AddVeth: self._add_veth,
            S.ConfigureEth: self._configure_eth,
            S.BindPorts: self._bind_ports,
            S.SetupNat: self._setup_nat,
            S.EnableForwarding: self._enable_forwarding,
            S.StartPortProxy: self._start_port_proxy,
            S.EnsureVolume: self._ensure_volume,
            S.FillVolume: self._fill_volume,
            S.SetPropagation: self._set_propagation,
            S.CgroupStep: self._cgroup,
            S.ReleaseChild: self._release_child,
            S.AwaitExec: self._await_exec,
            S.DieWithRuntime: self._die_with_runtime,
            S.AwaitRelease: self._await_release,
            S.AwaitMounted: self._await_mounted,
            S.ReportMounted: self._report_mounted,
            S.ReadHostPid: self._read_host_pid,
            S.RunHooks: self._run_hooks,
            S.Unshare: self._unshare,
            S.LoopbackUp: self._loopback_up,
            S.MakeMountsPrivate: self._make_private,
            S.MountRootfs: self._mount_rootfs,
            S.Mount: self._mount,
            S.RemountReadonly: self._remount_ro,
            S.ReadonlyRecursive: self._readonly_recursive,
            S.RemountFlags: self._remount_flags,
            S.SetSysctl: self._set_sysctl,
            S.MakeDevice: self._mknod,
            S.Symlink: self._symlink,
            S.MaskPath: self._mask,
            S.SetHostname: self._sethostname,
            S.NewSession: self._new_session,
            S.ResolveUser: self._resolve_user,
            S.MakeUndumpable: self._make_undumpable,
            S.PivotRoot: self._pivot_root,
            S.Chroot: self._chroot,
            S.SetWorkdir: self._set_workdir,
            S.ResetSignals: self._reset_signals,
            S.SetRlimits: self._set_rlimits,
            S.DropBoundingSet: self._drop_bounding_set,
            S.SwitchUser: self._switch_user,
            S.SetCapabilities: self._set_capabilities,
            S.RearmParentDeath: self._rearm_parent_death,
            S.NoNewPrivs: self._no_new_privs,
            S.CloseOnExec: self._close_on_exec,
            S.InstallSeccomp: self._install_seccomp,
            S.AwaitStart: self._await_start,
            S.OpenNamespaces: self._open_namespaces,
            S.JoinNamespace: self._join_namespace,
            S.OpenNamespacePath: self._open_namespace_path,
            S.OpenRoot: self._open_root,
            S.Exec: self._exec,
            S.Note: lambda step: None,
        }

    # -- the loop ---------------------------------------------------------
    def run(self, steps, start_index: int = 1) -> None:
        """Carry out the steps of this process's phases, in order; the others
        belong to the process on the other side of the fork."""
        try:
            for i, step in enumerate(steps, start_index):
                if step.phase not in self.phases:
                    continue
                if self.explain is not None:
                    self.explain(i, step)
                self.apply(step)
        except BaseException as e:
            if self.in_child:
                self.chan.child_failed(e)  # never returns into the runtime's code
            reported = self.chan.reported_error() if self.child_pid and isinstance(e, Exception) else None
            if reported is not None:
                raise reported from None  # the child failed first, in its own setup: its error says why
            raise

    def apply(self, step) -> None:
        handler = self._handlers.get(type(step))
        if handler is None:
            raise MiniError(f"internal error: no handler for step {type(step).__name__}")
        handler(step)

    def abandon(self) -> None:
        """Undo what a failure before the fork left: our own PID namespace back,
        the network namespace we made closed (runtime.finish removes its lease and veth)."""
        self._restore_pidns()
        self._close_netns()
        self._close_port_fds()
        if self.proxy is not None:
            pid, start = self.proxy
            self.proxy = None
            self.sc.stop_process(pid, start)
        self.close_namespaces()

    def _close_port_fds(self) -> None:
        fds, self.port_fds = self.port_fds, []
        for _, fd, _ in fds:
            self.sc.close(fd)

    def close_namespaces(self) -> None:
        """Close the namespaces opened and not joined (another container's)."""
        for fd in self.ns_fds.values():
            self.sc.close(fd)
        self.ns_fds = {}

    def _close_netns(self) -> None:
        if self._own_netns:
            self._own_netns = False
            self.sc.close(self.ns_fds.pop("net"))

    # -- before the fork: a bridge network --------------------------------------
    def _lease_address(self, step: S.LeaseAddress) -> None:
        if self.networks is None:
            from minicontainer.network.store import NetworkStore

            self.networks = NetworkStore()
        self.lease = self.networks.lease(step.network, container=step.container, cname=step.name, veth=step.veth,
                                         hosts=step.hosts, ip=step.ip, aliases=step.aliases, hostname=step.hostname,
                                         extra_hosts=step.extra_hosts, ifname=step.ifname, holder=step.holder,
                                         only_once=bool(step.holder))
        self.first_lease = self.first_lease or self.lease

    def _release_lease(self, step: S.ReleaseLease) -> None:
        if self.networks is None:
            from minicontainer.network.store import NetworkStore

            self.networks = NetworkStore()
        self.networks.release(step.container, network=step.network)

    def _delete_link(self, step: S.DeleteLink) -> None:
        self.sc.net_delete_link(step.name)

    def _write_file(self, step: S.WriteFile) -> None:
        self.sc.write_file(step.path, step.content)

    def _ensure_bridge(self, step: S.EnsureBridge) -> None:
        self.sc.net_bridge(step.bridge, step.gateway, step.prefixlen)

    def _create_netns(self, step: S.CreateNetns) -> None:
        self.ns_fds["net"] = self.sc.new_netns()
        self._own_netns = True

    def _add_veth(self, step: S.AddVeth) -> None:
        self.sc.net_veth(step.host, step.peer, step.bridge, self.ns_fds["net"])

    def _configure_eth(self, step: S.ConfigureEth) -> None:
        self.sc.net_configure(self.ns_fds["net"], step.peer, step.ifname, self.lease.ip, step.prefixlen,
                              step.gateway or None)

    def _bind_ports(self, step: S.BindPorts) -> None:
        for m in step.ports:
            fd, port = self.sc.bind_port(m.proto, m.host_ip, m.host_port)
            self.port_fds.append((m, fd, port))

    def _setup_nat(self, step: S.SetupNat) -> None:
        try:
            self.sc.nft(step.commands)
        except MiniError as e:
            if step.internal:
                raise  # isolation asked for and not there: fail closed
            warn(f"network {step.network} gets no outbound NAT: {e}")

    def _enable_forwarding(self, step: S.EnableForwarding) -> None:
        self.sc.host_sysctl("net/ipv4/ip_forward", "1")
    # -- volumes (volumes.py) ------------------------------------------------------
    def _ensure_volume(self, step: S.EnsureVolume) -> None:
        if self.volumes is None:
            from pathlib import Path

            from minicontainer.volumes import VolumeStore

            self.volumes = VolumeStore(Path(step.path).parent)
        # created_for: if this container never starts, runtime.finish removes what its run made
        self.volumes.create(step.name, anonymous=step.anonymous, created_for=step.container, exist_ok=True)

    def _fill_volume(self, step: S.FillVolume) -> None:
        # The image's directory, through our root fd: never through a symlink of the image.
        self.sc.fill_volume(self.root_fd, step.target, step.path)

    def _set_propagation(self, step: S.SetPropagation) -> None:
        fd = self.sc.open_beneath(self.root_fd, step.target)
        try:
            self.sc.mount(None, self.sc.fd_path(fd), None, step.flags, None, shown=step.target)
        finally:
            self.sc.close(fd)

    # -- before the fork ----------------------------------------------------
    def _user_namespace(self, step: S.UserNamespace) -> None:
        userns.enter(step.mapping, self.sc)
        self._in_userns = True

    def _unshare_pid(self, step: S.UnsharePid) -> None:
        # Kept to come back afterwards; not from a user namespace we entered:
        # setns(2) into the host's PID namespace would need CAP_SYS_ADMIN over
        # the host's user namespace.
        if not self._in_userns:
            self._own_pidns = self.sc.open_ns("pid")
        self.sc.unshare(CLONE_NEWPID)

    def _fork(self, step: S.Fork) -> None:
        pid = self.sc.fork()
        if pid == 0:
            self.in_child = True
            self.phases = (S.CHILD, S.INSIDE)
            self.chan.in_child(keep=(*self.ns_fds.values(), *range(3, 3 + step.keep_fds)))
            self._own_netns = False  # the child joins it (JoinNamespace closes its fd)
            self.parent_pid = self.sc.getppid()  # 0 in a new PID namespace
            return
        self.child_pid = pid
        self.phases = (S.PARENT,)
        self.chan.in_parent()
        self._close_netns()  # the child has its own fd of it, which it joins
        for fd in self.ns_fds.values():  # the child joins them; the runtime has no more use for them
            self.sc.close(fd)
        self.ns_fds = {}
        # Our later children (tests run many containers in one process) must
        # not land in the container's PID namespace.
        self._restore_pidns()

    def _restore_pidns(self) -> None:
        if self._own_pidns is not None:
            fd, self._own_pidns = self._own_pidns, None
            try:
                self.sc.setns(fd, CLONE_NEWPID)
            finally:
                self.sc.close(fd)

    def _become_subreaper(self, step: S.BecomeSubreaper) -> None:
        self.sc.set_child_subreaper()

    # -- --userns as root: the child makes the user namespace, the runtime maps it --
    def _open_host_paths(self, step: S.OpenHostPaths) -> None:
        for path in step.paths:
            if path not in self.host_fds:
                self.host_fds[path] = self.sc.open_path(path)

    def _unshare_user(self, step: S.UnshareUser) -> None:
        self.sc.unshare(CLONE_NEWUSER)
        self.sc.write(self.chan.ctl_child, b"U")
        if self.sc.read(self.chan.ctl_child, 1) != b"M":
            self.chan.runtime_gone()  # the runtime failed (and says why) or died
        self._in_userns = True

    def _become_root(self, step: S.BecomeRoot) -> None:
        self.sc.setgroups([])
        self.sc.setresgid(0)
        self.sc.setresuid(0)

    def _write_id_maps(self, step: S.WriteIdMaps) -> None:
        if self.sc.read(self.chan.ctl, 1) != b"U":
            raise self._child_error()
        proc = f"/proc/{self.child_pid}"
        for kind, ranges in (("uid", step.mapping.uids), ("gid", step.mapping.gids)):
            try:
                self.sc.write_file(f"{proc}/{kind}_map", "".join(r.line() + "\n" for r in ranges))
            except MiniError as e:
                if getattr(step.mapping, "source", "") != "config.json":
                    raise
                # fail closed, naming the field: the kernel refused the bundle's map
                raise UsageError(f"config.json: linux.{kind}Mappings: the kernel refused the map "
                                 f"({', '.join(r.line() for r in ranges)}): {e.message}",
                                 "map ranges that do not overlap, within the host's ids") from None
        self.sc.write(self.chan.ctl, b"M")

    def _send_idmapped_layers(self, step: S.SendIdmappedLayers) -> None:
        userns_fd = self.sc.open_ns_path(f"/proc/{self.child_pid}/ns/user")
        mounts: list[int] = []
        try:
            for layer in step.layers:
                mounts.append(self.sc.open_tree(layer))
                self.sc.mount_setattr(mounts[-1], MOUNT_ATTR_IDMAP, recursive=False, shown=layer, userns_fd=userns_fd)
            self.sc.send_fds(self.chan.ctl, b"L", mounts)
        finally:
            for fd in [userns_fd, *mounts]:  # the child has its own now
                self.sc.close(fd)

    def _receive_idmapped_layers(self, step: S.ReceiveIdmappedLayers) -> None:
        data, fds = self.sc.recv_fds(self.chan.ctl_child, step.count)
        self.layer_mounts = fds
        if data != b"L" or len(fds) != step.count:
            self.chan.runtime_gone()  # the runtime failed (and says why) or died

    def _fork_init(self, step: S.ForkInit) -> None:
        self.sc.unshare(CLONE_NEWPID)
        pid = self.sc.fork()
        if pid != 0:  # the first child: tell the runtime who PID 1 is, and go
            try:
                self.sc.write(self.chan.ctl_child, f"{pid}\n".encode())
            finally:
                os._exit(0)
        # PID 1. The parent-death signal fires when the parent exits, so it is
        # armed only once the runtime says it has reaped the first child: by
        # then we are re-parented to it. (Waiting for that child's end of a
        # pipe to close would be too early: an exiting process closes its fds
        # before it hands its children on, and the signal would kill us.)
        if self.sc.read(self.chan.ctl_child, 1) != b"A":
            self.chan.runtime_gone()
        self.chan.close_ctl()
        self.parent_pid = 0  # getppid() is 0 from a new PID namespace
        self.sc.set_pdeathsig(signal.SIGKILL)
        if not self.chan.runtime_alive():
            self.chan.runtime_gone()

    def _adopt_init(self, step: S.AdoptInit) -> None:
        data = b""
        while not data.endswith(b"\n"):  # the first child writes PID 1's pid and exits
            chunk = self.sc.read(self.chan.ctl, 32)
            if not chunk:
                break
            data += chunk
        code = self.sc.waitpid(self.child_pid)
        if not data.strip().isdigit() or code != 0:
            raise self._child_error()
        self.child_pid = int(data)
        self.sc.write(self.chan.ctl, b"A")  # PID 1 is ours now: it may arm its parent-death signal
        self.chan.close_ctl()

    def _child_error(self) -> MiniError:
        data = self.chan.read_errors(self.sc)
        if data:
            return self.chan.decode_error(data)
        return MiniError("the container's first process exited while its user namespace was being set up",
                         "run again with --explain to see the step")

    # -- the runtime, after the fork -------------------------------------------
    def _start_port_proxy(self, step: S.StartPortProxy) -> None:
        target = self.first_lease.ip
        ports = [{"fd": fd, "proto": m.proto, "listen": [m.host_ip, port], "target": [target, m.container_port]}
                 for m, fd, port in self.port_fds]
        self.proxy = self.sc.spawn_proxy({"ports": ports}, [fd for _, fd, _ in self.port_fds])
        self.published = [{"container_port": m.container_port, "proto": m.proto, "host_ip": m.host_ip,
                           "host_port": port} for m, _, port in self.port_fds]
        self._close_port_fds()  # the proxy has them now

    def _cgroup(self, step: S.CgroupStep) -> None:
        self.cgroup.execute(step.write, pid=self.child_pid)
        if step.write.action == "check":
            self.cgroup_owned = True

    def _release_child(self, step: S.ReleaseChild) -> None:
        try:
            self.sc.write(self.chan.sync_w, b"1")
        except BrokenPipeError:
            # The child has exited: it failed in its setup (run() reports its own error, when it
            # said one) or was killed. Not main's "the reader left" (a silent exit 141).
            raise ContainerError("the container's process exited before the runtime released it",
                                 "see the kernel log (dmesg) if nothing else was reported") from None
        if not step.keep_open:
            self.chan.close_sync()

    def _await_mounted(self, step: S.AwaitMounted) -> None:
        data = self.chan.await_mounted(self.sc)
        if data:
            raise self.chan.decode_error(data)

    def _run_hooks(self, step: S.RunHooks) -> None:
        """Each hook in order; the first that fails (exit code, timeout)
        stops the rest, and for a fatal kind fails the step."""
        state = json.loads(step.state or "{}")
        state["status"] = step.status
        state["pid"] = self.child_pid or self.host_pid
        data = json.dumps(state).encode()
        for hook in step.hooks:
            code, output = self.sc.run_hook(hook.path, list(hook.args) or [hook.path], list(hook.env), data,
                                            hook.timeout)
            if code == 0:
                continue
            said = output.decode(errors="replace").strip().splitlines()
            what = (f"{step.kind} hook {hook.path} ran past its timeout of {hook.timeout}s" if code is None
                    else f"{step.kind} hook {hook.path} failed with exit code {code}")
            what += f": {said[-1]}" if said else ""
            if step.fatal:
                raise ContainerError(what, "the hook comes from the bundle's config.json (hooks); see its output "
                                     "above, or run the hook by hand with the state JSON on stdin")
            (self.warn or _warn)(what)
            return

    def _await_exec(self, step: S.AwaitExec) -> None:
        data = self.chan.read_errors(self.sc, on_created=self.on_created)
        if data:
            raise self.chan.decode_error(data)
        self.chan.receive_console()

    # -- the child, before its root changes --------------------------------------
    def _die_with_runtime(self, step: S.DieWithRuntime) -> None:
        self.sc.set_pdeathsig(signal.SIGKILL)

    def _await_release(self, step: S.AwaitRelease) -> None:
        # If the runtime died before DieWithRuntime, this read sees EOF
        # (getppid() can't tell: in a new PID namespace it is always 0).
        if self.sc.read(self.chan.sync_r, 1) != b"1":
            self.chan.runtime_gone()
        if not step.keep_open:
            self.chan.close_sync()

    def _report_mounted(self, step: S.ReportMounted) -> None:
        self.chan.report_mounted(self.sc)

    def _read_host_pid(self, step: S.ReadHostPid) -> None:
        self.host_pid = self.sc.host_pid()

    def _unshare(self, step: S.Unshare) -> None:
        if step.flags:
            self.sc.unshare(step.flags)

    def _loopback_up(self, step: S.LoopbackUp) -> None:
        self.sc.link_up("lo")

    def _make_private(self, step: S.MakeMountsPrivate) -> None:
        self.sc.mount(None, "/", None, step.flags)

    def _mount_rootfs(self, step: S.MountRootfs) -> None:
        if step.opened:
            self._mount_rootfs_opened(step)
            return
        if step.mode == "overlay":
            self.sc.chdir(step.layer)  # the options name lower/upper/work relative to it
            self.sc.mount("overlay", step.target, "overlay", 0 if step.writable else MS_RDONLY, step.overlay_options)
        else:
            # read-only, when asked, is the ReadonlyRecursive step that follows
            self.sc.mount(step.lower, step.target, None, MS_BIND | MS_REC)
        self.root_fd = self.sc.open_dir(step.target)

    def _mount_rootfs_opened(self, step: S.MountRootfs) -> None:
        """The same mount from inside the user namespace: the layer directory
        (the range's root owns it) is our working directory, reached through
        its fd, and each lower layer is named by its fd."""
        layer, *lowers = (self.host_fds[p] for p in step.host_paths)
        self.sc.fchdir(layer)
        if step.idmapped:
            for name, fd in zip(step.idmapped_names, self.layer_mounts):
                self.sc.move_mount(fd, name, shown=f"{step.layer}/{name}")
                self.sc.close(fd)
            self.layer_mounts = []
            self.sc.mount("overlay", "merged", "overlay", 0 if step.writable else MS_RDONLY,
                          step.overlay_options_with(step.idmapped_names), shown=step.target)
        elif step.mode == "overlay":
            options = step.overlay_options_with([self.sc.fd_path(fd) for fd in lowers])
            self.sc.mount("overlay", "merged", "overlay", 0 if step.writable else MS_RDONLY, options,
                          shown=step.target)
        else:
            self.sc.mount(self.sc.fd_path(lowers[0]), "merged", None, MS_BIND | MS_REC, shown=step.target)
        self.root_fd = self.sc.open_dir("merged")  # a lookup from the layer: it crosses into the new mount

    def _target(self, path: str, create: str) -> int:
        """An fd for a mountpoint inside the root, made if asked, never through a symlink."""
        if create == "file":  # its directories too (podman binds /run/.containerenv into images without /run)
            return self.sc.open_beneath(self.root_fd, path, create_file=True, create_dirs=True)
        return self.sc.open_beneath(self.root_fd, path, directory=True, create_dirs=(create == "dir"))

    def _mount(self, step: S.Mount) -> None:
        if step.host_source and step.flags & MS_BIND and step.source in self.host_fds:
            self._mount_on(step, self.sc.fd_path(self.host_fds[step.source]))  # opened before the user namespace
        elif step.host_source and step.flags & MS_BIND:
            # The source is a host path chosen by the user (-v); open it
            # first so what we bind is what was checked.
            src_fd = self.sc.open_path(step.source)
            try:
                self._mount_on(step, self.sc.fd_path(src_fd))
            finally:
                self.sc.close(src_fd)
        else:
            self._mount_on(step, step.source)

    def _mount_on(self, step: S.Mount, source: str) -> None:
        fd = self._target(step.target, step.create)
        try:
            self.sc.mount(source, self.sc.fd_path(fd), step.fstype, step.flags, step.data, shown=step.target)
        finally:
            self.sc.close(fd)

    def _remount_ro(self, step: S.RemountReadonly, extra: int = 0) -> None:
        fd = self.root_fd if not step.target else self.sc.open_beneath(self.root_fd, step.target)  # file or dir
        try:
            self._remount_fd_ro(fd, step.target or "/", extra | step.flags)
        finally:
            if fd != self.root_fd:
                self.sc.close(fd)

    def _remount_fd_ro(self, fd: int, shown: str, extra: int = 0) -> None:
        # Keep the flags the mount has: the kernel refuses (EPERM) to drop
        # locked ones like nosuid/nodev on a remount (mount(2)).
        keep = self.sc.mount_flags_of(self.sc.fd_path(fd))
        self.sc.mount(None, self.sc.fd_path(fd), None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep | extra, None,
                      shown=shown)

    def _readonly_recursive(self, step: S.ReadonlyRecursive) -> None:
        shown = step.target or "/"
        fd = self.root_fd if not step.target else self.sc.open_beneath(self.root_fd, step.target)  # file or dir
        try:
            try:
                self.sc.mount_setattr(fd, MOUNT_ATTR_RDONLY, recursive=True, shown=shown)
            except SyscallError as e:
                if e.errno != errno.ENOSYS:
                    raise
                # Linux < 5.12. Nothing mounted below: the one remount is the
                # whole tree. Something mounted below would stay writable.
                below = [(step.target + p) for p in self.sc.submounts(fd)]
                if below:
                    raise SyscallError(
                        f"making {shown} read-only with the {len(below)} mount(s) below it "
                        f"({', '.join(below[:3])}{', ...' if len(below) > 3 else ''}):", errno.ENOSYS, None,
                        "this kernel has no mount_setattr(2) (Linux 5.12), and a remount would leave the mounts "
                        f"below writable; {step.old_kernel_hint}, or use a newer kernel",
                    ) from None
                self._remount_fd_ro(fd, shown)
        finally:
            if fd != self.root_fd:
                self.sc.close(fd)

    def _remount_flags(self, step: S.RemountFlags) -> None:
        fd = self.sc.open_beneath(self.root_fd, step.target)
        try:
            keep = self.sc.mount_flags_of(self.sc.fd_path(fd))
            self.sc.mount(None, self.sc.fd_path(fd), None, MS_BIND | MS_REMOUNT | keep | step.flags, None,
                          shown=step.target)
        finally:
            self.sc.close(fd)

    def _set_sysctl(self, step: S.SetSysctl) -> None:
        # The fresh /proc of this container, reached without following a symlink of the image.
        fd = self.sc.open_beneath(self.root_fd, "/proc/sys/" + step.key.replace(".", "/"))
        try:
            wfd = self.sc.open_fd_path(fd, os.O_WRONLY)
            try:
                self.sc.write(wfd, step.value.encode())
            finally:
                self.sc.close(wfd)
        finally:
            self.sc.close(fd)

    def _in_dev(self, path: str, create: str = "no") -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        return self._target(parent or "/", create), name

    def _mknod(self, step: S.MakeDevice) -> None:
        # /dev is our own fresh tmpfs at this point, so a name inside it is ours.
        dfd, name = self._in_dev(step.path, "dir" if step.make_parent else "no")
        kind = stat.S_IFBLK if step.kind == "b" else stat.S_IFCHR
        try:
            self.sc.mknod(f"{self.sc.fd_path(dfd)}/{name}", kind | step.mode, os.makedev(step.major, step.minor),
                          shown=step.path)
            self.sc.chmod(f"{self.sc.fd_path(dfd)}/{name}", step.mode)  # umask would have masked it
        finally:
            self.sc.close(dfd)

    def _symlink(self, step: S.Symlink) -> None:
        dfd, name = self._in_dev(step.path)
        try:
            self.sc.symlink(step.target, f"{self.sc.fd_path(dfd)}/{name}", shown=step.path)
        finally:
            self.sc.close(dfd)

    def _mask(self, step: S.MaskPath) -> None:
        """security/paths.py says what each kind hides. A path this kernel
        lacks is skipped; what the path really is (file or directory) decides
        how it is masked; a symlink on the way is refused (ELOOP)."""
        try:
            fd = self.sc.open_beneath(self.root_fd, step.path)
        except SyscallError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # nothing to hide on this kernel
            raise
        try:
            target = self.sc.fd_path(fd)
            if step.kind == "readonly":
                self.sc.mount(target, target, None, MS_BIND | MS_REC, None, shown=step.path)
            elif stat.S_ISDIR(self.sc.fstat(fd).st_mode):
                self.sc.mount("tmpfs", target, "tmpfs", MS_RDONLY | _MASK_FLAGS, "mode=0555", shown=step.path)
            else:
                self._bind_dev_null(target, step.path)
        finally:
            self.sc.close(fd)
        if step.kind == "readonly":
            # The fd still names the mount underneath; open the path again to
            # reach the new bind mount on top, then make that one read-only.
            self._remount_ro(S.RemountReadonly(target=step.path), extra=_MASK_FLAGS)

    def _bind_dev_null(self, target: str, shown: str) -> None:
        # The host's /dev/null (our root is not pivoted yet), checked to be the
        # null device itself and bound through the fd that was checked.
        null = self.sc.open_path("/dev/null")
        try:
            st = self.sc.fstat(null)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                raise SyscallError("checking /dev/null", errno.EINVAL, "/dev/null",
                                   "the host's /dev/null is not the null device (char 1:3)")
            self.sc.mount(self.sc.fd_path(null), target, None, MS_BIND, None, shown=shown)
        finally:
            self.sc.close(null)

    def _sethostname(self, step: S.SetHostname) -> None:
        self.sc.sethostname(step.hostname)

    def _new_session(self, step: S.NewSession) -> None:
        self.sc.setsid()
        self.chan.attach_stdio(self.root_fd, step.tty)

    def _resolve_user(self, step: S.ResolveUser) -> None:
        self.user, self.setgroups_allowed = user_for_exec(self.root_fd, step.user, step.group_add)

    def _make_undumpable(self, step: S.MakeUndumpable) -> None:
        self.sc.set_dumpable(False)

    def _pivot_root(self, step: S.PivotRoot) -> None:
        # pivot_root(".", ".") stacks the old root on top of the new one at
        # the same place; unmounting "." with MNT_DETACH then drops the old
        # root. No directory inside the image is needed or written (this is
        # how runc does it), so it works with --read-only too.
        self.sc.fchdir(self.root_fd)
        self.sc.pivot_root(".", ".")
        self.sc.umount2(".", MNT_DETACH)
        self.sc.chdir("/")
        self._drop_root_fd()

    def _chroot(self, step: S.Chroot) -> None:
        self.sc.fchdir(self.root_fd)
        self.sc.chroot(".")
        self.sc.chdir("/")
        self._drop_root_fd()

    def _drop_root_fd(self) -> None:
        if self.root_fd is not None:
            self.sc.close(self.root_fd)
            self.root_fd = None
        for fd in self.host_fds.values():  # no fd of a host path stays open inside (CVE-2024-21626)
            self.sc.close(fd)
        self.host_fds = {}

    # -- inside the new root: system calls only -----------------------------------
    def _set_workdir(self, step: S.SetWorkdir) -> None:
        try:
            self.sc.chdir(step.workdir)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            self.sc.makedirs(step.workdir)  # docker creates a missing working directory
            self.sc.chdir(step.workdir)
        if not self.sc.getcwd().startswith("/"):
            raise SyscallError("the working directory is outside the container:", errno.EPERM, step.workdir,
                               "give a path inside the container's root filesystem")

    def _reset_signals(self, step: S.ResetSignals) -> None:
        self.sc.reset_signals()

    def _set_rlimits(self, step: S.SetRlimits) -> None:
        for name, res, soft, hard in step.limits:
            try:
                self.sc.setrlimit(res, soft, hard)
            except (OSError, ValueError) as e:
                # CPython turns EPERM / EINVAL from setrlimit into ValueError.
                err = e.errno if isinstance(e, OSError) else (errno.EPERM if "not allowed" in str(e) else errno.EINVAL)
                raise SyscallError(f"setting --ulimit {name}={soft}:{hard}", err, None,
                                   "raising a hard limit needs CAP_SYS_RESOURCE on the host; "
                                   "nofile cannot exceed /proc/sys/fs/nr_open") from None

    def _drop_bounding_set(self, step: S.DropBoundingSet) -> None:
        # Needs CAP_SETPCAP in the effective set: before the uid changes.
        for cap in range(step.last_cap + 1):
            if not step.keep >> cap & 1:
                self.sc.capbset_drop(cap)
        self.sc.clear_ambient()

    def _switch_user(self, step: S.SwitchUser) -> None:
        u = self.user
        try:
            if self.setgroups_allowed:
                self.sc.setgroups(list(u.groups))
            self.sc.setresgid(u.gid)
            self.sc.setresuid(u.uid)
        except OSError as e:
            raise SyscallError(f"switching to uid {u.uid} gid {u.gid}", e.errno or errno.EPERM) from None

    def _set_capabilities(self, step: S.SetCapabilities) -> None:
        effective = step.keep if self.user.uid == 0 else 0
        self.sc.capset(effective)
        got = self.sc.capget()
        if got != (effective, effective, 0):
            raise SecurityError(
                f"capabilities are not what was asked: effective {got[0]:#x}, permitted {got[1]:#x}, "
                f"inheritable {got[2]:#x}; wanted {effective:#x}"
            )

    def _rearm_parent_death(self, step: S.RearmParentDeath) -> None:
        self.sc.set_dumpable(False)
        self.sc.set_pdeathsig(0 if step.outlive else signal.SIGKILL)
        # If the runtime died before the line above, the signal never comes.
        if (self.parent_pid and self.sc.getppid() != self.parent_pid) or not self.chan.runtime_alive():
            raise SecurityError("the runtime exited while the container was being set up")

    def _no_new_privs(self, step: S.NoNewPrivs) -> None:
        self.sc.set_no_new_privs()

    def _close_on_exec(self, step: S.CloseOnExec) -> None:
        self.sc.cloexec_from(step.first)

    def _install_seccomp(self, step: S.InstallSeccomp) -> None:
        self.sc.install_seccomp(step.fprog)

    def _await_start(self, step: S.AwaitStart) -> None:
        self.chan.report_created(self.sc)
        fd = self.sc.open_fd_path(self.chan.start_fifo, os.O_WRONLY)  # blocks until `start` opens it
        try:
            self.sc.write(fd, b"0")
        finally:
            self.sc.close(fd)

    def _open_namespaces(self, step: S.OpenNamespaces) -> None:
        self.ns_fds.update(self.sc.open_namespaces(step.pid, step.pid_start, step.types))

    def _open_namespace_path(self, step: S.OpenNamespacePath) -> None:
        self.ns_fds[step.ns] = self.sc.open_ns_path(step.path)

    def _join_namespace(self, step: S.JoinNamespace) -> None:
        if step.ns == "pid" and step.phase == S.BEFORE_FORK and not self._in_userns and self._own_pidns is None:
            # As with UnsharePid: the runtime comes back to its own after the fork.
            self._own_pidns = self.sc.open_ns("pid")
        fd = self.ns_fds.pop(step.ns)
        try:
            self.sc.setns(fd, NAMESPACE_FLAGS[step.ns])
        finally:
            self.sc.close(fd)
        if step.ns == "user":
            self._in_userns = True

    def _open_root(self, step: S.OpenRoot) -> None:
        self.root_fd = self.sc.open_dir("/")

    def _exec(self, step: S.Exec) -> None:
        env = {k.encode(): v.encode() for k, v in step.env}
        argv = [a.encode() for a in step.argv]
        execvpe(self.sc, argv, env, env.get(b"PATH", b"/usr/bin:/bin"))


def _warn(text: str) -> None:
    os.write(2, f"minicontainer: warning: {text}\n".encode(errors="replace"))


def execvpe(sc, argv: list[bytes], env: dict[bytes, bytes], path: bytes) -> None:
    """execvp(3) by hand, inside the container: no Python code is loaded."""
    name = argv[0]
    if b"/" in name:
        candidates = [name]
    else:
        candidates = [(d or b".") + b"/" + name for d in path.split(b":")]
    denied = None
    for cand in candidates:
        try:
            sc.execve(cand, argv, env)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if e.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
                denied = (cand, e.errno)
                continue
            raise CommandError(f"exec {name.decode(errors='replace')}: {os.strerror(e.errno)}", None, exit_code=126)
    shown = name.decode(errors="replace")
    if denied is not None:
        raise CommandError(
            f"exec {denied[0].decode(errors='replace')}: {os.strerror(denied[1])}",
            "the file is not an executable program (check its mode and format)",
            exit_code=126,
        )
    if b"/" in name:
        if _exists(name):
            # execve said ENOENT for a file that is there: its #! interpreter
            # (or ELF loader) is what is missing (reliability case F41).
            raise CommandError(f"exec {shown}: no such file or directory",
                               "the file exists, but the interpreter on its #! line (or its loader) does not",
                               exit_code=127)
        raise CommandError(f"exec {shown}: no such file or directory", "check the path inside the container", exit_code=127)
    raise CommandError(
        f"exec {shown}: executable file not found in $PATH",
        "check the command name, or give its full path inside the container",
        exit_code=127,
    )


def _exists(path: bytes) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False
