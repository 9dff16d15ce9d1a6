"""``minicontainer logs [-f] [--tail N] [--since T] [-t] CONTAINER`` — as docker logs.

A detached container's monitor writes its output to a json-file log in the
state directory (container/logs.py); this prints it, stdout entries on
stdout and stderr entries on stderr, as they were written.
"""

from __future__ import annotations

import sys
import time

import click

from minicontainer.errors import ContainerError, UsageError


def _since(text: str | None) -> float | None:
    """docker's --since: an RFC 3339 time, a Unix time, or a duration like 10m."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    from minicontainer.container.logs import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f"invalid --since {text!r}", "use a duration like 10m, or a time like 2026-12-01T09:00:00Z") from None


def _emit(entry: dict, timestamps: bool) -> None:
    out = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    text = entry.get("log", "")
    if timestamps:
        text = f"{entry.get('time', '')} {text}"
    out.write(text)
    out.flush()


def print_logs(store, ref: str, *, follow=False, tail: int | None = None, since: float | None = None,
               timestamps=False, since_start=False) -> int:
    from minicontainer.container import logs
    from minicontainer.container.state import LOG_FILE

    st = store.get(ref)
    path = store.containers / st.id / LOG_FILE
    if not st.detached and not path.exists():
        raise ContainerError(f"container {ref} has no log: it ran in the foreground, its output went to the terminal",
                             "run it with -d to keep its output in a log")
    if since_start:
        since = st.started or since
    try:
        offset = path.stat().st_size
    except FileNotFoundError:
        offset = 0
    entries = logs.read_entries(path)
    if since is not None:
        entries = [e for e in entries if logs.parse_time(e.get("time", "0")) >= since]
    if tail is not None:
        entries = entries[-tail:] if tail else []
    for e in entries:
        _emit(e, timestamps)
    if follow:
        from minicontainer.container.control import running

        for e in logs.follow(path, offset, lambda: _still_running(store, st, running)):
            _emit(e, timestamps)
    return 0


def _still_running(store, st, running) -> bool:
    try:
        return running(store, st)
    except ContainerError:
        return False  # removed (--rm): it ended


@click.command(short_help="Show a detached container's output.")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the container stops.")
@click.option("-n", "--tail", default="all", help="Only the last N lines (default all).")
@click.option("--since", help="Only output since a time (2026-12-01T09:00:00Z) or a duration (10m).")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time.")
def logs(container, follow, tail, since, timestamps):
    """Print the output of a container started with -d (its json-file log).

    \b
    Example:
      minicontainer logs -f --tail 10 web
    """
    from minicontainer.container.state import StateStore

    if tail != "all" and not tail.isdigit():
        raise UsageError(f"invalid --tail {tail!r}", "give a number of lines, or all")
    return print_logs(StateStore(), container, follow=follow, tail=None if tail == "all" else int(tail),
                      since=_since(since), timestamps=timestamps)
