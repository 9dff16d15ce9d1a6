"""Shared helpers for the root-tier tests: run the real CLI, check for leaks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

PY = sys.executable


def mc(*args, input=None, timeout=60, env=None, check=None, **kw) -> subprocess.CompletedProcess:
    """Run ``minicontainer ARGS`` as a subprocess; text output captured."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [PY, "-m", "minicontainer", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kw,
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}, stdout={proc.stdout!r}, stderr={proc.stderr!r}"
    return proc


# Where a leak by the runtime would show on the host: the container's root and
# volumes under the test's own dirs, or a kernel filesystem mounted over the host's.
_WATCHED = ("/", "/proc", "/sys", "/tmp", "/dev", "/dev/pts", "/dev/shm", "/sys/fs/cgroup", "/run")


def host_mountinfo(*own_dirs) -> list[str]:
    """Our mount table, without mount ids (they change as mounts come and go),
    limited to the places a leak of ours would show: the watched system paths
    and the given directories. (Other programs on this machine, benchmarks or
    docker, may mount elsewhere meanwhile.)"""
    own = tuple(str(d) for d in own_dirs)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            if point in _WATCHED or (own and point.startswith(own)):
                out.append(" ".join(fields[2:]))
    return sorted(out)


def foreign_pidns_processes() -> set[tuple[int, str]]:
    """Processes living in a PID namespace other than ours: containers."""
    mine = os.readlink("/proc/self/ns/pid")
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/pid")
        except OSError:
            continue
        if ns != mine:
            out.add((int(entry), ns))
    return out


def container_cgroups() -> set[str]:
    """Every container cgroup (named by a 64-hex id) under ``minicontainer``, v1 or v2.

    (Other names there belong to the cgroup managers' own tests.)
    """
    base = Path("/sys/fs/cgroup")
    found = set()
    roots = [base] + ([p for p in base.iterdir() if p.is_dir()] if base.is_dir() else [])
    for r in roots:
        top = r / "minicontainer"
        if top.is_dir():
            found.update(str(d) for d in top.iterdir() if d.is_dir() and len(d.name) == 64)
    return found


def minicontainer_cgroup_dirs() -> set[str]:
    """Every directory named ``minicontainer`` under /sys/fs/cgroup (v2 at the
    top, v1 one level down in each hierarchy) and every cgroup below it."""
    base = Path("/sys/fs/cgroup")
    found: set[str] = set()
    roots = [base] + ([p for p in base.iterdir() if p.is_dir()] if base.is_dir() else [])
    for r in roots:
        top = r / "minicontainer"
        if top.is_dir():
            found.update(str(p) for p in [top, *top.rglob("*")] if p.is_dir() and not p.is_symlink())
    return found


def prepare_mc_home(home: Path, timeout: float = 120) -> None:
    """Build the 'mini' image once in the image store at ``home``.

    (The environment is left alone: fixtures point MINICONTAINER_HOME at
    ``home`` per test with monkeypatch, so nothing leaks between tiers.)"""
    if os.geteuid() == 0:
        proc = mc("run", "--rm", "mini", "true", timeout=timeout,
                  env={"MINICONTAINER_HOME": str(home), "MINICONTAINER_ROOT": str(home) + "-run"})
        assert proc.returncode == 0, proc.stderr


class HostSnapshot:
    """The host as a test found it (mounts, container PID namespaces, cgroups
    named minicontainer); :meth:`leaks` lists what differs afterwards.

    Containers are compared by PID namespace, not by pid: a long-running
    container of someone else on this machine that keeps starting processes
    is not a leak of ours; a container of ours left running is a new namespace.
    """

    def __init__(self, *own_dirs):
        self.own_dirs = own_dirs
        self.mounts = host_mountinfo(*own_dirs)
        self.pidns = self._pidns()
        self.cgroups = minicontainer_cgroup_dirs()

    @staticmethod
    def _pidns() -> set[str]:
        return {ns for _, ns in foreign_pidns_processes()}

    def leaks(self, settle: float = 5.0) -> list[str]:
        # Containers die with their runtime; give the kernel a moment to reap.
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and (self._pidns() - self.pidns
                                               or minicontainer_cgroup_dirs() - self.cgroups):
            time.sleep(0.05)
        out = []
        new_ns = self._pidns() - self.pidns
        if new_ns:
            left = sorted(p for p, ns in foreign_pidns_processes() if ns in new_ns)
            out.append(f"container processes left running: {left}")
        if host_mountinfo(*self.own_dirs) != self.mounts:
            out.append("the host's mount table changed")
        if minicontainer_cgroup_dirs() - self.cgroups:
            out.append(f"cgroups left behind: {sorted(minicontainer_cgroup_dirs() - self.cgroups)}")
        return out


def run_in_pty(exec_child, *, rows=40, cols=100, send=b"", send_after=None, timeout=60):
    """Run a program on a new pseudo-terminal of the given size, as a user at
    a terminal would: ``exec_child()`` runs in the forked child (its stdio is
    the pty) and must exec. ``send`` is typed once ``send_after`` appears in
    the output. Returns (exit code, everything the program wrote)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    pid, master = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            exec_child()
        finally:
            os._exit(127)
    out = b""
    sent = not send
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sent and (send_after is None or send_after in out):
                time.sleep(0.2)
                os.write(master, send)
                sent = True
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break  # EIO: the program and all it started are gone
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), out


def apply_masks(root, ops, sc) -> None:
    """Run the MaskPath steps for ``ops`` (security.paths.MaskOp) under the
    directory ``root`` through the interpreter, as a run does after mounting
    /proc and /sys; ``sc`` is the syscall layer (real, or mount recorded)."""
    from minicontainer.container import steps as S
    from minicontainer.container.interpreter import Interpreter

    interp = Interpreter(sc)
    interp.phases = (S.CHILD,)
    interp.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        interp.run([S.MaskPath(path=op.path, kind=op.kind, reason=op.why) for op in ops])
    finally:
        os.close(interp.root_fd)


def read_until(fd: int, needle: bytes, timeout: float = 15) -> bytes:
    """Read ``fd`` (a pty master, a pipe) until ``needle`` shows up, the other
    end closes, or ``timeout`` passes; everything read is returned."""
    import select

    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            seen += data
    return seen


@contextmanager
def mc_on_a_pty(*args, stdin_too: bool = True):
    """``minicontainer ARGS`` with a new pty as its stdout and stderr (and
    stdin, unless ``stdin_too`` is false: then /dev/null); yields (process,
    master fd). Afterwards the process is killed if it still runs, and the
    master closed."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([PY, "-m", "minicontainer", *args], stdin=slave if stdin_too else subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@contextmanager
def private_netns():
    """A network namespace of the test's own (``unshare --net``), held by a
    sleeping process: yields (its /proc/PID/ns/net path, the holder's pid).
    Whatever is made in it (bridges, veths, nft tables) vanishes with it."""
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"])
    path = f"/proc/{holder.pid}/ns/net"
    mine = os.readlink("/proc/self/ns/net")
    try:
        for _ in range(200):  # until unshare has exec'd sleep in the new namespace
            try:
                if os.readlink(path) != mine:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        assert os.readlink(path) != mine
        yield path, holder.pid
    finally:
        holder.kill()
        holder.wait()


def in_netns(netns: str, *argv, timeout=60, check=None, **kw) -> subprocess.CompletedProcess:
    """``argv`` run inside the network namespace ``netns`` (nsenter --net)."""
    proc = subprocess.run(["nsenter", f"--net={netns}", "--", *argv], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}, stdout={proc.stdout!r}, stderr={proc.stderr!r}"
    return proc


def mc_in_netns(netns: str, *args, **kw) -> subprocess.CompletedProcess:
    """``minicontainer ARGS`` run inside the network namespace ``netns``."""
    return in_netns(netns, PY, "-m", "minicontainer", *args, **kw)


def run_demo(name: str, out_dir, timeout: float = 240) -> str:
    """``minicontainer demo NAME --out OUT_DIR`` as a user would run it, not
    interactively; asserts that every step showed what it claims and that its
    scratch directory is gone; returns what it printed."""
    proc = mc("demo", name, "--out", str(out_dir), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert proc.stdout.rstrip().endswith(f"demo {name}: every step showed what it claims."), proc.stdout[-2000:]
    assert "NOT SHOWN" not in proc.stdout
    scratch = next(line.split()[0][2:] for line in proc.stdout.splitlines() if line.startswith("T="))
    assert not os.path.exists(scratch), f"the demo's scratch directory {scratch} was left"
    return proc.stdout


@contextmanager
def subordinate_range(user: str, start: int, count: int = 65536):
    """``user:start:count`` in /etc/subuid and /etc/subgid while the block runs.

    Where /etc is read-only (the cgroup2 VM sees the host's / read-only), a
    copy with the line is bind-mounted over each file instead, and unmounted
    afterwards (the guest's own mount table)."""
    line = f"{user}:{start}:{count}\n"
    done: list[tuple[str, str]] = []  # (path, "edit" | "bind")
    try:
        for path in ("/etc/subuid", "/etc/subgid"):
            text = Path(path).read_text() if os.path.exists(path) else ""
            try:
                Path(path).write_text(text + line)
                done.append((path, "edit"))
            except OSError:
                copy = Path(f"/tmp/mc-{user}-{os.path.basename(path)}")
                copy.write_text(text + line)
                subprocess.run(["mount", "--bind", str(copy), path], check=True)
                done.append((path, "bind"))
        yield
    finally:
        for path, how in done:
            if how == "bind":
                subprocess.run(["umount", path], check=True)
                Path(f"/tmp/mc-{user}-{os.path.basename(path)}").unlink()
            else:
                Path(path).write_text(Path(path).read_text().replace(line, "", 1))


def processes_in_range(start: int, count: int) -> list[int]:
    """The pids of processes whose owner is a uid of ``start .. start+count``
    (a --userns container's range): none may outlive its container."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and start <= os.stat(f"/proc/{entry}").st_uid < start + count:
                out.append(int(entry))
        except OSError:
            pass  # gone meanwhile
    return out


def proc_status(pid) -> dict[str, list[str]]:
    """/proc/PID/status, each value split into words ({"Uid": ["0", "0", "0", "0"], ...})."""
    from minicontainer.nsview import status_fields

    return {k: v.split() for k, v in status_fields(Path(f"/proc/{pid}/status").read_text()).items()}
