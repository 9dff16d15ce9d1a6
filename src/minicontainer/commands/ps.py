"""``minicontainer ps [-a] [--format json]`` — like docker ps."""

from __future__ import annotations

import json
import shlex
import time

import click


def _ago(t: float) -> str:
    if not t:
        return "-"
    s = max(0, int(time.time() - t))
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            k = s // n
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return f"{s} seconds ago"


def status_text(st) -> str:
    if st.status == "running":
        from minicontainer.commands.pause import paused

        return f"Up since {_ago(st.started)}" + (" (Paused)" if paused(st) else "")
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {_ago(st.finished)}" if st.finished else f"Exited ({st.exit_code})"
    return st.status.capitalize()


@click.command(short_help="List containers.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited containers too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@click.option("-q", "--quiet", is_flag=True, help="Only print ids.")
def ps(show_all, fmt, quiet):
    """List running containers (with -a, all of them)."""
    from minicontainer.container.state import StateStore

    states = [s for s in StateStore().list() if show_all or s.status == "running"]
    if quiet:
        for s in states:
            click.echo(s.short_id)
        return 0
    if fmt == "json":
        from dataclasses import asdict

        click.echo(json.dumps([asdict(s) | {"status_text": status_text(s)} for s in states], indent=2))
        return 0
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for s in states:
        cmd = shlex.join(s.command)
        cmd = cmd if len(cmd) <= 22 else cmd[:21] + "…"
        rows.append((s.short_id, s.image, f'"{cmd}"', _ago(s.created), status_text(s), s.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
