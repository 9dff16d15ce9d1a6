"""The monitor once its container runs: a small process that copies output
to the log, waits for PID 1, and then finishes the run.

Setting a container up needs most of minicontainer (planning, security,
cgroups: about 20 MB of Python); watching it needs almost nothing. So once
PID 1 has exec'd, the monitor replaces itself with this module
(execve(2) keeps the process, so PID 1 stays its child and the pipes stay
open): a fresh interpreter that imports only what it needs here, and the
rest only when the container has ended (container/runtime.py ``finish``).

It also serves ``attach``: a unix socket in the state directory (mode 0600,
unix(7)) to which each client connects; every output chunk goes to the log
and to each client as a frame (one byte for the stream, four for the length,
then the bytes), and what a client sends is written to the container's
stdin (its pty with -t, a pipe with -i).

Its one argument is a JSON object: the state root and id, PID 1, the output
fds and their stream names, the stdin fd and the listening socket's fd, the
cgroup (id and parent) if the run owns one, and whether to remove the
container at the end (--rm).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import sys

ATTACH_SOCKET = "attach.sock"
STREAM_IDS = {"stdout": 1, "stderr": 2}

# Signals the monitor passes on to PID 1 (a shutdown, `kill` of the monitor).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def become_watcher(container, store, state, cgroup, *, remove: bool) -> None:
    """In the monitor, right after PID 1 exec'd: exec into this module. Never returns."""
    outputs = dict(container._outputs)
    if container.master_fd is not None:
        outputs[container.master_fd] = "stdout"
    for fd in outputs:
        os.set_inheritable(fd, True)
    listener = _listen(store.containers / state.id)
    if listener is not None:
        os.set_inheritable(listener.fileno(), True)
    stdin_fd = container.stdin_w if container.stdin_w is not None else container.master_fd
    if stdin_fd is not None:
        os.set_inheritable(stdin_fd, True)
    args = {
        "root": str(store.root),
        "id": state.id,
        "pid": container.pid,
        "outputs": {str(fd): stream for fd, stream in outputs.items()},
        "stdin": stdin_fd,
        "stdin_is_pipe": container.stdin_w is not None,
        "listener": None if listener is None else listener.fileno(),
        "log": str(container.log.path),
        "cgroup": None if cgroup is None else [state.id, state.cgroup or None],
        "remove": remove,
    }
    container.log.file.flush()
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "minicontainer.container.watch", json.dumps(args)])


def socket_path(state_dir) -> tuple[int, str]:
    """A short name for the socket in ``state_dir``: a unix socket's path may
    have at most 107 bytes (unix(7)), and a state root can be deeper than
    that; /proc/self/fd/N of an fd open on the directory names it as well.
    Returns (the fd, to close after use, and the path)."""
    fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}/{ATTACH_SOCKET}"


def _listen(state_dir) -> socket.socket | None:
    """The attach socket, or None if it cannot be made (the container runs on without attach)."""
    fd, path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)  # the socket is created 0600: only root may attach
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(4)
        return sock
    except OSError:
        sock.close()
        return None
    finally:
        os.close(fd)


def frame(stream: str, data: bytes) -> bytes:
    return struct.pack(">BI", STREAM_IDS[stream], len(data)) + data


def _copy(outputs: dict[int, str], log, listener: socket.socket | None, stdin_fd: int | None,
          stdin_is_pipe: bool) -> None:
    clients: list[socket.socket] = []  # every client gets the output
    readers: list[socket.socket] = []  # those whose input we still read
    while outputs:
        watched = list(outputs) + ([listener] if listener is not None else []) + readers
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        for r in ready:
            if r is listener:
                conn, _ = listener.accept()
                conn.setblocking(True)
                clients.append(conn)
                readers.append(conn)
                continue
            if isinstance(r, socket.socket):
                try:
                    data = r.recv(65536)
                except OSError:
                    data = b""
                if data:
                    if stdin_fd is not None:
                        try:
                            os.write(stdin_fd, data)
                        except OSError:
                            pass  # the container closed its stdin
                    continue
                # The client's input ended (it shut down its sending side): as
                # docker's attach, the container's stdin pipe ends too; a pty
                # stays (a terminal is not closed by one reader going away).
                readers.remove(r)
                if stdin_is_pipe and stdin_fd is not None:
                    os.close(stdin_fd)
                    stdin_fd = None
                continue
            try:
                data = os.read(r, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""  # EIO: every slave end of the pty is closed
            if data:
                log.write(outputs[r], data)
                for c in list(clients):
                    try:
                        c.sendall(frame(outputs[r], data))
                    except OSError:
                        clients.remove(c)
                        if c in readers:
                            readers.remove(c)
                        c.close()
            else:
                os.close(r)
                del outputs[r]
    for c in clients:
        c.close()  # the clients see the end of the stream


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
    listener = socket.socket(fileno=args["listener"]) if args.get("listener") is not None else None
    try:
        _copy({int(fd): stream for fd, stream in args["outputs"].items()}, log, listener, args.get("stdin"),
              args.get("stdin_is_pipe", False))
    finally:
        log.close()
        if listener is not None:
            listener.close()
    code = _reap(pid)
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)  # finish the cleanup first
    # Only now the rest of minicontainer: the container has ended.
    from minicontainer.container.runtime import finish_watched

    finish_watched(args, code)


if __name__ == "__main__":
    main(sys.argv)
    os._exit(0)
