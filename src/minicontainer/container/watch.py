"""The monitor once its container runs: a small process that copies output
to the log, waits for PID 1, and then finishes the run.

Setting a container up needs most of minicontainer (planning, security,
cgroups: about 20 MB of Python); watching it needs almost nothing. So once
PID 1 has exec'd, the monitor replaces itself with this module
(execve(2) keeps the process, so PID 1 stays its child and the pipes stay
open): a fresh interpreter that imports only what it needs here, and the
rest only when the container has ended (container/runtime.py ``finish``).

Its one argument is a JSON object: the state root and id, PID 1, the output
fds and their stream names, the cgroup (id and parent) if the run owns one,
and whether to remove the container at the end (--rm).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import sys

# Signals the monitor passes on to PID 1 (a shutdown, `kill` of the monitor).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def become_watcher(container, store, state, cgroup, *, remove: bool) -> None:
    """In the monitor, right after PID 1 exec'd: exec into this module. Never returns."""
    outputs = dict(container._outputs)
    if container.master_fd is not None:
        outputs[container.master_fd] = "stdout"
    for fd in outputs:
        os.set_inheritable(fd, True)
    args = {
        "root": str(store.root),
        "id": state.id,
        "pid": container.pid,
        "outputs": {str(fd): stream for fd, stream in outputs.items()},
        "log": str(container.log.path),
        "cgroup": None if cgroup is None else [state.id, state.cgroup or None],
        "remove": remove,
    }
    container.log.file.flush()
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "minicontainer.container.watch", json.dumps(args)])


def _copy(outputs: dict[int, str], log) -> None:
    while outputs:
        try:
            ready, _, _ = select.select(list(outputs), [], [])
        except InterruptedError:
            continue
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""  # EIO: every slave end of the pty is closed
            if data:
                log.write(outputs[fd], data)
            else:
                os.close(fd)
                del outputs[fd]


def _reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 125
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def main(argv: list[str]) -> None:
    from minicontainer.container.logs import LogWriter

    args = json.loads(argv[1])
    pid = args["pid"]

    def forward(sig, frame):
        # PID 1 is our child and not reaped yet, so its pid cannot be reused.
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    log = LogWriter(args["log"])
    try:
        _copy({int(fd): stream for fd, stream in args["outputs"].items()}, log)
    finally:
        log.close()
    code = _reap(pid)
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)  # finish the cleanup first
    # Only now the rest of minicontainer: the container has ended.
    from minicontainer.container.runtime import finish_watched

    finish_watched(args, code)


if __name__ == "__main__":
    main(sys.argv)
    os._exit(0)
