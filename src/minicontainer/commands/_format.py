"""``--format table|json|TEMPLATE``: one implementation for every listing.

``ps``, ``image ls``, ``network ls``, ``stats --no-stream`` (and ``volume
ls``) list things the same three ways, as docker does:

- ``table`` (the default): a header and padded columns;
- ``json``: one JSON list of every item (the raw values: bytes, ids);
- a Go-template-like string, ``'{{.Name}}\\t{{.Status}}'``: one line per
  item, each ``{{.Field}}`` replaced by the item's value (the same values the
  table shows), ``{{.A.B}}`` reaching into nested values and ``{{json .X}}``
  writing one as JSON. No other Go template syntax (no ``range``/``if``).

A command describes its items once (:func:`print_listing`'s ``fields`` and
``columns``) and gets all three. ``inspect`` uses :func:`render_template`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence

import click

from minicontainer.errors import UsageError

_FIELD = re.compile(r"{{\s*(json\s+)?(\.(?:\w+(?:\.\w+)*)?)\s*}}")


def is_template(fmt: str) -> bool:
    return "{{" in fmt


def check_format(fmt: str, example: str, *, table: bool = True) -> None:
    """Refuse a --format that is no table/json/template before anything is read."""
    if fmt == "json" or (table and fmt == "table") or is_template(fmt):
        return
    choices = "table, json" if table else "json"
    raise UsageError(f"invalid --format {fmt!r}", f"use {choices}, or a template such as '{example}'")


def format_option(example: str, *, table: bool = True, extra: str = "", short: str | None = None):
    """The ``--format`` flag of a listing, with the same help everywhere. It
    is checked as click checks a flag, so a bad one is a usage error (125,
    before anything is read) in every command group."""

    def check(ctx, param, value):
        try:
            check_format(value, example, table=table)
        except UsageError as e:
            raise click.BadParameter(f"{value!r} (hint: {e.hint})") from None
        return value

    choices = "table (the default), json" if table else "json (the default)"
    names = ("--format", short) if short else ("--format",)
    return click.option(*names, "fmt", default="table" if table else "json", callback=check,
                        metavar="table|json|TEMPLATE" if table else "json|TEMPLATE",
                        help=f"{choices}{extra}, or a template such as '{example}'.")


def render_template(template: str, values: dict) -> str:
    """docker's ``--format '{{.Name}}\\t{{.Status}}'``: each ``{{.Field}}``
    replaced by its value, ``{{.State.Pid}}`` reaching into nested values
    and ``{{json .Config}}`` printing one as JSON. A value that is not a
    string is written as JSON (true, 42, null). ``\\t`` and ``\\n`` typed
    in a shell's single quotes are a tab and a newline, as in docker."""

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

    return _FIELD.sub(field, template.replace("\\t", "\t").replace("\\n", "\n"))


def table_text(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the header first) as columns padded to their widest cell, three spaces apart."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def print_listing(fmt: str, items: Iterable, *, fields: Callable[[object], dict],
                  columns: Sequence[tuple[str, str]], as_json: Callable[[object], object] | None = None) -> None:
    """Print ``items`` as ``--format`` asks.

    ``fields(item)`` is the item as the table shows it (strings, keyed by
    docker's template names: ``{"ID": ..., "Name": ...}``); ``columns`` the
    table's (HEADING, field) pairs in order; ``as_json(item)`` the item's raw
    JSON object (``fields`` without it)."""
    items = list(items)
    if fmt == "json":
        click.echo(json.dumps([(as_json or fields)(i) for i in items], indent=2))
    elif is_template(fmt):
        for i in items:
            click.echo(render_template(fmt, fields(i)))
    else:
        rows = [tuple(h for h, _ in columns)]
        for i in items:
            f = fields(i)
            rows.append(tuple(str(f[k]) for _, k in columns))
        click.echo(table_text(rows))
