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
from minicontainer.errors import ImageError, MiniError, NotRootError, UsageError, warn
from minicontainer.container.hostcheck import check_namespaces, check_shell, require_root
from minicontainer.container.rootfs import ResolvedImage, needs_mountpoints, prepare_layer, remove_layer_dir, resolve_image, storage_mode
from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time


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
        if os.geteuid() == 0 and not _sweep_cgroup(st):
            continue  # try again next time
        if st.remove:
            if st.layer_dir:
                remove_layer_dir(st.layer_dir)
            store.remove(st)
        else:
            try:
                store.save(st)
            except OSError:
                pass


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


def _interrupted(sig, frame):
    raise MiniError(f"interrupted by {signal.Signals(sig).name} while setting up; cleaned up", None,
                    exit_code=128 + sig)


class Runner:
    """Runs one ContainerSpec. ``out`` gets --explain/--dry-run text."""

    def __init__(self, spec, *, explain: bool = False, out=None, sc=None, userns: bool = False):
        self.spec = spec
        # Rootless mode (userns.py): with --userns, or whenever we are not the
        # host's root. ``unprivileged`` also rules out cgroups and mknod.
        from minicontainer.container.userns import host_uid

        self.unprivileged = host_uid() != 0
        self.userns = userns or self.unprivileged
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
        spec = self.spec
        image = resolve_image(spec.image, build=not dry_run)
        cid = new_id()
        name = spec.name or cid[:12]
        hostname = spec.hostname or name
        layer = paths.home() / "containers" / cid
        mode = storage_mode(layer.parent)
        userns_steps = []
        if self.userns:
            from minicontainer.container import userns

            if "pid" not in spec.namespaces:
                raise UsageError(
                    "--pid host cannot be combined with a user namespace (rootless mode)",
                    "mounting a /proc for the host's PID namespace needs privilege over it (proc(5)); "
                    "run as root, or drop --pid host",
                )
            userns_steps = [S.UserNamespace(mapping=userns.plan_mapping())]
            if not userns.overlay_allowed():
                mode = "bind"  # overlayfs in a user namespace needs Linux 5.11
        writable = not spec.read_only or needs_mountpoints(spec, image.rootfs)
        lower = image.rootfs
        if mode == "bind" and writable:
            lower = str(layer / "copy")  # no overlayfs: a private copy, made in run()
        rootfs = P.RootfsLayout(lower=lower, layer=str(layer), mode=mode, writable=writable)
        cgroup_steps = self._cgroup_steps(cid)
        from minicontainer.security import security_steps

        plan = P.build_plan(
            spec,
            hostname=hostname,
            rootfs=rootfs,
            cgroup_steps=cgroup_steps,
            cgroup_view=self.cgroup.view() if self.cgroup is not None else None,
            security=security_steps(spec.security),
            userns_steps=userns_steps,
            rootless=self.userns,
        )
        plan.legend = {"ID": cid, "ROOTFS": rootfs.target}
        self._legend = plan.legend
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
            cgroup=(getattr(spec.resources, "cgroup_parent", None) or ""),
        )
        return plan, state, image, rootfs

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
        try:
            self.cgroup = cgroups.manager_for(cid, resources)
            writes = self.cgroup.steps()  # once: the interpreter executes these very objects
        except CgroupError as e:
            if resources is not None and not resources.is_empty():
                raise
            warn(f"running without a cgroup: {e}")
            self.cgroup = None
            return []
        return [S.CgroupStep(write=w) for w in writes]

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
                "no limit was asked for, so the container runs in the caller's cgroup (stats and pause do not apply)",
            )
        ]

    # -- running ----------------------------------------------------------
    def dry_run(self) -> int:
        plan, state, image, _ = self.make_plan(dry_run=True)
        print(f"# container {state.short_id} ({state.name}), image {image.name}: the plan, not carried out", file=self.out)
        print(plan.render(), file=self.out)
        return 0

    def run(self) -> int:
        if self.userns:
            from minicontainer.container.userns import check_allowed

            check_allowed()
        else:
            require_root()
        check_namespaces(self.spec.namespaces)
        plan, state, image, rootfs = self.make_plan()
        check_shell(image.rootfs, self.spec.argv())
        store = StateStore()
        state.created = time.time()
        state.runtime_pid = os.getpid()
        state.runtime_start = proc_start_time(os.getpid())
        # From here on something exists to clean up: SIGTERM or SIGHUP must
        # unwind through the finally below instead of killing us on the spot
        # (once the container runs, process.py forwards them to it instead).
        layer = Path(state.layer_dir)
        container = None
        previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            sweep_dead_runtimes(store)
            self._reserve(store, state, image)
            prepare_layer(layer, rootfs, image.rootfs)
            from minicontainer.container.process import Container, Hooks

            def on_started(pid):
                state.pid = pid
                state.pid_start = proc_start_time(pid)
                state.status = "running"
                state.started = time.time()
                store.save(state)

            hooks = Hooks(
                explain=self._print_step if self.explain else None,
                on_started=on_started,
                after_kill=self._thaw,
            )
            if self.explain:
                print("\n".join(plan.header()), file=self.out)
            container = Container(plan, self.sc, tty=self.spec.tty, interactive=self.spec.interactive, hooks=hooks,
                                  cgroup=self.cgroup)
            container.start()
            code = container.wait()
            state.exit_code = code
            state.exit_reason = self._exit_report() or ""
            if state.exit_reason:
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
            state.status = "exited"
            state.finished = time.time()
            # A cgroup that was there and refused (busy or frozen, reliability
            # case 32) is not ours: only one that passed the check is destroyed.
            if container is not None and container.cgroup_owned and self.cgroup is not None:
                self._destroy_cgroup()
            if not store.owns(state):
                pass  # the name was taken, or a signal came first: nothing of ours to remove
            elif self.spec.remove:
                remove_layer_dir(layer)
                store.remove(state)
            elif state.exit_code is None or (container is None or not container.pid):
                # It never started: nothing to keep (docker keeps "Created"
                # containers, but a half-made one is only clutter here).
                remove_layer_dir(layer)
                store.remove(state)
            else:
                store.save(state)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _reserve(self, store: StateStore, state: ContainerState, image: ResolvedImage) -> None:
        """Write the state (which names the image) under the image store's lock,
        so `image rm`/`prune` cannot delete the image between our resolving it
        and our state saying it is in use."""
        if image.image_id.startswith("dir:"):
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

    def _destroy_cgroup(self) -> None:
        try:
            self.cgroup.destroy()
        except MiniError as e:
            warn(str(e))

    def _exit_report(self) -> str | None:
        if self.cgroup is None:
            return None
        try:
            return self.cgroup.exit_report()
        except (MiniError, OSError):
            return None
