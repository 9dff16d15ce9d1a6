"""``minicontainer stats [CONTAINER...] [--no-stream] [--format json]`` — like docker stats.

Every number comes from the container's cgroup (the managers' ``stats()``):
memory.current / memory.usage_in_bytes, cpu.stat / cpuacct.usage,
pids.current, io.stat / blkio.throttle.io_service_bytes_recursive. The
kernel keeps counters, not rates, so "CPU %" needs two readings: the CPU time
the cgroup used between them divided by the wall time that passed, where
100% is one whole CPU (a container busy on two CPUs shows 200%, as in docker).

Like docker, "MEM USAGE" leaves out the inactive page cache (file data the
kernel drops first under pressure), and MEM % is of the container's limit,
or of the host's memory when it has none.

The top half is pure (readings in, rows and JSON out; tests/unit/test_stats_format.py),
the bottom half reads the state store and the cgroups and loops.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

import click

from minicontainer import units
from minicontainer.commands._format import format_option
from minicontainer.commands.completion import complete_containers
from minicontainer.errors import MiniError

CLEAR_SCREEN = "\033[2J\033[H"  # erase the terminal, cursor to the top left (console_codes(4))
FIRST_GAP = 0.5  # seconds between the two readings of the first sample
INTERVAL = 1.0  # seconds between refreshes


# --- pure: readings -> samples -> text -------------------------------------


@dataclass(frozen=True)
class Reading:
    """One read of a container's cgroup counters (``CgroupManager.stats()``) at a moment."""

    at: float  # time.monotonic()
    counters: dict


@dataclass(frozen=True)
class Sample:
    """One row of ``stats``: what docker stats shows, plus peak, throttling and limits."""

    id: str
    name: str
    cpu_percent: float | None  # 100.0 = one CPU busy all the time
    cpus: float | None  # the --cpus limit; None = unlimited
    cpu_throttled_usec: int | None  # total time the CFS quota held it back
    memory_usage: int | None  # bytes, without inactive page cache
    memory_limit: int | None  # the container's limit; None = unlimited
    memory_percent: float | None  # of memory_limit, or of the host's memory without one
    memory_peak: int | None
    pids_current: int | None
    pids_limit: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None


def cpu_percent(before: Reading, after: Reading) -> float | None:
    """CPU time used between two readings over the wall time between them, in % of one CPU."""
    used0 = before.counters.get("cpu_usage_usec")
    used1 = after.counters.get("cpu_usage_usec")
    wall_usec = (after.at - before.at) * 1e6
    if used0 is None or used1 is None or wall_usec <= 0:
        return None
    return max(0, used1 - used0) / wall_usec * 100.0


def memory_usage(counters: dict) -> int | None:
    """Current memory minus the inactive file cache (docker's "usage")."""
    current = counters.get("memory_current")
    if current is None:
        return None
    return max(0, current - (counters.get("memory_inactive_file") or 0))


def make_sample(cid: str, name: str, before: Reading, after: Reading, host_memory: int | None) -> Sample:
    c = after.counters
    usage = memory_usage(c)
    limit = c.get("memory_limit")
    base = limit if limit is not None else host_memory
    return Sample(
        id=cid,
        name=name,
        cpu_percent=cpu_percent(before, after),
        cpus=c.get("cpus"),
        cpu_throttled_usec=c.get("cpu_throttled_usec"),
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=usage / base * 100.0 if usage is not None and base else None,
        memory_peak=c.get("memory_peak"),
        pids_current=c.get("pids_current"),
        pids_limit=c.get("pids_limit"),
        io_read_bytes=c.get("io_read_bytes"),
        io_write_bytes=c.get("io_write_bytes"),
    )


def _size(n: int | None) -> str:
    return "--" if n is None else units.format_size(n)


def _pct(p: float | None) -> str:
    return "--" if p is None else f"{p:.2f}%"


def format_duration(usec: int | None) -> str:
    """Throttled time: 0 -> ``0s``, 1_520_000 -> ``1.52s``, 125 s -> ``2m5s``."""
    if usec is None:
        return "--"
    s = usec / 1e6
    if s < 60:
        return f"{s:.2f}".rstrip("0").rstrip(".") + "s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m"


HEADER = ("CONTAINER ID", "NAME", "CPU % / LIMIT", "MEM USAGE / LIMIT", "MEM %", "MEM PEAK", "THROTTLED",
          "BLOCK I/O", "PIDS")


def row(s: Sample, host_memory: int | None) -> tuple[str, ...]:
    cpu = _pct(s.cpu_percent)
    if s.cpus is not None:
        cpu += f" / {s.cpus * 100:g}%"  # --cpus 0.2 is 20% of one CPU
    limit = _size(s.memory_limit if s.memory_limit is not None else host_memory)
    pids = "--" if s.pids_current is None else str(s.pids_current)
    if s.pids_limit is not None:
        pids += f" / {s.pids_limit}"
    return (
        s.id[:12],
        s.name,
        cpu,
        f"{_size(s.memory_usage)} / {limit}",
        _pct(s.memory_percent),
        _size(s.memory_peak),
        format_duration(s.cpu_throttled_usec),
        f"{_size(s.io_read_bytes)} / {_size(s.io_write_bytes)}",
        pids,
    )


def format_table(samples: list[Sample], host_memory: int | None, charts: dict[str, tuple[str, str]] | None = None) -> str:
    """The table, columns padded like ``ps``; the header alone when nothing runs.
    With ``charts`` (id -> the CPU and memory sparklines, on a terminal) two
    more columns show the last minute."""
    from minicontainer.commands._format import table_text

    if charts is None:
        return table_text([HEADER] + [row(s, host_memory) for s in samples])
    return table_text([HEADER + CHART_HEADER] + [row(s, host_memory) + charts.get(s.id, ("", "")) for s in samples])


def fields(s: Sample, host_memory: int | None) -> dict:
    """A sample as the table shows it, keyed by docker stats' template names
    (``--format '{{.Name}} {{.CPUPerc}} {{.MemUsage}}'``)."""
    r = row(s, host_memory)
    return {"Container": r[0], "ID": s.id, "Name": s.name, "CPUPerc": _pct(s.cpu_percent), "CPU": r[2],
            "MemUsage": r[3], "MemPerc": r[4], "MemPeak": r[5], "Throttled": r[6], "BlockIO": r[7], "PIDs": r[8]}


# --- sparklines: the last minute of CPU and memory, on a terminal ---------

BARS = "▁▂▃▄▅▆▇█"  # U+2581..U+2588: eight heights of a character cell
CHART_SPAN = 60.0  # seconds shown
CHART_WIDTH = 20  # characters: one per CHART_SPAN / CHART_WIDTH = 3 seconds
CHART_HEADER = ("CPU (1 MIN)", "MEM (1 MIN)")


def sparkline(points, now: float, top: float, *, width: int = CHART_WIDTH, span: float = CHART_SPAN) -> str:
    """``points`` ((monotonic time, value) pairs) of the last ``span`` seconds
    as ``width`` bar characters, oldest left: each character is the highest
    value of its slice of time, scaled so that ``top`` (the limit) is a full
    cell; a slice without a reading is a space (before the container was
    watched), and a value above ``top`` is drawn full."""
    if top <= 0:
        return " " * width
    slot = span / width
    cells: list[float | None] = [None] * width
    for t, v in points:
        if v is None or not (now - span < t <= now):
            continue
        i = min(width - 1, int((t - (now - span)) / slot))
        cells[i] = v if cells[i] is None else max(cells[i], v)
    out = []
    for v in cells:
        if v is None:
            out.append(" ")
        else:
            level = int(min(max(v / top, 0.0), 1.0) * (len(BARS) - 1) + 0.5)
            out.append(BARS[level])
    return "".join(out)


class History:
    """The readings of each container in the last minute, for the sparklines."""

    def __init__(self, span: float = CHART_SPAN):
        self.span = span
        self.points: dict[str, list[tuple[float, float | None, int | None]]] = {}

    def add(self, now: float, samples: list[Sample]) -> None:
        for s in samples:
            pts = self.points.setdefault(s.id, [])
            pts.append((now, s.cpu_percent, s.memory_usage))
            while pts and pts[0][0] <= now - self.span:
                pts.pop(0)
        alive = {s.id for s in samples}
        for cid in list(self.points):
            if cid not in alive:
                del self.points[cid]  # exited: its chart goes with its row

    def charts(self, now: float, samples: list[Sample], host_memory: int | None) -> dict[str, tuple[str, str]]:
        """id -> (CPU, memory) sparklines. CPU is scaled to --cpus (else one
        CPU, or the most it used if that is more), memory to -m (else to the
        most it used in the minute: the host's memory would flatten it)."""
        out = {}
        for s in samples:
            pts = self.points.get(s.id, [])
            cpu_top = s.cpus * 100 if s.cpus else max([100.0] + [c for _, c, _ in pts if c is not None])
            mems = [m for _, _, m in pts if m is not None]
            mem_top = s.memory_limit if s.memory_limit is not None else (max(mems) if mems else 0)
            out[s.id] = (sparkline([(t, c) for t, c, _ in pts], now, cpu_top),
                         sparkline([(t, m) for t, _, m in pts], now, mem_top))
        return out


def to_json(samples: list[Sample]) -> str:
    """``--format json``: a list of objects, numbers raw (bytes, microseconds), null = unknown or unlimited."""
    out = []
    for s in samples:
        d = asdict(s)
        for k in ("cpu_percent", "memory_percent"):
            if d[k] is not None:
                d[k] = round(d[k], 2)
        out.append(d)
    return json.dumps(out, indent=2)


def host_memory_bytes(meminfo: str) -> int | None:
    """MemTotal from the text of /proc/meminfo (proc(5)), in bytes."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024  # the kernel writes kB, meaning KiB
    return None


# --- the command: find containers, read, loop -------------------------------


class _Target:
    """A running container and its cgroup manager."""

    def __init__(self, st, manager):
        self.st = st
        self.manager = manager

    def read(self) -> Reading | None:
        """Its counters now, or None once its cgroup is gone (it exited)."""
        if not self.manager.exists():
            return None
        try:
            return Reading(time.monotonic(), self.manager.stats())
        except (MiniError, OSError):
            return None


def _target(store, ref: str) -> _Target:
    from minicontainer.commands.pause import running_cgroup

    st, m = running_cgroup(store, ref, "measured")
    return _Target(st, m)


def _targets(store, refs: tuple[str, ...], known: dict[str, _Target]) -> list[_Target]:
    """The containers to show now: the named ones still running, else every running one."""
    if refs:
        states = []
        for ref in refs:
            try:
                st = store.get(ref)
            except MiniError:
                continue
            if st.status == "running":
                states.append(st)
    else:
        states = [s for s in store.list() if s.status == "running"]
    out = []
    for st in states:
        t = known.get(st.id)
        if t is None:
            try:
                from minicontainer.cgroups import manager_of

                t = _Target(st, manager_of(st.id, st.cgroup))
            except MiniError:
                continue  # no cgroup on this host: nothing to show
        out.append(t)
    return out


def _read_host_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return host_memory_bytes(f.read())
    except OSError:
        return None


def _samples(targets: list[_Target], before: dict[str, Reading], after: dict[str, Reading],
             host_memory: int | None) -> list[Sample]:
    out = []
    for t in targets:
        a = after.get(t.st.id)
        b = before.get(t.st.id)
        if a is None:
            continue  # exited meanwhile
        out.append(make_sample(t.st.id, t.st.name, b or a, a, host_memory))
    return out


def _read_all(targets: list[_Target]) -> dict[str, Reading]:
    out = {}
    for t in targets:
        r = t.read()
        if r is not None:
            out[t.st.id] = r
    return out


@click.command(short_help="Show live resource usage of containers.")
@click.argument("containers", nargs=-1, shell_complete=complete_containers)
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@format_option("{{.Name}} {{.CPUPerc}} {{.MemUsage}}", extra=" (implies --no-stream)")
def stats(containers, no_stream, fmt):
    """Show CPU, memory, pids and block I/O of running containers (all of them
    without CONTAINER), refreshed every second until Ctrl-C. On a terminal
    two sparklines chart each container's CPU (against --cpus) and memory
    (against -m) over the last minute.

    \b
    CPU %      CPU time used / wall time; 100% = one CPU (limit: --cpus)
    MEM USAGE  memory in use without inactive page cache / the limit (-m)
    MEM PEAK   the most it used so far
    THROTTLED  total time the --cpus quota held it back
    PIDS       processes and threads / --pids-limit
    Template fields: .Container .ID .Name .CPUPerc .CPU .MemUsage .MemPerc .MemPeak .Throttled .BlockIO .PIDs
    """
    from minicontainer.commands._format import is_template, render_template
    from minicontainer.container.state import StateStore

    store = StateStore()
    # Named containers must exist and run now (one line each otherwise);
    # later, one that exits just drops out of the table.
    known: dict[str, _Target] = {}
    for ref in containers:
        t = _target(store, ref)
        known[t.st.id] = t
    host_memory = _read_host_memory()
    targets = _targets(store, containers, known)

    def text(samples: list[Sample], charts=None) -> str:
        if is_template(fmt):
            return "\n".join(render_template(fmt, fields(s, host_memory)) for s in samples)
        return format_table(samples, host_memory, charts)

    try:
        before = _read_all(targets)
        time.sleep(FIRST_GAP)
        after = _read_all(targets)
        samples = _samples(targets, before, after, host_memory)
        if fmt == "json":
            click.echo(to_json(samples))
            return 0
        if no_stream:
            if samples or not is_template(fmt):
                click.echo(text(samples))
            return 0
        # A terminal gets a redrawn screen with the sparklines; a pipe gets
        # plain tables one after the other (a log reads them in order).
        tty = sys.stdout.isatty()
        history = History() if tty and not is_template(fmt) else None
        while True:
            if history is not None:
                now = time.monotonic()
                history.add(now, samples)
                click.echo(CLEAR_SCREEN + text(samples, history.charts(now, samples, host_memory)))
            else:
                click.echo((CLEAR_SCREEN + text(samples)) if tty else text(samples) + "\n")
            if containers and not samples:
                return 0  # every named container has exited
            time.sleep(INTERVAL)
            known = {t.st.id: t for t in targets}
            targets = _targets(store, containers, known)
            before = after
            after = _read_all(targets)
            samples = _samples(targets, before, after, host_memory)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a live view ends: not an error
