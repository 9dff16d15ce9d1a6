"""Containers' state on the host, under MINICONTAINER_ROOT (see paths.py).

    containers/<id>/state.json   written atomically (temp file + rename)
    names/<name>                 a symlink to <id>; creating it is the lock that
                                 makes a name unique, even for two runs started
                                 at the same moment (reliability case G44)

A container stays listed after it exits, until ``minicontainer rm`` (or
``--rm``). If the runtime was killed, the state still says "running": we
notice because the runtime's pid is gone (or now belongs to another
process, told apart by its start time) and report it as exited.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from minicontainer.records import asdict, dataclass, field, fields  # without dataclasses (records.py, issue 15)
from minicontainer import paths
from minicontainer.procfs import proc_start_time  # noqa: F401 - part of this module's API
from minicontainer.errors import ContainerError


@dataclass
class ContainerState:
    id: str
    name: str
    image: str
    image_id: str = ""
    command: list[str] = field(default_factory=list)
    hostname: str = ""
    status: str = "created"  # created | running | restarting | exited
    pid: int = 0  # the container's PID 1, as the host sees it (0 until it runs)
    pid_start: int = 0  # /proc/<pid>/stat field 22: a pid is signalled only while it is still that process
    runtime_pid: int = 0
    runtime_start: int = 0  # /proc/<runtime_pid>/stat field 22, to detect pid reuse
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    exit_code: int | None = None
    exit_reason: str = ""  # e.g. the OOM report
    rootfs: str = ""  # the merged root on the host
    layer_dir: str = ""  # MINICONTAINER_HOME/containers/<id>
    cgroup: str = ""  # --cgroup-parent, if one was given ("" = minicontainer/); "/a/b": the whole cgroup (OCI)
    remove: bool = False
    detached: bool = False  # a monitor (monitor.py) is the runtime, not a foreground `run`
    namespaces: dict = field(default_factory=dict)  # type -> inode number of PID 1's namespaces
    restart_count: int = 0  # how often the monitor started it again (--restart)
    stop_signal: str = ""  # the image's StopSignal, for stopping it ("" = SIGTERM)
    # -p/-P while it runs: {"container_port", "proto", "host_ip", "host_port"} each (ps, port, inspect)
    ports: list = field(default_factory=list)
    proxy_pid: int = 0  # the port proxy (network/proxy.py), stopped when the container ends
    proxy_start: int = 0

    def engine_owned(self) -> bool:
        """Made by minicontainer-runc create: PID 1 is its own runtime (no
        monitor) and the engine's subreaper reaps it."""
        return self.detached and bool(self.pid) and self.runtime_pid == self.pid

    @property
    def short_id(self) -> str:
        return self.id[:12]


# Files in a container's state directory besides state.json.
LOG_FILE = "container.log"  # docker's json-file format, written by the monitor
START_FIFO = "start.fifo"  # `create` leaves PID 1 waiting to open it (runc's exec fifo)
# Made by `stop`/`kill`: the user ended it, so no restart policy applies. A
# file of its own, not a field of state.json, so that the monitor's writes of
# the state can never lose it.
STOP_REQUESTED = "stop-requested"
NOTE_FILE = "container.json"  # in the layer directory: the container, for after a reboot
NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def namespace_inodes(pid: int) -> dict[str, int]:
    """The inode number of each namespace of ``pid`` (what ``lsns`` shows)."""
    out = {}
    for ns in NAMESPACE_TYPES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except OSError:
            pass
    return out


def pid_alive(pid: int, start: int) -> bool:
    """Is ``pid`` still the process that had start time ``start``?"""
    return pid > 1 and start != 0 and proc_start_time(pid) == start


class StateStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else paths.state_root()
        self.containers = self.root / "containers"
        self.names = self.root / "names"

    # for paths.on_store: how to explain an OSError on this store
    store_kind = paths.StoreKind("the container state", "MINICONTAINER_ROOT", "XDG_RUNTIME_DIR", top="root")

    @paths.on_store
    def ensure(self) -> None:
        paths.ensure_private_dir(self.root)
        for d in (self.containers, self.names):
            d.mkdir(exist_ok=True)

    # -- creation ---------------------------------------------------------
    def check_name_free(self, name: str) -> None:
        """Refuse a taken name before any work (reserve() is the real, atomic claim)."""
        link = self.names / name
        if link.is_symlink():
            raise _name_taken(name, os.readlink(link))

    @paths.on_store
    def reserve(self, state: ContainerState) -> None:
        """Claim the name and create the state directory, atomically."""
        self.ensure()
        link = self.names / state.name
        try:
            os.symlink(state.id, link)
        except FileExistsError:
            raise _name_taken(state.name, os.readlink(link)) from None
        try:
            (self.containers / state.id).mkdir(mode=0o700)
            self.save(state)
        except BaseException:
            self._unlink_name(state.name, state.id)
            import shutil  # here, not at the top: the OCI verbs that only read state skip it (~3 ms)
            shutil.rmtree(self.containers / state.id, ignore_errors=True)
            raise

    def save(self, state: ContainerState) -> None:
        with self._locked(state.id):
            on_disk = self._load(state.id)
            if on_disk is not None and on_disk.name != state.name and self._links_to(on_disk.name, state.id):
                # Renamed (``minicontainer rename``) since this process read
                # the state: the name link is the truth, keep the new name.
                state.name = on_disk.name
            self._write(state)

    def _write(self, state: ContainerState) -> None:
        d = self.containers / state.id
        tmp = d / "state.json.tmp"
        # Temp file + rename: a reader (or a crash of this process) sees the old
        # file or the whole new one. No fsync: this is runtime state, which a
        # reboot voids by design (the state root is /run; see write_note), so
        # surviving a power loss buys nothing, and on a disk-backed /run it cost
        # ~7 ms per save here (several saves per container; issue 15).
        with open(tmp, "w") as f:
            json.dump(asdict(state), f, indent=2)
        os.replace(tmp, d / "state.json")

    @contextmanager
    def _locked(self, cid: str):
        """Serialise the read-modify-write of one state.json (flock(2) on its
        directory): the runtime saves its copy while ``rename`` may change it."""
        fd = os.open(self.containers / cid, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _links_to(self, name: str, cid: str) -> bool:
        try:
            return os.readlink(self.names / name) == cid
        except OSError:
            return False

    @paths.on_store
    def rename(self, state: ContainerState, new_name: str) -> None:
        """Give a container another name. The new name link is made first (the
        same claim as ``reserve``: refused if the name is taken, even by a
        ``run --name`` at the same moment), then state.json and the old link
        change under the state lock; a failure on the way takes the new link back."""
        link = self.names / new_name
        try:
            os.symlink(state.id, link)
        except FileExistsError:
            raise ContainerError(
                f"the container name {new_name!r} is already in use by container {os.readlink(link)[:12]}",
                "choose another name, or remove that container first",
            ) from None
        try:
            with self._locked(state.id):
                current = self._load(state.id)
                if current is None:
                    raise ContainerError(f"container {state.name} was removed meanwhile", "see minicontainer ps -a")
                old_name, current.name = current.name, new_name
                self._write(current)
        except BaseException:
            self._unlink_name(new_name, state.id)
            raise
        self._unlink_name(old_name, state.id)
        state.name = new_name

    # -- lookup -----------------------------------------------------------
    def _read(self, cid: str) -> ContainerState | None:
        state = self._load(cid)
        return self._refresh(state) if state is not None else None

    def _load(self, cid: str) -> ContainerState | None:
        """state.json as written, without looking at the runtime."""
        try:
            data = json.loads((self.containers / cid / "state.json").read_text())
        except (OSError, ValueError):
            return None
        known = {f.name for f in fields(ContainerState)}
        return ContainerState(**{k: v for k, v in data.items() if k in known})

    def _refresh(self, state: ContainerState) -> ContainerState:
        """A 'running' container whose runtime is gone has exited, unless it
        was detached and its PID 1 lives on (a monitor killed with SIGKILL:
        the container keeps running, found again through its cgroup)."""
        if state.status in ("running", "created", "restarting") and state.runtime_pid:
            if proc_start_time(state.runtime_pid) != state.runtime_start:
                if state.engine_owned():
                    # minicontainer-runc's: PID 1 ended, and the engine that
                    # reaped it has its exit code (create's watcher records it
                    # when it can; this is the state before that)
                    state.status = "exited"
                    state.exit_reason = state.exit_reason or "the engine reaped it; its exit code is the engine's to tell"
                    return state
                if state.detached and pid_alive(state.pid, state.pid_start):
                    state.exit_reason = "its monitor is gone; stop or rm -f still work through its cgroup"
                    return state
                never_started = state.status == "created"
                state.status = "exited"
                state.exit_reason = state.exit_reason or (
                    "the runtime died before the container started" if never_started else "the runtime was killed")
                if state.exit_code is None:
                    state.exit_code = 125 if never_started else 137
        return state

    @paths.on_store
    def dead_runtimes(self) -> list[ContainerState]:
        """Containers whose state file still says running (or created) but
        whose runtime is gone (killed with SIGKILL, a crash): what they left
        behind has not been cleaned up yet. Returned as they are now (exited)."""
        out = []
        if not self.containers.is_dir():
            return out
        for d in self.containers.iterdir():
            st = self._load(d.name)
            if st is not None and st.status in ("running", "created", "restarting") and not st.engine_owned() and \
                    self._refresh(st).status == "exited":
                out.append(st)
        return out

    @paths.on_store
    def get(self, ref: str) -> ContainerState:
        """Find a container by name, full id or unique id prefix."""
        link = self.names / ref
        if ref and "/" not in ref and link.is_symlink():
            found = self._read(os.readlink(link))
            if found is not None:
                return found
        matches = [p.name for p in self.containers.iterdir() if p.name.startswith(ref)] if ref and self.containers.is_dir() else []
        if len(matches) == 1:
            found = self._read(matches[0])
            if found is not None:
                return found
        if len(matches) > 1:
            raise ContainerError(f"{ref!r} matches {len(matches)} containers", "give more of the id, or the name")
        lost = [st for st in self.lost() if st.name == ref or (ref and st.id.startswith(ref))]
        if len(lost) == 1:
            return self._adopt(lost[0])
        raise ContainerError(f"no such container: {ref}", "list containers with 'minicontainer ps -a'")

    @paths.on_store
    def list(self) -> list[ContainerState]:
        out = []
        if self.containers.is_dir():
            out = [s for s in (self._read(p.name) for p in self.containers.iterdir()) if s is not None]
        out += self.lost()
        return sorted(out, key=lambda s: s.created, reverse=True)

    # -- after a reboot ---------------------------------------------------------
    # The state root is on a tmpfs (/run) and goes with a reboot; the layers
    # are on disk. Each layer directory keeps a note of its container (which
    # state root it belongs to, its state and spec), so `ps -a` still lists
    # it, as exited, and rm, prune and start work on it again.
    def write_note(self, state: ContainerState, layer_dir: Path) -> None:
        note = {"state_root": str(self.root), "state": asdict(state)}
        tmp = Path(layer_dir) / (NOTE_FILE + ".tmp")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, Path(layer_dir) / NOTE_FILE)
        spec = self.containers / state.id / "config.json"
        if spec.exists():
            # a plain read and write, not shutil.copyfile: shutil is ~3 ms of a run's imports (issue 15)
            tmp = Path(layer_dir) / "config.json.tmp"
            tmp.write_bytes(spec.read_bytes())
            os.replace(tmp, Path(layer_dir) / "config.json")

    def lost(self) -> list[ContainerState]:
        """Containers of this state root whose layer is there but whose state is gone."""
        layers = paths.home() / "containers"
        out = []
        try:
            entries = list(layers.iterdir())
        except OSError:
            return out
        known = {f.name for f in fields(ContainerState)}
        for d in entries:
            if (self.containers / d.name).exists():
                continue
            try:
                note = json.loads((d / NOTE_FILE).read_text())
            except (OSError, ValueError):
                continue
            if note.get("state_root") != str(self.root):
                continue  # another state root's container (another user, another test)
            st = ContainerState(**{k: v for k, v in note["state"].items() if k in known})
            st.status, st.pid, st.pid_start = "exited", 0, 0
            st.exit_reason = "the machine restarted (its state was on a tmpfs); its layer is kept"
            out.append(st)
        return out

    def _adopt(self, st: ContainerState) -> ContainerState:
        """Give a lost container its state directory back (and its name, if free)."""
        self.ensure()
        d = self.containers / st.id
        d.mkdir(mode=0o700, exist_ok=True)
        spec = Path(st.layer_dir) / "config.json"
        if spec.exists():
            import shutil
            shutil.copyfile(spec, d / "config.json")
        try:
            os.symlink(st.id, self.names / st.name)
        except FileExistsError:
            pass
        self.save(st)
        return st

    def owns(self, state: ContainerState) -> bool:
        """Is ``state``'s directory ours (reserved by this container)?"""
        return (self.containers / state.id).is_dir()

    # -- the user's stop ----------------------------------------------------
    def request_stop(self, state: ContainerState) -> None:
        try:
            (self.containers / state.id / STOP_REQUESTED).touch()
        except FileNotFoundError:
            pass  # removed meanwhile

    def stop_requested(self, state: ContainerState) -> bool:
        return (self.containers / state.id / STOP_REQUESTED).exists()

    def clear_stop(self, state: ContainerState) -> None:
        try:
            (self.containers / state.id / STOP_REQUESTED).unlink()
        except FileNotFoundError:
            pass

    # -- removal ----------------------------------------------------------
    def remove(self, state: ContainerState) -> None:
        on_disk = self._load(state.id)  # renamed since ``state`` was read? that link goes too
        import shutil
        shutil.rmtree(self.containers / state.id, ignore_errors=True)
        self._unlink_name(state.name, state.id)
        if on_disk is not None and on_disk.name != state.name:
            self._unlink_name(on_disk.name, state.id)

    def _unlink_name(self, name: str, cid: str) -> None:
        link = self.names / name
        try:
            if os.readlink(link) == cid:
                link.unlink()
        except OSError:
            pass


def _name_taken(name: str, other: str) -> ContainerError:
    return ContainerError(
        f"the container name {name!r} is already in use by container {other[:12]}",
        f"remove it with 'minicontainer rm {name}' or choose another --name",
    )


def new_id() -> str:
    return os.urandom(32).hex()


def now() -> float:
    return time.time()
