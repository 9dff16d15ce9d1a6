"""The monitor: the process that owns a detached container (conmon's job).

``run -d`` and ``create`` return at once, but a container needs a parent:
something must reap its PID 1, write its output to the log, record how it
ended and clean up its cgroup (and, with ``--rm``, its layer and state).
That is the monitor, our own code::

    minicontainer run -d ──fork──▶ child ──setsid, fork──▶ monitor ──fork──▶ PID 1
          ▲  waits for one report     exits at once          (the runtime of the
          └──── "ok <id>" or the error ─────────────────────   plan, as in `run`)

The double fork leaves the monitor in a session of its own, with no
controlling terminal, adopted by init (or the nearest subreaper): closing the
caller's terminal does not touch it. It marks itself a child subreaper
(PR_SET_CHILD_SUBREAPER, prctl(2)), so processes orphaned inside the
container are reparented to it rather than to the host's init. It never
opens the container's files.

The caller learns the outcome over a pipe: the container's id once it runs
(or, for ``create``, once it is set up), or the error that stopped it, which
the caller raises as its own, so a refusal is the same one line as with a
foreground run. Until then the monitor keeps the caller's stderr (for
--explain and warnings); after, its stdio is /dev/null.
"""

from __future__ import annotations

import os

from minicontainer.errors import MiniError

_OK = "ok"
_ERR = "error"


class Report:
    """The monitor's end of the pipe to the command that started it."""

    def __init__(self, fd: int):
        self.fd = fd
        self.done = False

    def _send(self, *fields: str) -> None:
        if self.done:
            return
        self.done = True
        try:
            os.write(self.fd, "\0".join(fields).encode(errors="replace"))
        except OSError:
            pass  # the caller is gone: nobody to tell
        os.close(self.fd)

    def ok(self, container_id: str) -> None:
        self._send(_OK, container_id)
        self.quiet()  # the caller has its answer: nothing of ours may hold its terminal or pipes

    def fail(self, e: BaseException) -> None:
        if isinstance(e, MiniError):
            self._send(_ERR, str(e.exit_code), e.message, e.hint or "")
        else:
            self._send(_ERR, "125", f"internal error in the monitor: {type(e).__name__}: {e}", "run with --debug")

    def quiet(self) -> None:
        """From now on nothing goes to the caller's terminal."""
        _to_devnull(2)


def spawn(work) -> str:
    """Start a monitor that runs ``work(report)``; return the id it reports."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                _monitor(work, Report(w))  # never returns
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(child, 0)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    fields = b"".join(chunks).decode(errors="replace").split("\0")
    if fields[0] == _OK and len(fields) == 2:
        return fields[1]
    if fields[0] == _ERR and len(fields) == 4:
        raise MiniError(fields[2], fields[3] or None, exit_code=int(fields[1]) if fields[1].isdigit() else 125)
    raise MiniError("the container's monitor exited before it reported", "run again with --explain, or without -d")


def _monitor(work, report: Report) -> None:
    from minicontainer.syscalls.linux import Linux

    try:
        _to_devnull(0)
        _to_devnull(1)
        # Orphans inside the container (with --pid host, or a PID 1 that
        # exits first) are reparented to us and reaped, not left to init.
        Linux().set_child_subreaper()
        work(report)
    except BaseException as e:  # noqa: BLE001 - everything must reach the caller
        report.fail(e)
    finally:
        if not report.done:
            report.fail(MiniError("the container ended before it started"))
        os._exit(0)


def _to_devnull(fd: int) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


class _NoReport:
    """A restart has nobody waiting for its outcome."""

    done = True

    def ok(self, container_id: str) -> None:
        pass

    def fail(self, e: BaseException) -> None:
        pass

    def quiet(self) -> None:
        pass


# Docker's backoff between restarts: 100 ms, doubling, at most a minute.
RESTART_DELAY_FIRST = 0.1
RESTART_DELAY_MAX = 60.0


def restart(store, state) -> None:
    """The watcher, after PID 1 exited and its policy says so: wait, then
    become the full runtime again (execve(2)) and start the container in the
    same layer with fresh namespaces. Never returns."""
    import sys
    import time

    state.status = "restarting"
    state.restart_count += 1
    store.save(state)
    time.sleep(min(RESTART_DELAY_MAX, RESTART_DELAY_FIRST * 2 ** (state.restart_count - 1)))
    os.execv(sys.executable, [sys.executable, "-m", "minicontainer.container.monitor", str(store.root), state.id])


def _resume(root: str, container_id: str) -> None:
    from pathlib import Path

    from minicontainer.container.config import load_spec
    from minicontainer.container.runtime import Runner
    from minicontainer.container.state import StateStore

    store = StateStore(Path(root))
    state = store._load(container_id)
    if state is None or state.status != "restarting":
        return  # removed meanwhile
    if store.stop_requested(state):  # `stop` while we waited
        state.status = "exited"
        store.save(state)
        return
    runner = Runner(load_spec(store.containers / state.id), existing=state)
    runner.detached = True
    try:
        runner._execute(runner._checks(), report=_NoReport())
    except MiniError as e:
        state = store._load(container_id)
        if state is not None:
            state.status, state.exit_reason = "exited", f"could not restart: {e}"
            store.save(state)


if __name__ == "__main__":
    import sys

    try:
        _resume(sys.argv[1], sys.argv[2])
    finally:
        os._exit(0)
