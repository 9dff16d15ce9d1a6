"""Shared helpers for the root-tier tests: run the real CLI, check for leaks."""

from __future__ import annotations

import os
import subprocess
import sys
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
