"""The port proxy: forwards a container's published ports (docker-proxy's job).

Started by the runtime (container/interpreter.py, StartPortProxy) with the
listening sockets it bound already, as inherited fds, and one JSON argument::

    {"ports": [{"fd": 5, "proto": "tcp", "listen": ["127.0.0.1", 18080], "target": ["10.89.0.2", 80]}, ...]}

tcp: each accepted connection gets a connection of its own to the
container's address, and a thread copies both ways until both sides are
done (a half-close, shutdown(2), is passed on: ``nc`` waits for it).
udp: a datagram relay; each client address gets a socket of its own towards
the container, so the answers go back to whoever asked (as docker-proxy).

It stops on SIGTERM: from the runtime when the container ends, or from the
kernel when the runtime itself dies (PR_SET_PDEATHSIG, set before exec).
Only the standard library is imported here: this process lives as long as
the container and should cost little.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import sys
import threading
import time

UDP_IDLE = 90.0  # seconds a udp client's socket towards the container is kept without traffic


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways between two connected tcp sockets until both directions ended."""
    open_ = {a: b, b: a}
    try:
        while open_:
            ready, _, _ = select.select(list(open_), [], [])
            for src in ready:
                dst = open_[src]
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        dst.sendall(data)
                        continue
                    except OSError:
                        return  # the other side is gone: drop both
                del open_[src]  # its side ended: tell the other one
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    finally:
        a.close()
        b.close()


def _serve_tcp(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except InterruptedError:
            continue
        except OSError:
            time.sleep(0.05)  # EMFILE and the like: try again, do not spin
            continue
        threading.Thread(target=_connect, args=(client, target), daemon=True).start()


def _connect(client: socket.socket, target: tuple[str, int]) -> None:
    """One client: its own connection to the container (in its thread: a slow
    one must not hold up the next accept), then the copying."""
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()  # nothing listens in the container: the client sees the connection end
        return
    _pipe(client, upstream)


def _serve_udp(listener: socket.socket, target: tuple[str, int]) -> None:
    peers: dict[tuple, list] = {}  # client address -> [socket towards the container, last use]
    lock = threading.Lock()

    def answers(client, up: socket.socket) -> None:
        while True:
            try:
                data = up.recv(65536)
            except OSError:
                break
            if not data and client not in peers:
                break  # expired: shutdown(2) woke us with nothing
            try:
                listener.sendto(data, client)
            except OSError:
                pass
            with lock:
                if client in peers:
                    peers[client][1] = time.monotonic()
        up.close()

    def expire() -> None:
        while True:
            time.sleep(UDP_IDLE / 3)
            now = time.monotonic()
            with lock:
                for client, (up, last) in list(peers.items()):
                    if now - last > UDP_IDLE:
                        del peers[client]
                        try:
                            up.shutdown(socket.SHUT_RDWR)  # wakes its answers thread, which closes it
                        except OSError:
                            pass

    threading.Thread(target=expire, daemon=True).start()
    while True:
        try:
            data, client = listener.recvfrom(65536)
        except InterruptedError:
            continue
        except OSError:
            time.sleep(0.05)  # an ICMP error reported on the socket and the like: do not spin
            continue
        with lock:
            entry = peers.get(client)
            if entry is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(target)
                entry = peers[client] = [up, time.monotonic()]
                threading.Thread(target=answers, args=(client, up), daemon=True).start()
            entry[1] = time.monotonic()
        try:
            entry[0].send(data)
        except OSError:
            pass  # ECONNREFUSED from an earlier datagram nobody took: udp loses it, as it would


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(0))
    threads = []
    for p in config["ports"]:
        kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
        listener = socket.socket(socket.AF_INET, kind, fileno=p["fd"])
        serve = _serve_tcp if p["proto"] == "tcp" else _serve_udp
        t = threading.Thread(target=serve, args=(listener, tuple(p["target"])), daemon=True)
        t.start()
        threads.append(t)
    while True:
        signal.pause()  # the threads serve; SIGTERM ends the process


if __name__ == "__main__":
    main(sys.argv)
