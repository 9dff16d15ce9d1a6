"""``minicontainer top CONTAINER [ps OPTIONS]`` — the processes of a running container.

Which processes belong to a container is the kernel's answer, not a guess
from process names: every pid listed in the container's cgroup
(``cgroup.procs``, in every v1 hierarchy, sub-cgroups included). For each,
psutil reads /proc on the host; the pid the container sees is the last
number of the ``NSpid:`` line of /proc/PID/status (proc(5): one pid per
nested PID namespace, outermost first).

With ps OPTIONS, like ``docker top``, the host's ps(1) runs with them and
only the lines of the container's pids are kept (so the options must list
every process, e.g. ``-ef`` or ``aux``, and show a PID column).
"""

from __future__ import annotations

import shlex
import subprocess
import time

import click

from minicontainer.errors import ContainerError, UsageError
from minicontainer.units import format_size

HEADER = ("PID", "CONTAINER PID", "USER", "%CPU", "RSS", "TIME", "COMMAND")


def container_pid(pid: int) -> str:
    """The pid as the container sees it: the last NSpid field (Linux 4.1+)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return line.split()[-1]
    except OSError:
        pass
    return "?"


def _row(proc, now: float) -> tuple[str, ...] | None:
    """One process as ps would show it; None if it exited meanwhile."""
    import psutil

    try:
        with proc.oneshot():
            times = proc.cpu_times()
            used = times.user + times.system
            # ps(1)'s %CPU: CPU time over the time since the process started.
            elapsed = max(now - proc.create_time(), 1e-6)
            try:
                user = proc.username()
            except KeyError:  # a uid without a name on the host (a container's own users)
                user = str(proc.uids().real)
            argv = proc.cmdline()
            command = shlex.join(argv) if argv else f"[{proc.name()}]"
            rss = proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return (str(proc.pid), container_pid(proc.pid), "?", "?", "?", "?", "?")
    minutes, seconds = divmod(int(used), 60)
    return (str(proc.pid), container_pid(proc.pid), user, f"{100 * used / elapsed:.1f}",
            format_size(rss), f"{minutes}:{seconds:02d}", command)


def processes_table(pids: list[int]) -> list[tuple[str, ...]]:
    import psutil

    now = time.time()
    rows = []
    for pid in pids:
        try:
            row = _row(psutil.Process(pid), now)
        except psutil.NoSuchProcess:
            continue
        if row is not None:
            rows.append(row)
    return rows


def ps_filtered(ps_args: tuple[str, ...], pids: list[int]) -> list[str]:
    """docker top's way: the host's ps with the user's options, only our pids kept."""
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ContainerError("ps options need the host's ps(1), which is not installed",
                             "install procps, or run 'minicontainer top NAME' without options") from None
    if out.returncode != 0:
        raise UsageError(f"ps {shlex.join(ps_args)} failed: {out.stderr.strip().splitlines()[0] if out.stderr.strip() else out.returncode}",
                         "give options ps(1) understands, e.g. -ef or aux")
    lines = out.stdout.splitlines()
    if not lines or "PID" not in lines[0].split():
        raise UsageError(f"ps {shlex.join(ps_args)} shows no PID column", "add one, e.g. -o pid,user,args")
    column = lines[0].split().index("PID")
    wanted = {str(p) for p in pids}
    kept = [ln for ln in lines[1:] if len(ln.split()) > column and ln.split()[column] in wanted]
    return [lines[0], *kept]


def _container_pids(store, ref: str) -> list[int]:
    from minicontainer.commands.pause import running_cgroup

    _, m = running_cgroup(store, ref, "listed")
    return m.procs()


@click.command(short_help="Show the processes of a running container.",
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
def top(container, ps_args):
    """List the processes of CONTAINER: host PID, the PID inside, user,
    CPU (%CPU as ps(1): CPU time over the time since the process started),
    resident memory, CPU time and command. The processes are those in the
    container's cgroup. PS_ARGS, if given, are handed to the host's ps(1)
    and only the container's lines are kept, as docker top does.

    \b
    Examples:
      minicontainer top web
      minicontainer top web -eo pid,stat,args
    """
    from minicontainer.container.state import StateStore

    pids = _container_pids(StateStore(), container)
    if ps_args:
        for line in ps_filtered(tuple(ps_args), pids):
            click.echo(line)
        return 0
    rows = [HEADER, *processes_table(pids)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[-1])
    return 0
