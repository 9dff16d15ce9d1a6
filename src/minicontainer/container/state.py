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

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from minicontainer import paths
from minicontainer.errors import ContainerError


@dataclass
class ContainerState:
    id: str
    name: str
    image: str
    image_id: str = ""
    command: list[str] = field(default_factory=list)
    hostname: str = ""
    status: str = "created"  # created | running | exited
    pid: int = 0  # the container's PID 1, as the host sees it (0 until it runs)
    pid_start: int = 0  # /proc/<pid>/stat field 22: `rm -f` signals ``pid`` only while it is still that process
    runtime_pid: int = 0
    runtime_start: int = 0  # /proc/<runtime_pid>/stat field 22, to detect pid reuse
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    exit_code: int | None = None
    exit_reason: str = ""  # e.g. the OOM report
    rootfs: str = ""  # the merged root on the host
    layer_dir: str = ""  # MINICONTAINER_HOME/containers/<id>
    cgroup: str = ""  # --cgroup-parent, if one was given ("" = minicontainer/)
    remove: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]


def proc_start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces and ')': split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return 0  # a zombie has exited; it only waits for its parent to reap it
    return int(rest[19]) if len(rest) > 19 else 0


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
    @paths.on_store
    def reserve(self, state: ContainerState) -> None:
        """Claim the name and create the state directory, atomically."""
        self.ensure()
        link = self.names / state.name
        try:
            os.symlink(state.id, link)
        except FileExistsError:
            other = os.readlink(link)
            raise ContainerError(
                f"the container name {state.name!r} is already in use by container {other[:12]}",
                f"remove it with 'minicontainer rm {state.name}' or choose another --name",
            ) from None
        try:
            (self.containers / state.id).mkdir(mode=0o700)
            self.save(state)
        except BaseException:
            self._unlink_name(state.name, state.id)
            shutil.rmtree(self.containers / state.id, ignore_errors=True)
            raise

    def save(self, state: ContainerState) -> None:
        d = self.containers / state.id
        tmp = d / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(state), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / "state.json")

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
        """A 'running' container whose runtime is gone has exited."""
        if state.status in ("running", "created") and state.runtime_pid:
            if proc_start_time(state.runtime_pid) != state.runtime_start:
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
            if st is not None and st.status in ("running", "created") and self._refresh(st).status == "exited":
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
        raise ContainerError(f"no such container: {ref}", "list containers with 'minicontainer ps -a'")

    @paths.on_store
    def list(self) -> list[ContainerState]:
        if not self.containers.is_dir():
            return []
        out = [s for s in (self._read(p.name) for p in self.containers.iterdir()) if s is not None]
        return sorted(out, key=lambda s: s.created, reverse=True)

    def owns(self, state: ContainerState) -> bool:
        """Is ``state``'s directory ours (reserved by this container)?"""
        return (self.containers / state.id).is_dir()

    # -- removal ----------------------------------------------------------
    def remove(self, state: ContainerState) -> None:
        shutil.rmtree(self.containers / state.id, ignore_errors=True)
        self._unlink_name(state.name, state.id)

    def _unlink_name(self, name: str, cid: str) -> None:
        link = self.names / name
        try:
            if os.readlink(link) == cid:
                link.unlink()
        except OSError:
            pass


def new_id() -> str:
    return os.urandom(32).hex()


def now() -> float:
    return time.time()
