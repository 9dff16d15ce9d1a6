"""What each ``minicontainer-runc`` command does (runtime-spec runtime.md).

runc's model, which engines rely on, differs from ``minicontainer run -d``
in one point: who is the container's parent. ``create`` sets the container
up and leaves its process waiting (the lifecycle's start fifo), writes
``--pid-file``, and then *exits*: the process is reparented to the engine's
subreaper (conmon, containerd's shim), which reaps it and reads its exit
status. So there is no monitor here; the state says "created" or "running"
while the process lives (told apart from a reused pid by its start time),
"stopped" after, and ``delete`` removes the cgroup and the state.

The state lives under ``--root`` (our MINICONTAINER_ROOT), so ``minicontainer
ps/inspect/exec`` see these containers too; the bundle's path and
annotations are kept beside state.json in ``oci.json``.
"""

from __future__ import annotations

import json
import os
import signal
import time

from minicontainer.errors import ContainerError, MiniError, UsageError
from minicontainer.records import replace  # not dataclasses': ~9 ms of every create (records.py)

OCI_FILE = "oci.json"  # bundle, annotations, ociVersion: what `state` reports besides our state.json
SPEC_VERSION = "1.2.0"


def _store():
    from minicontainer.container.state import StateStore

    return StateStore()


def _get(store, cid: str):
    try:
        return store.get(cid)
    except ContainerError:
        raise ContainerError(f"container {cid} does not exist", None) from None


def write_pid_file(path: str, pid: int) -> None:
    """runc's format (the number, no newline), written atomically: an engine
    polling the file never reads half of it."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def send_console(path: str, master_fd: int) -> None:
    """The --console-socket protocol: connect to the engine's unix socket and
    pass the pty master with SCM_RIGHTS (unix(7)); the message names it."""
    import socket  # only here: `state`, `kill`, `delete` do not pay for it (~2 ms, -X importtime)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as e:
            raise ContainerError(f"cannot connect to the console socket {path}: {os.strerror(e.errno or 5)}",
                                 "the engine passes a listening unix socket with --console-socket") from None
        socket.send_fds(sock, [b"/dev/ptmx"], [master_fd])


def _save_oci(store, state, bundle) -> None:
    data = {"bundle": bundle.bundle_dir, "annotations": bundle.annotations, "ociVersion": bundle.version}
    with open(store.containers / state.id / OCI_FILE, "w") as f:
        json.dump(data, f)


def _load_oci(store, state) -> dict:
    try:
        return json.loads((store.containers / state.id / OCI_FILE).read_text())
    except (OSError, ValueError):
        return {}


# -- create, start, run -------------------------------------------------------

OOM_FILE = "oom"  # conmon's convention: podman and CRI-O read BUNDLE/oom once the container exited


def watch(store, st, bundle_dir: str, memory_limit: bool) -> None:
    """A small process (forked from ``create``, so nothing is imported) that
    waits for the container's PID 1 to exit, for two things the engine
    alone would otherwise know:

    - its exit code, read from the zombie (/proc/PID/stat field 52) in the
      moment between its exit and the engine reaping it, for ``minicontainer
      ps``'s "Exited (code)": the pidfd wakes us when it exits, the engine on
      SIGCHLD, so we are usually first; when not, ps says "Exited (?)";
    - with a memory limit, the first OOM kill: an empty BUNDLE/oom, which
      podman reads for State.OOMKilled. conmon writes that file itself
      (conmon 2.1.6, src/cgroup.c write_oom_files), but relative to its
      working directory, which podman 4.3 leaves at its caller's, not the
      bundle: with runc too, podman reports false on this machine
      (measured). The file is written when the kernel reports the kill (an
      eventfd on v1, memory.events on v2), before PID 1 exits and podman looks.
    """
    if os.fork() != 0:
        return
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # no engine pipe stays open because of us
        os.closerange(3, 1 << 16)
        os.setsid()
        from minicontainer.procfs import zombie_exit_code
        from minicontainer.syscalls.linux import Linux

        sc = Linux()
        events = v1 = None
        m = _manager(st)
        try:
            if memory_limit and os.path.isfile(os.path.join(bundle_dir, "config.json")):
                if m.version == "v1":
                    events, v1 = f"{m.mounts['memory']}/{m.relative_path}/memory.oom_control", True
                else:
                    events, v1 = f"{m.leaves()[0]}/memory.events", False
        except (KeyError, IndexError, MiniError):
            events = None  # no memory controller to watch: the exit code still is
        while True:
            exited = not sc.wait_exit_or_memory_event(st.pid, events, v1=bool(v1))
            code = zombie_exit_code(st.pid) if exited else None
            if events is not None and m.exists() and m.oom_killed():
                path = os.path.join(bundle_dir, OOM_FILE)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
                events = None  # once; now only the exit
            if exited:
                _record_exit(store, st, code)
                break
    except BaseException:  # noqa: BLE001 - a report only; the watcher must never reach the caller's code
        pass
    os._exit(0)


def _record_exit(store, st, code: int | None) -> None:
    cur = store._load(st.id)
    if cur is None or cur.pid != st.pid or cur.status not in ("created", "running"):
        return  # deleted, or stopped by someone who knew better
    cur.status, cur.finished = "exited", time.time()
    cur.exit_code = code
    cur.exit_reason = "" if code is not None else "the engine reaped it; its exit code is the engine's to tell"
    store.save(cur)


def _prepare(cid: str, bundle_dir: str, preserve_fds: int, log):
    """The checks and the bundle, before anything exists: (store, bundle, spec, image)."""
    from minicontainer.container.rootfs import ResolvedImage
    from minicontainer.oci.config import load_bundle

    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise UsageError(f"--preserve-fds {preserve_fds}: fd {fd} is not open",
                             "the engine passes fds 3..3+N-1 open") from None
    store = _store()
    if (store.names / cid).is_symlink():
        raise ContainerError(f"container with id exists: {cid}", None)
    bundle = load_bundle(bundle_dir, cid)
    bundle.bundle_dir = os.path.abspath(bundle_dir)
    if log.debugging:  # what the engine asked for, on one line
        with open(os.path.join(bundle_dir, "config.json")) as f:
            log.debug(f"config.json of {cid}: " + json.dumps(json.load(f), separators=(",", ":")))
    for note in bundle.notes:
        log.debug(note)
    image = ResolvedImage(name=bundle.root, image_id="bundle:" + bundle.root, rootfs=bundle.root, in_place=True)
    return store, bundle, replace(bundle.spec, preserve_fds=preserve_fds), image


def create(cid: str, bundle_dir: str, *, pid_file: str | None, console_socket: str | None,
           preserve_fds: int, log) -> None:
    """Set the container up and leave it waiting for ``start``; never returns
    on success (the process exits once the container is handed to our caller)."""
    from minicontainer.container.runtime import Runner

    store, bundle, spec, image = _prepare(cid, bundle_dir, preserve_fds, log)
    if spec.tty and not console_socket:
        raise UsageError("config.json asks for a terminal (process.terminal) but no --console-socket was given",
                         "pass --console-socket PATH, or set process.terminal to false")

    def handoff(container, state):
        """PID 1 is set up and waits on the start fifo: hand it to our caller."""
        state.runtime_pid, state.runtime_start = state.pid, state.pid_start  # no monitor: PID 1 is its own runtime
        state.detached = True
        _save_oci(store, state, bundle)
        store.save(state)
        if console_socket:
            chan = container.interpreter.chan
            chan.receive_console()
            send_console(console_socket, chan.master_fd)
            os.close(chan.master_fd)
        if pid_file:
            write_pid_file(pid_file, state.pid)
        watch(store, state, bundle.bundle_dir, memory_limit=bool(spec.resources is not None and spec.resources.memory))
        log.debug(f"created {cid}: pid {state.pid}")
        log.close()
        os._exit(0)  # no cleanup: the container lives on, the engine's subreaper adopts it

    # --debug: the plan's steps into the log file (never onto stderr: in the
    # child, after its stdio is attached, that is the container's own)
    runner = Runner(spec, wait_for_start=True, image=image, handoff=handoff, explain=log.debugging and log.to_file,
                    out=StepLog(log))
    runner.detached = True  # PID 1 outlives this process (RearmParentDeath(outlive=True))
    try:
        runner.run()
        raise ContainerError(f"container {cid} ended before it was created", "run with --debug and read the log")
    except BaseException:
        # runc's rule: a failed create leaves nothing (the runner keeps the
        # state of a container that got as far as a process, as `run` does)
        try:
            delete(cid, force=True)
        except (MiniError, OSError):
            pass
        raise


class StepLog:
    """--debug: the plan's steps, as --explain prints them, go to the log
    as debug lines (a file object for Runner's ``out``; no fileno, so each
    text comes through write)."""

    def __init__(self, log):
        self.log = log

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.log.debug(line)

    def flush(self) -> None:
        pass


def run_hooks(spec, kind: str, status: str, pid: int, log) -> None:
    """poststart, poststop: after `create` has exited, this process runs them
    (in the runtime's namespaces), as a one-step plan through the same
    interpreter. A failure is a warning (runtime-spec config.md)."""
    hooks = spec.hooks_of(kind)
    if not hooks:
        return
    from minicontainer.container import steps as S
    from minicontainer.container.interpreter import Interpreter
    from minicontainer.syscalls.linux import Linux

    step = S.RunHooks(phase=S.PARENT, kind=kind, hooks=hooks, state=spec.hook_state, status=status, fatal=False)
    out = StepLog(log)
    interp = Interpreter(Linux(), warn=log.warning, pid=pid,
                         explain=(lambda i, st: out.write("\n".join(S.render_step(i, st)))) if log.debugging and log.to_file
                         else None)
    interp.phases = (S.PARENT,)
    interp.run([step])


def _spec_with_hooks(store, st):
    """The container's spec if it has hooks (a look at the text first: most
    have none, and decoding a spec imports much of the library)."""
    from minicontainer.container.config import CONFIG_FILE

    try:
        if '"minicontainer.container.spec:Hook"' not in (store.containers / st.id / CONFIG_FILE).read_text():
            return None
        from minicontainer.container.config import load_spec

        return load_spec(store.containers / st.id)
    except (OSError, ContainerError):
        return None


def start(cid: str, log=None) -> None:
    from minicontainer.container import control

    store = _store()
    st = _get(store, cid)
    status = oci_status(st)
    if status != "created":
        raise ContainerError(f"cannot start a container in the {status} state", None)
    # "running" is saved before PID 1 is released: a command that exits at
    # once is recorded as exited by create's watcher (watch), and a save
    # after the release would overwrite that with "running" (a race seen on CI).
    st = store._load(st.id) or st  # as written, not as read for the status
    st.status, st.started = "running", time.time()
    store.save(st)
    try:
        control.release_created(store, st)
    except BaseException:
        st.status, st.started = "created", 0.0
        store.save(st)
        raise
    spec = _spec_with_hooks(store, st) if log is not None else None
    if spec is not None:
        run_hooks(spec, "poststart", "running", st.pid, log)


def run(cid: str, bundle_dir: str, *, pid_file, console_socket, preserve_fds, detach: bool, log) -> int:
    """``run``: create and start; without --detach, wait and return the exit code."""
    if not detach:
        return _run_foreground(cid, bundle_dir, pid_file=pid_file, console_socket=console_socket,
                               preserve_fds=preserve_fds, log=log)
    child = os.fork()
    if child == 0:
        try:
            create(cid, bundle_dir, pid_file=pid_file, console_socket=console_socket,
                   preserve_fds=preserve_fds, log=log)
        except MiniError as e:
            log.error(e)
            os._exit(1)
        except BaseException:  # noqa: BLE001 - a forked child must never return into the caller's code
            os._exit(1)
        os._exit(1)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return 1
    start(cid, log)
    return 0


def _run_foreground(cid: str, bundle_dir: str, *, pid_file, console_socket, preserve_fds, log) -> int:
    """``runc run ID`` without --detach: this process is the container's
    runtime, as ``minicontainer run`` is (a terminal is ours, with
    process.terminal), and its exit code is the command's. The container
    stays, stopped, until ``delete``."""
    from minicontainer.container.runtime import Runner

    if pid_file or console_socket:
        raise UsageError("run --pid-file and --console-socket need --detach here", "use run --detach, or create")
    store, bundle, spec, image = _prepare(cid, bundle_dir, preserve_fds, log)
    try:
        return Runner(spec, image=image).run()
    finally:
        try:
            _save_oci(store, store.get(cid), bundle)
        except (ContainerError, OSError):
            pass  # it never got a state (refused before)


# -- state, list ----------------------------------------------------------------


def oci_status(st, *, paused: bool = True) -> str:
    """creating | created | running | paused | stopped (runtime-spec
    runtime.md "State"). "creating": the state exists (the name is claimed)
    but ``create`` has not handed PID 1 over yet; its process is alive.
    ``paused=False``: "running" for a paused one too, for a caller to whom
    they are the same (kill): telling them apart reads the freezer, which
    imports the cgroups package (~4 ms of the verb, issue 15)."""
    from minicontainer.container.state import pid_alive

    if st.status == "created" and st.pid == 0 and pid_alive(st.runtime_pid, st.runtime_start):
        return "creating"
    if st.status in ("created", "running", "restarting") and pid_alive(st.pid, st.pid_start):
        if st.status == "created":
            return "created"
        return "paused" if paused and _frozen(st) else "running"
    return "stopped"


def _frozen(st) -> bool:
    try:
        from minicontainer.cgroups import manager_of

        m = manager_of(st.id, st.cgroup or None)
        return m.exists() and m.is_frozen()
    except (MiniError, OSError):
        return False


def state_of(store, st) -> dict:
    oci = _load_oci(store, st)
    status = oci_status(st)
    out = {"ociVersion": oci.get("ociVersion") or SPEC_VERSION, "id": st.name, "status": status,
           "bundle": oci.get("bundle", ""), "annotations": oci.get("annotations") or {}}
    if status != "stopped":
        out["pid"] = st.pid
    else:
        out["pid"] = 0
    # runc's extra keys, which some engines read
    out["rootfs"] = st.rootfs
    out["created"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.created)) + "Z"
    return out


def state(cid: str) -> str:
    store = _store()
    return json.dumps(state_of(store, _get(store, cid)), indent=2)


def note_oom(store, st) -> None:
    """A stopped container whose cgroup saw an OOM kill gets an empty
    BUNDLE/oom file, which podman reads for State.OOMKilled. conmon writes
    that file itself, but into its working directory (conmon 2.1.6, src/
    cgroup.c write_oom_files), which podman 4.3 leaves at its caller's: with
    runc too, podman reports false here (measured). The cgroup is read
    before `delete` removes it; podman asks `state` first."""
    bundle = _load_oci(store, st).get("bundle")
    if not bundle or not os.path.isfile(os.path.join(bundle, "config.json")):
        return
    path = os.path.join(bundle, OOM_FILE)
    if os.path.exists(path):
        return
    try:
        m = _manager(st)
        if not (m.exists() and m.oom_killed()):
            return
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    except (MiniError, OSError):
        pass  # a report, never a reason for `state` to fail


def list_containers(fmt: str, quiet: bool) -> str:
    store = _store()
    rows = [state_of(store, st) for st in reversed(store.list())]
    if quiet:
        return "\n".join(r["id"] for r in rows)
    if fmt == "json":
        return json.dumps(rows)
    lines = [f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED"]
    lines += [f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} {r['created']}" for r in rows]
    return "\n".join(lines)


# -- kill, delete -----------------------------------------------------------------


def _manager(st):
    from minicontainer.cgroups import manager_of

    return manager_of(st.id, st.cgroup or None)


def kill(cid: str, sig_text: str, all_processes: bool) -> None:
    from minicontainer.container import control

    store = _store()
    st = _get(store, cid)
    sig = control.parse_signal(sig_text)
    status = oci_status(st, paused=False)  # a paused container is signalled as a running one
    if status == "stopped":
        raise ContainerError("container not running", None)
    if status == "creating":  # no PID 1 yet: nothing to signal
        raise ContainerError(f"container {cid} is still being created", "wait for create to return, then kill it")
    if all_processes:
        for pid in _manager(st).procs():
            try:
                os.kill(pid, sig)  # pids from the container's own cgroup, read just now
            except ProcessLookupError:
                pass
        return
    control.mark_stopped(store, st)
    if not control.send_signal(st, sig):
        raise ContainerError("container not running", None)


def delete(cid: str, force: bool, log=None) -> None:
    from minicontainer.container import control
    from minicontainer.container.rootfs import remove_layer_dir

    store = _store()
    try:
        st = store.get(cid)
    except ContainerError:
        if force:
            return  # runc: --force of a container that is gone is not an error
        raise ContainerError(f"container {cid} does not exist", None) from None
    status = oci_status(st)
    if status in ("creating", "running", "paused") and not force:
        raise ContainerError(f"cannot delete container {cid} that is not stopped: {status}",
                             "stop it first, or use delete --force")
    if status == "creating":
        _stop_create(st)  # its own unwinding removes what it made; what is left goes below
    # A created container is deleted without --force: it never ran (runc does the same).
    if status != "stopped":
        control.send_signal(st, signal.SIGKILL)
    control.kill_through_cgroup(st)  # what is left in its cgroup, then the cgroup itself
    if st.layer_dir:
        merged = os.path.join(st.layer_dir, "merged")
        if os.path.ismount(merged):
            # The root is mounted only in the container's own mount namespace;
            # if it shows here, removing the directory would delete the bundle.
            raise ContainerError(f"{merged} is mounted on the host; not removing it",
                                 f"unmount it (umount -R {merged}) and delete again")
        remove_layer_dir(st.layer_dir)
    spec = _spec_with_hooks(store, st) if log is not None else None
    store.remove(st)
    if spec is not None:
        run_hooks(spec, "poststop", "stopped", st.pid, log)


def _stop_create(st, timeout: float = 10.0) -> None:
    """delete --force of a container still being created: SIGTERM to the
    ``create`` process, which unwinds through its cleanup (runtime.py
    _execute), then SIGKILL if it has not ended within ``timeout``."""
    from minicontainer.syscalls.linux import Linux

    Linux().stop_process(st.runtime_pid, st.runtime_start, grace=timeout, then_kill=True)


# -- pause, ps, events, update, exec -------------------------------------------------


def pause(cid: str, freeze: bool) -> None:
    st = _get(_store(), cid)
    status = oci_status(st)
    if status not in ("running", "paused"):
        raise ContainerError(f"container {cid} is not running: {status}", None)
    m = _manager(st)
    if freeze:
        m.freeze()
    else:
        m.thaw()


def processes(cid: str) -> list[int]:
    st = _get(_store(), cid)
    if oci_status(st) in ("stopped", "creating"):
        return []
    return _manager(st).procs()


def ps(cid: str, fmt: str, ps_args: tuple[str, ...]) -> str:
    pids = processes(cid)
    if fmt == "json":
        return json.dumps(pids)
    from minicontainer.commands.top import ps_filtered

    return "\n".join(ps_filtered(ps_args or ("-ef",), pids))


def stats_event(cid: str, st=None, manager=None) -> str:
    """``events --stats``: one snapshot, in the shape of runc's stats event."""
    st = st if st is not None else _get(_store(), cid)
    s = (manager or _manager(st)).stats()
    data = {
        "cpu": {"usage": {"total": (s.get("cpu_usage_usec") or 0) * 1000},
                "throttling": {"throttledTime": (s.get("cpu_throttled_usec") or 0) * 1000,
                               "throttledPeriods": s.get("cpu_nr_throttled") or 0}},
        "memory": {"usage": {"usage": s.get("memory_current") or 0, "limit": s.get("memory_limit") or 0,
                             "max": s.get("memory_peak") or 0}},
        "pids": {"current": s.get("pids_current") or 0, "limit": s.get("pids_limit") or 0},
        "blkio": {"ioServiceBytesRecursive": [{"op": "Read", "value": s.get("io_read_bytes") or 0},
                                              {"op": "Write", "value": s.get("io_write_bytes") or 0}]},
    }
    return json.dumps({"type": "stats", "id": cid, "data": data})


def parse_interval(text: str) -> float:
    """runc's --interval is a Go duration: 5s, 100ms, 1m30s, 1.5h."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid --interval {text!r}", "give a duration such as 5s, 500ms or 1m")
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    seconds = sum(float(n) * scale[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"invalid --interval {text!r}: it must be more than zero", "e.g. 5s")
    return seconds


def events(cid: str, interval: float, out=None) -> None:
    """``events ID`` (no --stats): runc's stream, one JSON object a line: a
    stats event every ``interval``, an ``oom`` event when the OOM killer
    takes a process of the container; it ends when the container stops."""
    import sys

    out = out or sys.stdout
    store = _store()
    st = _get(store, cid)
    m = _manager(st)
    status = oci_status(st)
    if status in ("stopped", "creating"):
        raise ContainerError(f"container {cid} is not running: {status}", None)
    ooms = m.limit_events()["oom_kills"] if m.exists() else 0
    next_stats = time.monotonic()
    while True:
        st = store._load(st.id) or st
        stopped = oci_status(st) == "stopped"  # (an OOM kill of PID 1 itself is still reported, below)
        try:
            now_ooms = m.limit_events()["oom_kills"] if m.exists() else ooms
            if now_ooms > ooms:
                ooms = now_ooms
                print(json.dumps({"type": "oom", "id": cid}), file=out, flush=True)
            if stopped or not m.exists():
                return
            if time.monotonic() >= next_stats:
                print(stats_event(cid, st, m), file=out, flush=True)
                next_stats = time.monotonic() + interval
        except (MiniError, OSError):
            return  # the cgroup went away between the check and the read: the container is gone
        time.sleep(min(interval, 0.2))


def update(cid: str, resources_file: str) -> None:
    """``update --resources F``: LinuxResources JSON (or - for stdin) onto the running cgroup."""
    import dataclasses

    from minicontainer.cgroups import manager_for
    from minicontainer.container.config import load_spec, save_spec
    from minicontainer.oci.config import _resources

    store = _store()
    st = _get(store, cid)
    if oci_status(st) == "creating":  # its runtime holds the spec it is applying: a change now would be lost
        raise ContainerError(f"container {cid} is still being created", "wait for create to return, then update it")
    from minicontainer.jsonfile import load_capped

    doc = load_capped("/dev/stdin" if resources_file == "-" else resources_file, 1 << 20,
                      f"the resources {resources_file}", "give a LinuxResources JSON file (- for stdin)",
                      "is this really a LinuxResources JSON?")
    given = _resources({"resources": doc}, [])
    state_dir = store.containers / st.id
    spec = load_spec(state_dir)
    # runc's rule: what the file sets changes, the rest stays as it was
    old = spec.resources if spec.resources is not None else given
    new = dataclasses.replace(old, **{f.name: getattr(given, f.name) for f in dataclasses.fields(given)
                                      if getattr(given, f.name) not in (None, ())})
    if oci_status(st) in ("created", "running", "paused"):
        manager_for(st.id, spec.resources).update(new)
    save_spec(state_dir, dataclasses.replace(spec, resources=new))


def exec_process(cid: str, *, process_file: str | None, argv: tuple[str, ...], env: tuple[str, ...],
                 cwd: str | None, user: str | None, tty: bool, detach: bool, pid_file: str | None,
                 console_socket: str | None) -> int:
    from minicontainer.container.enter import exec_in

    store = _store()
    st = _get(store, cid)
    if oci_status(st) != "running":
        raise ContainerError(f"cannot exec in a container that is {oci_status(st)}", None)
    environment = [tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env]
    if process_file:
        argv, environment, cwd, user, tty = _read_process(process_file, store, st)
    if not argv:
        raise UsageError("exec needs a command", "give it after the container id, or with --process")
    if tty and not console_socket:
        raise UsageError("--tty needs --console-socket", "the engine passes the socket the pty master goes to")

    def started(container):
        if console_socket and container.master_fd is not None:
            send_console(console_socket, container.master_fd)
            os.close(container.master_fd)
            container.master_fd = None
        if pid_file:
            write_pid_file(pid_file, container.pid)

    return exec_in(st.name, tuple(argv), env=environment, workdir=cwd, user=user, tty=tty, interactive=True,
                   detach=detach, started=started)


def _read_process(path: str, store, st):
    """An exec's process.json (the runtime-spec "process" object). The new
    process gets the container's own capabilities, seccomp filter and
    no_new_privs (enter.py); a process.json asking for less is refused."""
    from minicontainer.jsonfile import load_capped

    doc = load_capped(path, 1 << 20, f"the process file {path}", "give a runtime-spec process JSON",
                      "is this really a runtime-spec process JSON?")
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: the top level must be a JSON object", "see the runtime-spec, config.md process")
    caps = doc.get("capabilities") or {}
    if caps.get("ambient") and (doc.get("user") or {}).get("uid", 0) != 0:
        raise UsageError(f"{path}: ambient capabilities for a non-root user are not supported", "remove them")
    from minicontainer.container.config import load_spec
    from minicontainer.oci.config import _process
    from minicontainer.security.caps import normalize_cap

    security = load_spec(store.containers / st.id).security
    if security is not None:
        asked = {normalize_cap(c) for c in caps.get("bounding") or []}
        if "bounding" in caps and not set(security.cap_add) <= asked:
            raise UsageError(f"{path}: capabilities.bounding has fewer capabilities than the container's",
                             "an exec'd process gets the container's own set")
        if doc.get("noNewPrivileges") and not security.no_new_privs:
            raise UsageError(f"{path}: noNewPrivileges, which the container itself does not have, is not supported",
                             "set it in the container's config.json")
    notes: list[str] = []
    args, env, cwd, tty = _process(doc, notes)
    u = doc.get("user") or {}
    user = f"{u.get('uid', 0)}:{u.get('gid', 0)}"
    return tuple(args), env, cwd, user, tty
