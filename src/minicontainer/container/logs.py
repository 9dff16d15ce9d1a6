"""A detached container's log: Docker's json-file format.

One JSON object per line of output: ``{"log": "the line\\n", "stream":
"stdout", "time": "2026-12-01T09:30:00.123456789Z"}`` (RFC 3339 in UTC with
nanoseconds, as Docker writes it), so ``docker logs`` habits and tools that
read json-file logs work on it. The monitor writes it (``LogWriter``);
``minicontainer logs`` reads it (``read_entries``, ``follow``).
"""

from __future__ import annotations

import json
import os
import time


def rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    ns = int(t * 1e9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{base}.{ns % 1_000_000_000:09d}Z"


def parse_time(text: str) -> float:
    """An RFC 3339 time (or a Unix time in seconds) as a Unix time."""
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime, timezone  # only when reading: the monitor's watcher never needs it

    head, _, frac = text.rstrip("Z").partition(".")
    t = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac.isdigit() else 0.0)


class LogWriter:
    """Appends entries; a partial line waits for its end (or for close)."""

    def __init__(self, path):
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.file = os.fdopen(fd, "a", encoding="utf-8")
        self._partial = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        data = self._partial[stream] + data
        *lines, rest = data.split(b"\n")
        self._partial[stream] = rest
        for line in lines:
            self._entry(stream, line + b"\n")
        self.file.flush()

    def _entry(self, stream: str, raw: bytes) -> None:
        entry = {"log": raw.decode("utf-8", "replace"), "stream": stream, "time": rfc3339()}
        self.file.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._entry(stream, rest)
        self._partial = {"stdout": b"", "stderr": b""}
        self.file.close()


def read_entries(path) -> list[dict]:
    """Every complete entry of the log (an empty list if there is no log)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def follow(path, offset: int, still_running, poll: float = 0.1):
    """Yield entries appended after byte ``offset`` until ``still_running()``
    is false and the file has no more (``logs -f``)."""
    buf = b""
    while True:
        running = still_running()  # asked before reading: what it wrote last is read below
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                continue
        if not data:
            if not running:
                return
            time.sleep(poll)
