"""What both cgroup managers do, and the steps they do it with.

A manager owns one container's cgroup: ``<mount>/minicontainer/<id>`` on v2,
one such directory per controller hierarchy on v1. Its life:

1. ``steps()``       the ordered steps as data (``CgroupWrite``), computed
                     once per run: a check of a leftover cgroup, then
                     ``plan()``: "create" (mkdir, enable controllers ...),
                     "limit" (each limit file) and "join" (the child's pid
                     into cgroup.procs, before it execs, so it never runs
                     unlimited); nothing is changed;
2. ``execute(step)`` carries out one of them: the plan's CgroupSteps hold
                     these objects and the interpreter hands each one here,
                     so what ``--explain`` shows is what runs;
3. ``stats()``, ``freeze()``/``thaw()``, ``oom_killed()``, ``exit_report()``;
4. ``destroy()``     kill every process left, remove every directory,
                     sub-cgroups first, with a deadline.

The subclasses (v1.py, v2.py) supply the plan and the version-specific
files; everything else lives here. All I/O goes through a ``CgroupFs`` (files.py), so unit tests run the
same code against a temp dir.
"""

from __future__ import annotations

import errno
import os
import signal
from abc import ABC, abstractmethod
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

from minicontainer import units
from minicontainer.cgroups.files import CgroupFs, read_pids, walk_bottom_up
from minicontainer.cgroups.resources import Resources
from minicontainer.errors import CgroupError, SyscallError
from minicontainer.names import check_name

DEFAULT_PARENT = "minicontainer"
# How an exit report says the OOM killer struck (inspect's .State.OOMKilled looks for it).
OOM_KILLED = "killed by the OOM killer"


def check_id(container_id: str) -> str:
    # names.py's rule (a safe single path component), with room for 64-hex ids and more
    return check_name(container_id, "container id", "use letters, digits and _.- (starting with a letter or digit)",
                      max_len=128, used_as="a cgroup name")


@dataclass(frozen=True)
class CgroupWrite:
    """One step on the cgroup filesystem.

    ``action``:
      - ``check``    refuse a busy or frozen cgroup at ``file``, remove an
                     empty leftover;
      - ``create``   mkdir ``file`` (a cgroup directory);
      - ``write``    write ``value`` to ``file``; when ``source`` is set the
                     value is copied from that file at run time (v1 cpuset),
                     and only if ``file`` is still empty;
      - ``move-out`` move every process listed in ``source`` into ``file``
                     (the cgroup v2 "no internal processes" rule);
      - ``join``     write the container's pid to ``file``;
      - ``attach-device-filter``  load ``program`` (eBPF, devices.py) and
                     attach it to the cgroup directory ``file`` with
                     bpf(2): cgroup v2's device allow-list, which ``value``
                     spells as v1 would.
    ``stage`` says which method runs it: ``create`` / ``limit`` / ``join``.
    ``counterpart`` names the same knob in the other cgroup version, so a
    learner on a v1 host sees the v2 file and back. ``optional`` steps are
    defaults (not asked for by a flag) and are skipped when the host lacks
    the file. ``flag`` is the user's flag that asked for it, for errors.
    """

    file: str
    value: str
    why: str
    counterpart: str = ""
    action: str = "write"
    stage: str = "limit"
    source: str = ""
    optional: bool = False
    flag: str = ""
    program: bytes = field(default=b"", repr=False)

    @property
    def program_length(self) -> int:
        return len(self.program) // 8  # eBPF instructions are 8 bytes

    def describe(self) -> str:
        """One line for --explain."""
        if self.action == "check":
            return f"check that no cgroup {self.file} is left in use"
        if self.action == "create":
            return f"mkdir {self.file}"
        if self.action == "move-out":
            return f"move every process in {self.source} to {self.file}"
        if self.action == "join":
            return f"echo {self.value} > {self.file}"
        if self.action == "attach-device-filter":
            return (f"attach an eBPF device filter ({self.program_length} instructions) to {self.file}: "
                    f"allow {self.value}; every other device is refused (EPERM)")
        extra = f"   (other cgroup version: {self.counterpart})" if self.counterpart else ""
        if self.source:
            return f"cat {self.source} > {self.file}{extra}"
        return f"echo '{self.value}' > {self.file}{extra}"

    def shell(self) -> str:
        """The command a person would type to do the same by hand."""
        if self.action == "check":
            return f"test ! -d {self.file} || {{ test -z \"$(cat {self.file}/cgroup.procs)\" && rmdir {self.file}; }}"
        if self.action == "create":
            return f"mkdir {self.file}"
        if self.action == "move-out":
            return f"for p in $(cat {self.source}); do echo $p > {self.file}; done"
        if self.action == "join":
            return f"echo $CHILD_PID > {self.file}"
        if self.action == "attach-device-filter":
            # No shell tool assembles eBPF from text; with the program in an ELF object, bpftool does the rest.
            return ("bpftool prog load devices.o /sys/fs/bpf/devices type cgroup/dev && "
                    f"bpftool cgroup attach {self.file} device pinned /sys/fs/bpf/devices multi")
        if self.source:
            return f"cat {self.source} > {self.file}"
        return f"echo '{self.value}' > {self.file}"


@dataclass(frozen=True)
class CgroupView:
    """Where the container's own cgroup is, for what it sees at /sys/fs/cgroup.

    ``version`` "v2": ``dirs`` holds one entry, the container's cgroup
    directory. "v1": one entry per hierarchy it joined: the directory name
    under /sys/fs/cgroup (the host's, e.g. ``memory`` or ``cpu,cpuacct``),
    the container's cgroup directory in that hierarchy, and the controllers
    it carries (co-mounted ones get a symlink each, as on the host).
    """

    version: str
    dirs: tuple[tuple[str, str, tuple[str, ...]], ...]


def required_controllers(r: Resources, *, io: str = "io") -> dict[str, str]:
    """controller -> the flag that needs it. The block I/O controller is
    called ``io`` on v2 and ``blkio`` on v1; the others share their names."""
    need: dict[str, str] = {}
    if r.memory is not None:
        need["memory"] = "--memory"
    elif r.memory_reservation is not None:
        need["memory"] = "--memory-reservation"
    if r.cpus is not None:
        need["cpu"] = "--cpus"
    elif r.cpu_shares is not None:
        need["cpu"] = "--cpu-shares"
    if r.cpuset_cpus is not None or r.cpuset_mems is not None:
        need["cpuset"] = "--cpuset-cpus" if r.cpuset_cpus is not None else "--cpuset-mems"
    if r.pids_limit is not None:
        need["pids"] = "--pids-limit"
    if r.device_read_bps or r.device_write_bps:
        need[io] = "--device-read-bps" if r.device_read_bps else "--device-write-bps"
    return need


def format_exit_report(*, oom_kills: int, memory_limit: int | None, memory_peak: int | None,
                       pids_max_hits: int, pids_limit: int | None) -> str | None:
    """The one-line explanation shown when a container ends (pure).

    >>> format_exit_report(oom_kills=1, memory_limit=80 << 20, memory_peak=80 << 20, pids_max_hits=0, pids_limit=None)
    'killed by the OOM killer: memory limit 80 MiB, peak 80 MiB'
    """
    parts = []
    if oom_kills > 0:
        details = []
        if memory_limit is not None:
            details.append(f"memory limit {units.format_size(memory_limit)}")
        if memory_peak is not None:
            details.append(f"peak {units.format_size(memory_peak)}")
        parts.append(OOM_KILLED + (": " + ", ".join(details) if details else ""))
    if pids_max_hits > 0:
        limit = f"pids limit {pids_limit} reached" if pids_limit is not None else "pids limit reached"
        parts.append(f"forks failed: {limit}")
    return "; ".join(parts) or None


class CgroupManager(ABC):
    """The interface the runtime calls; see the module docstring for the order."""

    version = ""  # "v1" | "v2"

    def __init__(self, container_id: str, resources: Resources | None = None, *,
                 fs: CgroupFs | None = None, timeout: float = 10.0):
        self.container_id = check_id(container_id)
        self.resources = resources if resources is not None else Resources()
        self.fs = fs if fs is not None else CgroupFs()
        self.timeout = timeout

    # -- where ---------------------------------------------------------------
    @property
    def relative_path(self) -> str:
        """``minicontainer/<id>`` or ``<cgroup_parent>/<id>``, below each mount
        (or an OCI bundle's whole cgroupsPath)."""
        if self.resources.cgroup_path:
            return self.resources.cgroup_path
        parent = self.resources.cgroup_parent or DEFAULT_PARENT
        return f"{parent}/{self.container_id}"

    @abstractmethod
    def leaves(self) -> list[str]:
        """The container's cgroup directories (one on v2, one per hierarchy on v1)."""

    @property
    def path(self) -> str:
        """The main cgroup directory (v2: the only one; v1: the freezer's or first)."""
        return self.leaves()[0]

    def exists(self) -> bool:
        return any(self.fs.is_dir(p) for p in self.leaves())

    @abstractmethod
    def view(self) -> CgroupView:
        """The container's cgroup directories, for its /sys/fs/cgroup (the plan mounts them)."""

    # -- the steps, and carrying them out -----------------------------------------
    @abstractmethod
    def plan(self, resources: Resources | None = None) -> list[CgroupWrite]:
        """The create, limit and join steps, in order, as data. Raises
        CgroupError for limits the host cannot enforce."""

    def steps(self) -> list[CgroupWrite]:
        """What a run does, in order: the check of a cgroup left with the same
        id, then ``plan()``. The runtime computes this once; the interpreter
        hands each step to :meth:`execute`."""
        check = CgroupWrite(
            file=self.path, value="", action="check", stage="create",
            why="a cgroup already there with this id is refused if it holds processes or is frozen "
                "(reliability case 32), and removed if it is an empty leftover of a crash",
        )
        return [check] + self.plan()

    CREATE_ATTEMPTS = 4

    def execute(self, s: CgroupWrite, pid: int | None = None) -> None:
        """Carry out one step.

        Any ENOENT in the create stage may be another container's cleanup:
        its destroy() removes the shared "minicontainer" directory when it
        looks unused, which can fall between any two of our create steps (a
        mkdir below it, a subtree_control or cpuset write into it), and the
        directory may even be back, made by a third container, by the time
        we look. So the create steps are re-planned (a parent that existed
        when we planned may be gone now) and redone, a few times; only an
        ENOENT that stays is reported, as what it then is (a missing
        controller file, or a parent that keeps disappearing)."""
        if s.action == "check":
            self._refuse_or_clear_existing()
            return
        if s.stage != "create":
            self._run(s, pid=pid)
            return
        last: _Vanished | None = None
        for attempt in range(self.CREATE_ATTEMPTS):
            try:
                if attempt:
                    for again in self.plan():
                        if again.stage == "create":
                            self._run(again)
                self._run(s, pid=pid)
                return
            except _Vanished as e:
                last = e
        raise last.error() from None

    def create(self) -> None:
        """The check and create steps alone (``minicontainer update`` and tests)."""
        for s in self.steps():
            if s.stage == "create":
                self.execute(s)

    def apply(self, resources: Resources | None = None) -> None:
        """Write every limit (on the cgroup made by create())."""
        if resources is not None:
            self.resources = resources
        for s in self.plan():
            if s.stage == "limit":
                self.execute(s)

    def update(self, resources: Resources) -> list[CgroupWrite]:
        """``minicontainer update``: change the limits of the live cgroup from
        ``self.resources`` (what the container was made with) to ``resources``.

        The limit steps of a plan for the new values, less those the old plan
        already wrote with the same value, in the order :meth:`update_order`
        gives. Each file's content is read before it is written; if the kernel
        refuses a write, the files written before it get their old content
        back and the refusal is raised, explained. Returns the steps written.
        """
        before = {(s.file, s.value) for s in self.plan(self.resources) if s.stage == "limit"}
        writes = self.update_order([s for s in self.plan(resources)
                                    if s.stage == "limit" and (s.file, s.value) not in before])
        undo: list[tuple[str, str]] = []
        for s in writes:
            try:
                old = self.fs.read(s.file).strip() if self.fs.exists(s.file) else None
                self.execute(s)
            except SyscallError as e:
                for path, value in reversed(undo):
                    try:
                        self.fs.write(path, value)
                    except SyscallError:
                        pass  # best effort: the refusal below is what the user must read
                raise self._update_refused(s, e) from None
            if old is not None:
                undo.append((s.file, old))
        self.resources = resources
        return writes

    def update_order(self, writes: list[CgroupWrite]) -> list[CgroupWrite]:
        """Hook: the order in which :meth:`update` writes (v1 reorders memory)."""
        return writes

    def _update_refused(self, s: CgroupWrite, e: SyscallError) -> CgroupError:
        name = s.file.rsplit("/", 1)[-1]
        hint = e.hint
        if e.errno == errno.EBUSY and name.startswith("memory."):
            used = self.stats().get("memory_current")
            now = f"it uses {units.format_size(used)}" if used is not None else "it uses more"
            hint = (f"{now} and the kernel could not reclaim enough to fit (anonymous memory cannot go "
                    f"anywhere without swap); choose a limit above its usage (see minicontainer stats)")
        return CgroupError(f"{s.flag or name}: the kernel refused {name} = {s.value}: {os.strerror(e.errno)}; "
                           "nothing was changed", hint)

    def add_process(self, pid: int) -> None:
        """Move ``pid`` (and its threads) into the container's cgroup(s)."""
        for s in self.plan():
            if s.stage == "join":
                self.execute(s, pid=pid)

    def _run(self, s: CgroupWrite, pid: int | None = None) -> None:
        fs = self.fs
        if s.action == "create":
            try:
                fs.mkdir(s.file)
            except FileExistsError:
                pass
            except FileNotFoundError:
                raise _Vanished(lambda: self._vanished_error(s.file.rsplit("/", 1)[0])) from None
            except OSError as e:
                raise SyscallError("creating the cgroup", e.errno or errno.EIO, s.file,
                                   _mkdir_hint(e.errno)) from None
            return
        if s.action == "attach-device-filter":
            fs.attach_device_filter(s.file, s.program)
            return
        if s.action == "move-out":
            for p in read_pids(fs, s.source):
                try:
                    fs.write(s.file, str(p))
                except SyscallError as e:
                    if e.errno == errno.ENOENT and s.stage == "create":
                        raise _Vanished(lambda err=e: err) from None
                    if e.errno != errno.ESRCH:  # gone meanwhile: nothing to move
                        raise
            return
        value = str(pid) if s.action == "join" else s.value
        if s.source:
            try:
                if fs.read(s.file).strip():
                    return  # already set (e.g. a shared parent another container set up)
            except SyscallError:
                pass
            try:
                value = fs.read(s.source).strip()
            except SyscallError as e:
                if e.errno == errno.ENOENT and s.stage == "create":
                    raise _Vanished(lambda: self._vanished_error(s.source.rsplit("/", 1)[0])) from None
                raise
        if s.optional and not fs.exists(s.file):
            return
        try:
            fs.write(s.file, value)
        except SyscallError as e:
            if e.errno == errno.ENOENT and s.stage == "create":
                # Most likely a shared parent we just made (or wrote into) was
                # removed by another container's cleanup (and perhaps made
                # again since by a third); retried by execute().
                raise _Vanished(lambda err=e: err if fs.exists(s.file) else self._missing_or_vanished(s)) from None
            if e.errno == errno.ENOENT and not fs.exists(s.file):
                raise self._missing_file_error(s) from None
            raise

    def _missing_or_vanished(self, s: CgroupWrite) -> CgroupError:
        """What an ENOENT that stayed through every retry means."""
        parent = s.file.rsplit("/", 1)[0]
        if self.fs.is_dir(parent):
            return self._missing_file_error(s)
        return self._vanished_error(parent)

    def _vanished_error(self, path: str) -> CgroupError:
        return CgroupError(f"could not create {self.path}: {path} kept disappearing",
                           "another minicontainer may be cleaning up at the same time; retry")

    def _missing_file_error(self, s: CgroupWrite) -> CgroupError:
        name = s.file.rsplit("/", 1)[-1]
        controller = name.split(".", 1)[0]
        what = f"{s.flag} needs" if s.flag else "minicontainer needs"
        return CgroupError(f"{what} {name}, which this host does not offer (the {controller} controller)",
                           self.missing_hint(name, controller))

    def missing_hint(self, name: str, controller: str) -> str:
        return f"enable the {controller} controller on this host"

    # -- state -----------------------------------------------------------------
    def procs(self) -> list[int]:
        """Every pid in the container's cgroup(s) and their sub-cgroups."""
        pids: set[int] = set()
        for leaf in self.leaves():
            if not self.fs.is_dir(leaf):
                continue
            for d in walk_bottom_up(self.fs, leaf):
                pids.update(read_pids(self.fs, f"{d}/cgroup.procs"))
        return sorted(pids)

    @abstractmethod
    def is_frozen(self) -> bool: ...

    @abstractmethod
    def freeze(self) -> None:
        """Stop every process (``pause``); returns once the kernel says frozen."""

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def stats(self) -> dict:
        """Keys: memory_current, memory_limit, memory_peak, memory_inactive_file
        (bytes), cpus (the CPU limit, e.g. 0.5), cpu_usage_usec,
        cpu_throttled_usec, cpu_nr_throttled, pids_current, pids_limit,
        io_read_bytes, io_write_bytes. None where the host has no such counter;
        limits are None when unlimited."""

    @abstractmethod
    def _oom_kills(self) -> int: ...

    @abstractmethod
    def _pids_max_hits(self) -> int: ...

    def oom_killed(self) -> bool:
        """Did the OOM killer kill a process of this cgroup? Read before destroy()."""
        return self._oom_kills() > 0

    def limit_events(self) -> dict[str, int]:
        """How often a limit acted so far: ``oom_kills`` (processes the OOM
        killer took) and ``pids_max_hits`` (forks refused at pids.max)."""
        return {"oom_kills": self._oom_kills(), "pids_max_hits": self._pids_max_hits()}

    def exit_report(self) -> str | None:
        """A line explaining a limit-caused death, or None. Read before destroy()."""
        st = self.stats()
        return format_exit_report(
            oom_kills=self._oom_kills(),
            memory_limit=st.get("memory_limit"),
            memory_peak=st.get("memory_peak"),
            pids_max_hits=self._pids_max_hits(),
            pids_limit=st.get("pids_limit"),
        )

    # -- the end -----------------------------------------------------------------
    @abstractmethod
    def _kill_everything_once(self) -> None:
        """Send SIGKILL to every process in the subtree (cgroup.kill or freeze+kill+thaw)."""

    def kill_all(self) -> None:
        """Kill every process in the cgroup and its sub-cgroups, and wait until
        none is left. Bounded by ``self.timeout``: raises CgroupError naming
        the survivors instead of looping forever (reliability case 33)."""
        deadline = self.fs.monotonic() + self.timeout
        delay = 0.001
        while True:
            pids = self.procs()
            if not pids:
                return
            self._kill_everything_once()
            self.fs.sleep(delay)
            delay = min(delay * 2, 0.05)
            if self.fs.monotonic() > deadline:
                pids = self.procs()
                if not pids:
                    return
                raise CgroupError(
                    f"processes {', '.join(map(str, pids))} in {self.path} survived SIGKILL for {self.timeout:g}s",
                    "a process in uninterruptible sleep (state D in ps) dies when its I/O ends; "
                    "retry the cleanup later",
                )

    def kill(self) -> None:
        """SIGKILL every process in the cgroup and its sub-cgroups once, without
        waiting (``rm -f``; the container's runtime cleans up after it)."""
        if self.exists():
            self._kill_everything_once()

    def _signal_all(self, pids: list[int]) -> None:
        for p in pids:
            self.fs.kill(p, signal.SIGKILL)

    def _wait_empty(self, path: str, deadline: float) -> None:
        """Hook: v2 waits for ``populated 0`` in cgroup.events before rmdir."""

    def destroy(self) -> None:
        """Kill what is left and remove the cgroup(s), sub-cgroups first.

        Idempotent: a cgroup already gone is fine. Removes the shared
        ``minicontainer`` directory too when no other container uses it.
        """
        if not self.exists():
            self._remove_shared_parent()
            return
        self.kill_all()
        deadline = self.fs.monotonic() + self.timeout
        for leaf in self.leaves():
            if not self.fs.is_dir(leaf):
                continue
            for d in walk_bottom_up(self.fs, leaf):
                self._rmdir_until(d, deadline)
        self._remove_shared_parent()

    def _rmdir_until(self, path: str, deadline: float) -> None:
        self._wait_empty(path, deadline)
        delay = 0.001
        while True:
            try:
                self.fs.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                # EBUSY: the kernel has not finished tearing down the last
                # task yet (cgroup v2 docs, "populated"), or a process slipped
                # in: kill again and retry, until the deadline.
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or self.fs.monotonic() > deadline:
                    raise SyscallError("removing the cgroup", e.errno or errno.EIO, path,
                                       "processes may still be in it; see cgroup.procs") from None
                if self.procs():
                    self._kill_everything_once()
                self.fs.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _remove_shared_parent(self) -> None:
        if self.resources.cgroup_parent is not None or self.resources.cgroup_path:
            return  # the user's (the engine's) parent is theirs to keep
        for leaf in self.leaves():
            parent = leaf.rsplit("/", 1)[0]
            try:
                self.fs.rmdir(parent)
            except OSError:
                pass  # still used by another container (EBUSY), or already gone

    def _refuse_or_clear_existing(self) -> None:
        if not self.exists():
            return
        pids = self.procs()
        if pids:
            raise CgroupError(
                f"the cgroup {self.path} already holds processes ({', '.join(map(str, pids[:10]))})",
                "a container with this id may still be running; stop it first, or pick another name",
            )
        if self.is_frozen():
            raise CgroupError(
                f"the cgroup {self.path} exists and is frozen",
                "thaw it (minicontainer unpause) or remove it before reusing this id",
            )
        # Empty and not frozen: left over by a crash. Its old limits must not
        # leak into this run, so remove it and start fresh.
        deadline = self.fs.monotonic() + self.timeout
        for leaf in self.leaves():
            if self.fs.is_dir(leaf):
                for d in walk_bottom_up(self.fs, leaf):
                    self._rmdir_until(d, deadline)


class _Vanished(Exception):
    """An ENOENT in the create stage, retried by execute(); ``error()`` is
    what to report if it stays."""

    def __init__(self, error):
        super().__init__()
        self.error = error


def _mkdir_hint(err: int | None) -> str | None:
    if err in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the cgroup filesystem is read-only or not ours (inside a container? use --privileged)"
    if err == errno.ENOSPC:
        return "cgroup.max.descendants or cgroup.max.depth of a parent is reached"
    return None


def wait_until(fs: CgroupFs, check, timeout: float) -> bool:
    """Poll ``check()`` with a short backoff until it is true or ``timeout`` passes."""
    deadline = fs.monotonic() + timeout
    delay = 0.001
    while True:
        if check():
            return True
        if fs.monotonic() > deadline:
            return False
        fs.sleep(delay)
        delay = min(delay * 2, 0.05)
