"""Run reports: what a container's cgroup counted while it ran (``run --report FILE.json``).

A ``Recorder`` is handed to the runtime. Once the command runs, a small
thread reads the container's cgroup counters (the manager's ``stats()`` and
``limit_events()``, the same readings ``stats`` shows) every ``INTERVAL``
seconds, with a timestamp; the runtime tells it how the container ended
and how the cleanup went; then it writes one JSON file::

    {"version": 1, "container": {...}, "cgroup": {"version": "v1", "path": ...},
     "limits": {"memory": 67108864, "cpus": 0.05, "pids": 20},      # null = unlimited
     "namespaces": {"pid": {"container": "pid:[4026532...]", "host": "pid:[4026531836]", "new": true}, ...},
     "interval": 0.2,
     "samples": [{"t": 0.0, "memory_current": ..., "memory_peak": ..., "cpu_usage_usec": ...,
                  "cpu_throttled_usec": ..., "cpu_nr_throttled": ..., "pids_current": ...,
                  "io_read_bytes": ..., "io_write_bytes": ..., "oom_kills": 0, "pids_max_hits": 0}, ...],
     "exit": {"code": 137, "reason": "oom-kill", "signal": "SIGKILL", "oom_kills": 1, "pids_max_hits": 0,
              "message": "killed by the OOM killer: ..."},
     "cleanup": {"ok": true, "cgroup_removed": true, "error": null}}

The kernel keeps counters, not rates: CPU % is the CPU time used between
two samples over the time between them (100% = one CPU), as in ``stats``.
The bottom half of this module is pure (a report dict in, series and a
summary out; tests/unit/test_report.py); ``report_html.py`` draws the series.
Only ``run --report`` imports this module.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
import time

from minicontainer import units
from minicontainer.errors import MiniError, UsageError

INTERVAL = 0.1  # seconds between samples: short runs still get a curve; each is about ten small reads
VERSION = 1
COUNTERS = ("memory_current", "memory_peak", "cpu_usage_usec", "cpu_throttled_usec", "cpu_nr_throttled",
            "pids_current", "io_read_bytes", "io_write_bytes")


def check_target(path: str) -> str:
    """Refuse a report path we could not write, before anything is created."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent):
        raise UsageError(f"--report {path}: {'is a directory' if os.path.isdir(path) else 'its directory does not exist'}",
                         "give a file name in an existing directory, e.g. --report run.json")
    return os.path.abspath(path)


class Recorder:
    """Collects one run's report; the runtime calls started(), finished(), cleaned(), write()."""

    def __init__(self, path: str, *, interval: float = INTERVAL, clock=time.monotonic):
        self.path = path
        self.interval = interval
        self.clock = clock
        self.cgroup = None
        self.data: dict = {"version": VERSION, "interval": interval, "samples": [], "limits": {},
                           "namespaces": {}, "cgroup": None, "exit": None, "cleanup": None}
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the runtime's calls -------------------------------------------------
    def started(self, pid: int, state, spec, cgroup) -> None:
        """The command runs as ``pid``: note what it is, then sample until finished()."""
        self.cgroup = cgroup
        self._t0 = self.clock()
        self.data["container"] = {"id": state.id, "name": state.name, "image": state.image,
                                  "command": list(state.command), "started_at": time.time()}
        self.data["limits"] = limits_of(spec.resources)
        self.data["namespaces"] = namespaces_of(pid)
        if cgroup is not None:
            self.data["cgroup"] = {"version": cgroup.version, "path": cgroup.path}
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="minicontainer-report", daemon=True)
            self._thread.start()

    def finished(self, code: int, message: str | None) -> None:
        """PID 1 was reaped (the cgroup still exists): a last sample, and why it ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        last = self.sample() if self.cgroup is not None else None
        events = {k: (last or {}).get(k, 0) for k in ("oom_kills", "pids_max_hits")}
        self.data["duration"] = round(self.clock() - self._t0, 3)
        self.data["exit"] = {"code": code, "reason": exit_reason(code, **events),
                             "signal": signal.Signals(code - 128).name if 128 < code < 128 + 65 else None,
                             **events, "message": message or None}

    def cleaned(self, error: str | None) -> None:
        removed = self.cgroup is None or not _exists(self.cgroup)
        self.data["cleanup"] = {"ok": error is None and removed, "cgroup_removed": removed, "error": error}

    def write(self) -> None:
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)

    # -- sampling -------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> dict | None:
        """One reading of the cgroup's counters and limit events, at t seconds since the start."""
        try:
            stats = self.cgroup.stats()
            events = self.cgroup.limit_events()
        except (MiniError, OSError):
            return None  # the cgroup is going away: the samples so far stand
        row = {"t": round(self.clock() - self._t0, 3), **{k: stats.get(k) for k in COUNTERS}, **events}
        with self._lock:
            self.data["samples"].append(row)
            if not self.data["limits"].get("from_cgroup"):
                # what the kernel enforces, read back from the files themselves
                self.data["limits"].update({"memory": stats.get("memory_limit"), "cpus": stats.get("cpus"),
                                            "pids": stats.get("pids_limit"), "from_cgroup": True})
        return row


def _exists(cgroup) -> bool:
    try:
        return cgroup.exists()
    except (MiniError, OSError):
        return True


def limits_of(resources) -> dict:
    """The limits asked for (None = unlimited); replaced by the cgroup's own values once read."""
    if resources is None:
        return {"memory": None, "cpus": None, "pids": None}
    from minicontainer.cgroups.resources import UNLIMITED

    pids = resources.pids_limit
    return {"memory": resources.memory, "cpus": resources.cpus / units.NANO if resources.cpus else None,
            "pids": None if pids in (None, UNLIMITED) else pids}


def namespaces_of(pid: int, proc: str = "/proc") -> dict:
    """Each namespace of ``pid`` beside the runtime's: the same inode means shared (namespaces(7))."""
    out = {}
    for ns in ("mnt", "pid", "uts", "ipc", "net", "cgroup", "user"):
        try:
            mine = os.readlink(f"{proc}/self/ns/{ns}")
            theirs = os.readlink(f"{proc}/{pid}/ns/{ns}")
        except OSError:
            continue
        out[ns] = {"container": theirs, "host": mine, "new": theirs != mine}
    return out


# --- pure: a report in, series and text out -------------------------------------


def exit_reason(code: int, *, oom_kills: int = 0, pids_max_hits: int = 0) -> str:
    """``oom-kill``, ``signal``, ``pids-limit`` or ``exit``: why the container ended."""
    if oom_kills and code == 128 + signal.SIGKILL:
        return "oom-kill"
    if code > 128:
        return "signal"
    if pids_max_hits:
        return "pids-limit"
    return "exit"


def load(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read the report {path}: {e.strerror}", "give the file run --report wrote") from None
    except ValueError:
        raise UsageError(f"{path} is not a run report (not JSON)", "give the file run --report wrote") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("samples"), list):
        raise UsageError(f"{path} is not a version {VERSION} run report", "write it again with run --report")
    return data


def cpu_series(samples: list[dict]) -> list[tuple[float, float]]:
    """(t, % of one CPU) between each two samples, at the later one's time."""
    out = []
    for a, b in zip(samples, samples[1:]):
        ua, ub, dt = a.get("cpu_usage_usec"), b.get("cpu_usage_usec"), b["t"] - a["t"]
        if ua is None or ub is None or dt <= 0:
            continue
        out.append((b["t"], max(0, ub - ua) / (dt * 1e6) * 100.0))
    return out


def series(samples: list[dict], key: str) -> list[tuple[float, float]]:
    return [(s["t"], s[key]) for s in samples if s.get(key) is not None]


def oom_times(samples: list[dict]) -> list[float]:
    """When the OOM killer struck: the first sample after each rise of the counter."""
    out, before = [], 0
    for s in samples:
        n = s.get("oom_kills") or 0
        if n > before:
            out.append(s["t"])
        before = max(before, n)
    return out


def summary(data: dict) -> str:
    c = data.get("container") or {}
    samples = data["samples"]
    limits = data.get("limits") or {}
    lines = [f"container {c.get('id', '?')[:12]} ({c.get('name', '?')}), image {c.get('image', '?')}: "
             f"{shlex.join(c.get('command') or [])}"]
    lines.append(f"ran {data.get('duration', 0):.1f} s; {len(samples)} samples, every {data.get('interval', INTERVAL):g} s"
                 + ("" if data.get("cgroup") else " (no cgroup: rootless, nothing sampled)"))
    ex = data.get("exit") or {}
    what = {"oom-kill": "killed by the OOM killer", "signal": f"killed by {ex.get('signal')}",
            "pids-limit": "forks failed at the pids limit", "exit": "exited"}.get(ex.get("reason"), "?")
    lines.append(f"exit code {ex.get('code')}: {ex.get('message') or what}")
    mem = [v for _, v in series(samples, "memory_current")]
    peaks = [v for _, v in series(samples, "memory_peak")] + mem
    if peaks:
        peak = max(peaks)
        limit = limits.get("memory")
        of = f" of limit {units.format_size(limit)} ({peak / limit * 100:.0f}%)" if limit else " (no limit)"
        lines.append(f"memory: peak {units.format_size(peak)}{of}")
    cpu = [v for _, v in cpu_series(samples)]
    if cpu:
        cpus = limits.get("cpus")
        lim = f"; limit {cpus * 100:g}% (--cpus {cpus:g})" if cpus else "; no limit"
        last = samples[-1]
        thr = last.get("cpu_throttled_usec")
        throttled = (f"; throttled {thr / 1e6:.2f} s in {last.get('cpu_nr_throttled') or 0} periods"
                     if thr is not None else "")
        lines.append(f"cpu: average {sum(cpu) / len(cpu):.1f}% of one CPU, max {max(cpu):.1f}%{lim}{throttled}")
    pids = [v for _, v in series(samples, "pids_current")]
    if pids:
        limit = limits.get("pids")
        hits = samples[-1].get("pids_max_hits") or 0
        lines.append(f"pids: peak {max(pids)}" + (f" of limit {limit}" if limit else " (no limit)")
                     + (f"; {hits} forks refused" if hits else ""))
    last = samples[-1] if samples else {}
    if last.get("io_read_bytes") is not None:
        lines.append(f"io: read {units.format_size(last['io_read_bytes'])}, "
                     f"written {units.format_size(last.get('io_write_bytes') or 0)}")
    new = [ns for ns, v in (data.get("namespaces") or {}).items() if v.get("new")]
    shared = [ns for ns, v in (data.get("namespaces") or {}).items() if not v.get("new")]
    if new or shared:
        lines.append(f"namespaces: new {' '.join(new) or 'none'}" + (f"; shared with the host {' '.join(shared)}"
                                                                      if shared else ""))
    cl = data.get("cleanup") or {}
    lines.append("cleanup: " + ("ok, cgroup removed" if cl.get("ok") else f"FAILED: {cl.get('error') or 'cgroup left'}"))
    return "\n".join(lines)
