"""``minicontainer ps [-a] [-q] [--no-trunc] [--filter K=V] [--format ...]`` — like docker ps."""

from __future__ import annotations

import json
import re
import shlex
import time

import click

from minicontainer.errors import UsageError
from minicontainer.units import ago, human_duration


def status_text(st, now: float | None = None) -> str:
    """STATUS as docker writes it: "Up 3 minutes", "Up 5 seconds (Paused)",
    "Exited (137) 2 seconds ago", "Created"."""
    now = time.time() if now is None else now
    if st.status == "running":
        from minicontainer.commands.pause import paused

        return f"Up {human_duration(max(0.0, now - st.started))}" + (" (Paused)" if paused(st) else "")
    if st.status == "restarting":
        code = st.exit_code if st.exit_code is not None else "?"  # (an engine reaped it and kept the code)
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
    return {"ID": st.id if no_trunc else st.short_id, "Image": st.image, "Command": f'"{cmd}"',
            "CreatedAt": ago(st.created), "Status": status_text(st), "Names": st.name, "State": st.status}


def render_template(template: str, values: dict) -> str:
    """docker's ``--format '{{.Name}}\\t{{.Status}}'``: each ``{{.Field}}``
    replaced by its value, ``{{.State.Pid}}`` reaching into nested values
    and ``{{json .Config}}`` printing one as JSON (no other Go template
    syntax). A value that is not a string is written as JSON (true, 42)."""

    def field(m):
        as_json, path = m.group(1), m.group(2)
        value = values
        for key in filter(None, path.split(".")):
            if not isinstance(value, dict) or key not in value:
                known = ", ".join("." + k for k in value) if isinstance(value, dict) else "none"
                raise UsageError(f"--format: unknown field {path}", f"known here: {known}")
            value = value[key]
        if isinstance(value, str) and not as_json:
            return value
        return json.dumps(value, sort_keys=True)

    return re.sub(r"{{\s*(json\s+)?(\.(?:\w+(?:\.\w+)*)?)\s*}}", field,
                  template.replace("\\t", "\t").replace("\\n", "\n"))


@click.command(short_help="List containers.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited containers too.")
@click.option("--format", "fmt", default="table", help="table, json, or a template like '{{.Names}} {{.Status}}'.")
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

    if fmt not in ("table", "json") and "{{" not in fmt:
        raise UsageError(f"invalid --format {fmt!r}", "use table, json, or a template such as '{{.Names}} {{.Status}}'")
    wanted = _filters(filters)
    states = [s for s in StateStore().list()
              if (show_all or s.status == "running" or "status" in wanted) and _matches(s, wanted)]
    if quiet:
        for s in states:
            click.echo(s.id if no_trunc else s.short_id)
        return 0
    if fmt == "json":
        from dataclasses import asdict

        click.echo(json.dumps([asdict(s) | {"status_text": status_text(s)} for s in states], indent=2))
        return 0
    if fmt != "table":
        for s in states:
            click.echo(render_template(fmt, _row(s, no_trunc)))
        return 0
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for s in states:
        r = _row(s, no_trunc)
        rows.append((r["ID"], r["Image"], r["Command"], r["CreatedAt"], r["Status"], r["Names"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
