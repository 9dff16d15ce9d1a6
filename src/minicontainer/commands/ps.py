"""``minicontainer ps [-a] [-q] [--no-trunc] [--filter K=V] [--format ...]`` — like docker ps."""

from __future__ import annotations

import shlex
import time

import click

from minicontainer.commands._format import format_option, print_listing, render_template
from minicontainer.errors import UsageError

__all__ = ["ps", "render_template", "status_text"]  # render_template: the shared one, kept importable here
from minicontainer.units import ago, human_duration


def status_text(st, now: float | None = None) -> str:
    """STATUS as docker writes it: "Up 3 minutes", "Up 5 seconds (Paused)",
    "Exited (137) 2 seconds ago", "Created"."""
    now = time.time() if now is None else now
    if st.status == "running":
        from minicontainer.commands.pause import paused

        return f"Up {human_duration(max(0.0, now - st.started))}" + (" (Paused)" if paused(st) else "")
    if st.status == "restarting":
        code = st.exit_code if st.exit_code is not None else 0
        return f"Restarting ({code}) {ago(st.finished, now)}"
    if st.status == "exited":
        code = st.exit_code if st.exit_code is not None else "?"  # (an engine reaped it and kept the code)
        return f"Exited ({code}) {ago(st.finished, now)}" if st.finished else f"Exited ({code})"
    return st.status.capitalize()


def _filters(items) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("status", "name", "id"):
            raise UsageError(f"invalid --filter {item!r}", "use status=running|exited|created|paused, name=NAME or id=ID")
        out.setdefault(key, set()).add(value)
    return out


def _matches(st, filters: dict[str, set[str]]) -> bool:
    from minicontainer.commands.pause import paused

    for key, values in filters.items():
        if key == "status":
            shown = "paused" if st.status == "running" and paused(st) else st.status
            if shown not in values:
                return False
        elif key == "name" and not any(v in st.name for v in values):
            return False
        elif key == "id" and not any(st.id.startswith(v) for v in values):
            return False
    return True


def _row(st, no_trunc: bool) -> dict[str, str]:
    cmd = shlex.join(st.command)
    if not no_trunc and len(cmd) > 22:
        cmd = cmd[:21] + "…"
    from minicontainer.commands.port import published
    from minicontainer.network.ports import ps_column

    return {"ID": st.id if no_trunc else st.short_id, "Image": st.image, "Command": f'"{cmd}"',
            "CreatedAt": ago(st.created), "Status": status_text(st), "Ports": ps_column(published(st)),
            "Names": st.name, "State": st.status}


@click.command(short_help="List containers.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited containers too.")
@format_option("{{.Names}} {{.Status}}")
@click.option("-q", "--quiet", is_flag=True, help="Only print ids.")
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and commands.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE", help="status=, name= or id= (repeatable).")
def ps(show_all, fmt, quiet, no_trunc, filters):
    """List running containers (with -a, all of them).

    \b
    Examples:
      minicontainer ps -a --filter status=exited
      minicontainer ps --format '{{.Names}}\\t{{.Status}}'
    """
    from minicontainer.container.state import StateStore

    wanted = _filters(filters)
    states = [s for s in StateStore().list()
              if (show_all or s.status == "running" or "status" in wanted) and _matches(s, wanted)]
    if quiet:
        for s in states:
            click.echo(s.id if no_trunc else s.short_id)
        return 0
    from dataclasses import asdict

    print_listing(fmt, states, fields=lambda s: _row(s, no_trunc),
                  columns=COLUMNS, as_json=lambda s: asdict(s) | {"status_text": status_text(s)})
    return 0


COLUMNS = (("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "CreatedAt"),
           ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names"))
