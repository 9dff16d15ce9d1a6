"""``minicontainer attach [--no-stdin] [--detach-keys KEYS] CONTAINER`` — as docker attach.

Connects to the monitor of a detached container over the unix socket in its
state directory (container/watch.py): the container's output arrives in
frames and is written to our stdout/stderr; what we type goes to its stdin.
Ctrl-P Ctrl-Q (docker's detach keys) leaves the container running.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys

import click

from minicontainer.errors import ContainerError, UsageError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str) -> bytes:
    """docker's --detach-keys: ``ctrl-p,ctrl-q`` -> b"\\x10\\x11"; a plain letter is itself."""
    out = b""
    for key in text.split(","):
        key = key.strip().lower()
        if key.startswith("ctrl-") and len(key) == 6 and "a" <= key[5] <= "z":
            out += bytes([ord(key[5]) - ord("a") + 1])
        elif len(key) == 1:
            out += key.encode()
        else:
            raise UsageError(f"invalid --detach-keys {text!r}", "use keys like ctrl-p,ctrl-q")
    return out


class Frames:
    """Splits the monitor's stream into (stream id, bytes) frames."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes):
        self.buf += data
        while len(self.buf) >= 5:
            stream, size = struct.unpack(">BI", self.buf[:5])
            if len(self.buf) < 5 + size:
                return
            yield stream, self.buf[5:5 + size]
            self.buf = self.buf[5 + size:]


class DetachKeys:
    """Watches typed input for the detach sequence; holds back a partial one."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence was typed)."""
        out = b""
        for b in data:
            candidate = self.held + bytes([b])
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    return out, True
            else:
                out += candidate
                self.held = b""
        return out, False


@click.command(short_help="Attach to a detached container's input and output.")
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="Do not send our input to the container.")
@click.option("--detach-keys", default=DEFAULT_DETACH_KEYS, help="Keys that detach and leave it running.")
def attach(container, no_stdin, detach_keys):
    """Show a running container's output as it comes and send it our input;
    Ctrl-P Ctrl-Q detaches, leaving it running.

    \b
    Example:
      minicontainer run -dit --name shell mini /bin/sh
      minicontainer attach shell
    """
    from minicontainer.container.state import StateStore

    keys = parse_detach_keys(detach_keys)
    store = StateStore()
    st = store.get(container)
    if st.status != "running":
        raise ContainerError(f"container {container} is not running", "start it with minicontainer start")
    return _session(_connect(store, st), store, st, keys, read_stdin=not no_stdin)


def _connect(store, st) -> socket.socket:
    from minicontainer.container.watch import socket_path

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd, path = socket_path(store.containers / st.id)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise ContainerError(f"cannot attach to {st.name}: {e.strerror}",
                             "only a container started with -d has a monitor to attach to") from None
    finally:
        os.close(dir_fd)
    return sock


def attach_when_ready(store, ref: str, timeout: float = 10) -> int:
    """``start -i``: attach as soon as the monitor's watcher listens."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        st = store.get(ref)
        try:
            sock = _connect(store, st)
            break
        except ContainerError:
            if st.status == "exited" or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    return _session(sock, store, st, parse_detach_keys(DEFAULT_DETACH_KEYS), read_stdin=True)


def _session(sock, store, st, keys: bytes, read_stdin: bool) -> int:
    import termios
    import tty

    stdin = 0
    saved = None
    if read_stdin and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    frames, detach = Frames(), DetachKeys(keys)
    try:
        while True:
            watched = [sock] + ([stdin] if read_stdin else [])
            ready, _, _ = select.select(watched, [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    break  # the container ended
                for stream, chunk in frames.feed(data):
                    os.write(2 if stream == 2 else 1, chunk)
            if read_stdin and stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    read_stdin = False
                    sock.shutdown(socket.SHUT_WR)  # our input ended: so does the container's (a pipe)
                    continue
                send, detached = detach.feed(data)
                if send:
                    sock.sendall(send)
                if detached:
                    if saved is not None:
                        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
                        saved = None
                    sys.stderr.write("read escape sequence\n")
                    return 0
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()
    from minicontainer.container.control import wait_exited

    done = wait_exited(store, st, 10)
    return done.exit_code if done is not None and done.exit_code is not None else 0
