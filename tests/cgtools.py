"""Helpers for the real cgroup manager tests of both cgroup tiers
(tests/cgroup1 on this host, tests/cgroup2 in the VM). Like helpers.py it
sits in tests/, which pytest puts on sys.path for tests/conftest.py, so a
test module of any tier imports it as ``cgtools``.

- ``Child``: a forked process that waits on a pipe until the test has put it
  into its cgroup, then execs a command, the order the runtime uses;
- ``CgroupTracker``: hands out unique container ids, destroys their
  managers, kills and reaps leftover children, and asserts that nothing
  named minicontainer of ours is left under /sys/fs/cgroup (even when the
  test failed);
- ``scale()``: timeouts grow with MINICONTAINER_TEST_TIMEOUT_SCALE (the VM
  runs Python 15-50x slower).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PY = sys.executable


def scale(seconds: float) -> float:
    return seconds * float(os.environ.get("MINICONTAINER_TEST_TIMEOUT_SCALE", "1") or 1)


class Child:
    """fork(); the child blocks on a pipe, then execs ``argv`` with stdout to a pipe."""

    def __init__(self, argv: list[str]):
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only async-signal-safe-ish steps, then exec
            try:
                os.close(go_w)
                os.close(out_r)
                os.read(go_r, 1)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(out_w)
        self.pid = pid
        self._go = go_w
        self._out = out_r
        self._buf = b""
        self.status: int | None = None

    def go(self) -> None:
        os.write(self._go, b"g")
        os.close(self._go)
        self._go = -1

    def read_until(self, text: str, timeout: float) -> str:
        """Read the child's output until ``text`` appears (or EOF, or the timeout)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or self._out < 0:
                break
            r, _, _ = select.select([self._out], [], [], left)
            if not r:
                break
            chunk = os.read(self._out, 65536)
            if not chunk:
                os.close(self._out)
                self._out = -1
                break
            self._buf += chunk
        return self._buf.decode(errors="replace")

    def output(self, timeout: float = 5.0) -> str:
        return self.read_until("\0never\0", timeout)

    def wait(self, timeout: float) -> int:
        """The raw wait status; kills the child if it outlives ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                return status
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.status = status
                raise AssertionError(f"child {self.pid} did not finish within {timeout:.0f}s")
            time.sleep(0.02)

    def reap(self) -> None:
        """Kill (if needed) and reap; safe to call twice."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _, self.status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.status = -1
        for fd in (self._go, self._out):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._go = self._out = -1


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (proc(5), /proc/pid/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _mc_dirs() -> set[Path]:
    """Every directory named minicontainer (two levels below /sys/fs/cgroup) and its children."""
    found: set[Path] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for top in [CGROUP_ROOT, *[p for p in CGROUP_ROOT.iterdir() if p.is_dir()]]:
        d = top / "minicontainer"
        if d.is_dir():
            found.add(d)
            found.update(p for p in d.iterdir() if p.is_dir())
    return found


class CgroupTracker:
    """Unique ids, cleanup, and the "nothing left behind" check."""

    def __init__(self):
        self.prefix = f"mctest-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.n = 0
        self.managers = []
        self.children: list[Child] = []
        self.before = _mc_dirs()

    def new_id(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"

    def track(self, manager):
        self.managers.append(manager)
        return manager

    def child(self, argv: list[str]) -> Child:
        c = Child(argv)
        self.children.append(c)
        return c

    def cleanup_and_check(self) -> list[str]:
        """Destroy everything; return what was left behind (should be nothing)."""
        problems = []
        for m in self.managers:
            try:
                m.destroy()
            except Exception as e:  # keep cleaning; report below
                problems.append(f"destroy {m.path}: {e}")
        for c in self.children:
            c.reap()
        after = _mc_dirs()
        ours = sorted(str(p) for p in after if self.prefix in p.name)
        problems += [f"left behind: {p}" for p in ours]
        for d in after - self.before:
            if d.name == "minicontainer" and not any(p.is_dir() for p in d.iterdir()):
                # An empty shared parent we created and did not remove.
                try:
                    d.rmdir()
                    problems.append(f"left behind (now removed): {d}")
                except OSError:
                    pass
        return problems


class LoopDevice:
    """An 8 MiB loop device backed by a file in /tmp; ``close()`` detaches it."""

    def __init__(self):
        import subprocess
        import tempfile

        f = tempfile.NamedTemporaryFile(dir="/tmp", prefix="mctest-loop.", delete=False)
        f.truncate(8 << 20)
        f.close()
        self.backing = f.name
        try:
            self.path = subprocess.run(["losetup", "-f", "--show", self.backing], check=True,
                                       capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            os.unlink(self.backing)
            raise

    def close(self) -> None:
        import subprocess

        subprocess.run(["losetup", "-d", self.path], check=False)
        try:
            os.unlink(self.backing)
        except FileNotFoundError:
            pass


def rmdir_when_empty(path, timeout: float) -> None:
    """rmdir a cgroup, retrying while the kernel still counts a dying process
    in it (EBUSY until cgroup.events says populated 0)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        try:
            os.rmdir(path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
