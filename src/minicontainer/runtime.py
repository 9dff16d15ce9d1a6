"""The only module that knows the order of a run, from spec to exit code.

    1. resolve the image (a name in the store, a directory, or a tarball)
    2. choose the id, name and hostname; lay out the container's layer dirs
    3. build the plan (plan.py) — or, with --dry-run, print it and stop
    4. reserve the name and write state.json (state.py)
    5. start: fork, put the child in its cgroup, let it set itself up and
       exec (process.py, apply.py)
    6. wait, forwarding signals; report OOM/pids events
    7. clean up: kill what is left in the cgroup, remove it, and with --rm
       the writable layer and the state

Whatever fails, step 7 runs: no cgroup, layer, state or process is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from minicontainer import paths
from minicontainer import plan as P
from minicontainer.errors import ImageError, MiniError, NotRootError, UsageError
from minicontainer.state import ContainerState, StateStore, new_id, proc_start_time


@dataclass(frozen=True)
class ResolvedImage:
    name: str  # as the user wrote it
    image_id: str
    rootfs: str  # the lower layer
    exists: bool = True  # False only in --dry-run for a not-yet-built 'mini'


def sweep_dead_runtimes(store: StateStore) -> None:
    """Finish the cleanup of containers whose runtime was killed (SIGKILL, a
    crash): kill what is left in their cgroup and remove it (with --pid host
    the kernel does not take the other processes down with PID 1), and for
    --rm containers remove the layer and the state too (reliability case 33).
    Each is swept once: its state is saved as exited."""
    for st in store.dead_runtimes():
        if os.geteuid() == 0:
            try:
                from minicontainer.cgroups import manager_of

                manager_of(st.id, st.cgroup).destroy()
            except (MiniError, OSError):
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


def remove_layer_dir(layer) -> None:
    """Remove a container's layer directory, whoever owns its files.

    As root, a plain recursive delete. Rootless, overlayfs leaves a mode-000
    work/work directory and the container's files belong to ids of its user
    namespace, which the caller cannot delete from outside: userns.remove_tree
    does it from inside a namespace with the same map.
    """
    if not os.path.isdir(layer):
        return
    if os.geteuid() != 0:
        from minicontainer.userns import remove_tree

        if remove_tree(str(layer)):
            return
    shutil.rmtree(layer, ignore_errors=True)


def require_root(what: str = "running a container") -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            f"{what} needs root: namespaces, mounts and cgroups are privileged",
            "run it as root (e.g. sudo minicontainer ...)",
        )


def resolve_image(ref: str, *, build: bool = True) -> ResolvedImage:
    """An image name, a directory (used read-only as the lower layer) or a tarball."""
    from minicontainer.images.store import ImageStore

    store = ImageStore()
    # Like docker: something that looks like a path is a path; a bare word is
    # an image name first (a directory called "mini" in the current directory
    # does not shadow the image), and a file or directory only if no image has it.
    looks_like_path = "/" in ref or ref.startswith(".")
    if not looks_like_path and (store.exists(ref) or ref == "mini" or not os.path.exists(ref)):
        if not store.exists(ref) and ref == "mini":
            if not build:
                return ResolvedImage(ref, "(not built yet)", str(store.images_dir / "<id>" / "rootfs"), exists=False)
            from minicontainer.images.mini import ensure_mini

            image = ensure_mini(store)
            return ResolvedImage(ref, image.id, str(image.rootfs))
        image = store.get(ref)
        return ResolvedImage(ref, image.id, str(image.rootfs))
    path = os.path.abspath(ref)
    if os.path.isdir(path):
        return ResolvedImage(ref, "dir:" + path, path)
    if os.path.isfile(path):
        return _import_tarball(store, path, build)
    raise ImageError(f"no such image directory or tarball: {ref}", "give an existing directory or file", exit_code=125)


def _import_tarball(store, path: str, build: bool) -> ResolvedImage:
    try:
        from minicontainer.images import importer
    except ImportError:
        raise ImageError(f"{path} is a file, and importing tarballs is not available yet", "extract it into a directory") from None
    if not build:
        return ResolvedImage(path, "(imported at run time)", path, exists=False)
    image = importer.import_for_run(store, path)
    return ResolvedImage(path, image.id, str(image.rootfs))


OVERLAYFS_SUPER_MAGIC = 0x794C7630


def overlay_supported(layer_parent: Path) -> bool:
    """Can we mount an overlay with its upper layer under ``layer_parent``?

    The kernel must know overlayfs, and the upper directory must not itself
    sit on an overlay (inside a docker container it does: the kernel refuses
    overlayfs as an upper filesystem).
    """
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return False
    except OSError:
        return False
    probe = layer_parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return _fs_magic(str(probe)) != OVERLAYFS_SUPER_MAGIC


def _interrupted(sig, frame):
    raise MiniError(f"interrupted by {signal.Signals(sig).name} while setting up; cleaned up", None,
                    exit_code=128 + sig)


def storage_mode(layer_parent: Path) -> str:
    """"overlay" or "bind" (a private copy, bind-mounted): MINICONTAINER_STORAGE=copy
    forces the copy (like docker's vfs driver), otherwise overlay where it works."""
    wanted = os.environ.get("MINICONTAINER_STORAGE", "auto")
    if wanted not in ("auto", "overlay", "copy"):
        raise UsageError(f"MINICONTAINER_STORAGE={wanted!r} is not known", "use auto, overlay or copy")
    if wanted == "copy":
        return "bind"
    if wanted == "overlay" or overlay_supported(layer_parent):
        return "overlay"
    return "bind"


def _fs_magic(path: str) -> int | None:
    """statfs(2) f_type (Python's os.statvfs does not expose it)."""
    import ctypes

    buf = ctypes.create_string_buffer(128)  # struct statfs is 120 bytes on x86_64
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return int.from_bytes(buf.raw[:8], sys.byteorder) & 0xFFFFFFFF


def needs_mountpoints(spec, rootfs: str) -> bool:
    """Must a --read-only root still get a layer, to hold mountpoints the
    image lacks (a -v or --tmpfs target, /tmp, /dev)? Docker makes them in a
    small layer of its own, then mounts the root read-only; so do we."""
    if spec.volumes or spec.tmpfs:
        return True
    return not all(os.path.isdir(os.path.join(rootfs, d)) and not os.path.islink(os.path.join(rootfs, d))
                   for d in ("tmp", "dev"))


def check_namespaces(namespaces) -> None:
    """A kernel without a namespace we need: say which, before anything starts."""
    from minicontainer.errors import MiniError

    names = {"mnt": "mnt", "uts": "uts", "ipc": "ipc", "pid": "pid", "net": "net", "cgroup": "cgroup"}
    for ns in namespaces:
        if not os.path.exists(f"/proc/self/ns/{names[ns]}"):
            raise MiniError(
                f"this kernel has no {ns} namespace (/proc/self/ns/{names[ns]} is missing)",
                f"use a kernel built with it, or share the host's with --{'network' if ns == 'net' else ns} host",
            )


def check_shell(rootfs: str, argv: tuple[str, ...]) -> None:
    """A directory without /bin/sh cannot run the default shell: say so up front."""
    from minicontainer.safepath import resolve_in_root

    if argv[0] != "/bin/sh":
        return
    found = resolve_in_root(rootfs, "/bin/sh")
    if found is None or not os.path.isfile(found):
        raise ImageError(
            f"{rootfs} has no /bin/sh to run",
            "give a command that exists in it (minicontainer run IMAGE /path/to/program), or use a complete root filesystem",
            exit_code=125,
        )


class Runner:
    """Runs one ContainerSpec. ``out`` gets --explain/--dry-run text."""

    def __init__(self, spec, *, explain: bool = False, out=None, sc=None, userns: bool = False):
        self.spec = spec
        # Rootless mode (userns.py): with --userns, or whenever we are not the
        # host's root. ``unprivileged`` also rules out cgroups and mknod.
        from minicontainer.userns import host_uid

        self.unprivileged = host_uid() != 0
        self.userns = userns or self.unprivileged
        self.explain = explain
        self.out = out if out is not None else sys.stderr
        self._sc = sc
        self.cgroup = None  # a cgroups manager, when limits/cgroups are in use
        self._cgroup_stages_done: set[str] = set()
        self._legend: dict[str, str] = {}
        self.security = None

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
            from minicontainer import userns

            if "pid" not in spec.namespaces:
                raise UsageError(
                    "--pid host cannot be combined with a user namespace (rootless mode)",
                    "mounting a /proc for the host's PID namespace needs privilege over it (proc(5)); "
                    "run as root, or drop --pid host",
                )
            userns_steps = [userns.UserNamespace(mapping=userns.plan_mapping())]
            if not userns.overlay_allowed():
                mode = "bind"  # overlayfs in a user namespace needs Linux 5.11
        writable = not spec.read_only or needs_mountpoints(spec, image.rootfs)
        lower = image.rootfs
        if mode == "bind" and writable:
            lower = str(layer / "copy")  # no overlayfs: a private copy, made in run()
        rootfs = P.RootfsLayout(lower=lower, layer=str(layer), mode=mode, writable=writable)
        cgroup_steps = self._cgroup_steps(cid)
        security_steps, mask_steps = self._security_steps()
        plan = P.build_plan(
            spec,
            hostname=hostname,
            rootfs=rootfs,
            cgroup_steps=cgroup_steps,
            security_steps=security_steps,
            mask_steps=mask_steps,
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
            writes = self.cgroup.plan()
        except CgroupError as e:
            if resources is not None and not resources.is_empty():
                raise
            print(f"minicontainer: warning: running without a cgroup: {e}", file=sys.stderr)
            self.cgroup = None
            return []
        return [P.CgroupStep(write=w) for w in writes]

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
            P.Note(
                text="no cgroup for this container (rootless mode)",
                reason="cgroups(7): only root may create cgroups unless the host delegates a subtree to the user; "
                "no limit was asked for, so the container runs in the caller's cgroup (stats and pause do not apply)",
            )
        ]

    def _security_steps(self) -> tuple[list, list]:
        try:
            from minicontainer import security

            security.plan_steps  # noqa: B018
        except (ImportError, AttributeError):
            return [], []
        self.security = security
        return security.plan_steps(self.spec.security), security.mask_steps(self.spec.security)

    # -- running ----------------------------------------------------------
    def dry_run(self) -> int:
        plan, state, image, _ = self.make_plan(dry_run=True)
        print(f"# container {state.short_id} ({state.name}), image {image.name}: the plan, not carried out", file=self.out)
        print(plan.render(), file=self.out)
        return 0

    def run(self) -> int:
        if self.userns:
            from minicontainer.userns import check_allowed

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
        cgroup_created = False
        container = None
        previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            sweep_dead_runtimes(store)
            self._reserve(store, state, image)
            self._prepare_layer(layer, rootfs, image)
            from minicontainer.process import Container, Hooks

            def parent_step(step, child_pid):
                nonlocal cgroup_created
                # A cgroup that already exists and is refused (busy or frozen,
                # reliability case 32) is not ours: never destroy it.
                foreign = not cgroup_created and self.cgroup.exists()
                cgroup_created = True
                try:
                    self._apply_cgroup_step(step, child_pid)
                except MiniError:
                    if foreign:
                        cgroup_created = False
                    raise

            def on_started(pid):
                state.pid = pid
                state.status = "running"
                state.started = time.time()
                store.save(state)

            hooks = Hooks(
                explain=self._print_step if self.explain else None,
                parent_step=parent_step,
                security_prepare=self._security_prepare(),
                on_started=on_started,
                after_kill=self._thaw,
            )
            if self.explain:
                print("\n".join(plan.header()), file=self.out)
            container = Container(plan, self.sc, tty=self.spec.tty, interactive=self.spec.interactive, hooks=hooks)
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
            if cgroup_created and self.cgroup is not None:
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

    def _prepare_layer(self, layer: Path, rootfs, image: ResolvedImage) -> None:
        """The container's own directory: lower (a link to the image), upper/
        and work/ for the overlay, merged/ where the root is mounted."""
        paths.ensure_private_dir(layer.parent)
        layer.mkdir(mode=0o700)
        os.mkdir(layer / "merged", 0o755)
        if rootfs.mode == "overlay":
            os.symlink(rootfs.lower, layer / "lower")
            if not rootfs.writable:
                os.mkdir(layer / "empty", 0o755)
            else:
                os.mkdir(layer / "upper", 0o755)
                os.mkdir(layer / "work", 0o700)
        elif rootfs.writable:
            self._copy_fallback(image.rootfs, rootfs.lower)

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

    def _copy_fallback(self, source: str, copy: str) -> None:
        """No overlayfs (some nested setups): copy the image and say so."""
        from minicontainer.images.importer import copy_tree

        print("minicontainer: overlayfs is not available; copying the image instead (slower)", file=sys.stderr)
        os.mkdir(copy, 0o755)
        try:
            copy_tree(Path(source), Path(copy))  # keeps owners, modes and links, never follows a symlink
        except ImageError as e:
            e.exit_code = 125  # a failed run, not a failed image command
            raise

    def _print_step(self, i: int, step) -> None:
        text = "\n".join(P.render_step(i, step, self._legend)) + "\n"
        try:
            os.write(2 if self.out is sys.stderr else self.out.fileno(), text.encode())
        except (OSError, AttributeError, ValueError):
            self.out.write(text)

    # -- cgroups and security hooks (filled by those layers) -----------------
    def _apply_cgroup_step(self, step, child_pid: int) -> None:
        """Carry out the cgroup steps by stage: the manager's create() (which
        also refuses a stale non-empty cgroup), apply() and add_process()
        each run the steps of their stage, in plan order."""
        if step.stage in self._cgroup_stages_done:
            return
        self._cgroup_stages_done.add(step.stage)
        if step.stage == "create":
            self.cgroup.create()
        elif step.stage == "limit":
            self.cgroup.apply()
        elif step.stage == "join":
            self.cgroup.add_process(child_pid)

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
            print(f"minicontainer: warning: {e}", file=sys.stderr)

    def _exit_report(self) -> str | None:
        if self.cgroup is None:
            return None
        try:
            return self.cgroup.exit_report()
        except (MiniError, OSError):
            return None

    def _security_prepare(self):
        if self.security is None:
            return None
        config = self.spec.security

        def prepare(root_fd, parent_fd):
            return self.security.prepare_enter(config, root_fd, parent_fd=parent_fd)

        return prepare
