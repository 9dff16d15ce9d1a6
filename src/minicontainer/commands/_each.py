"""The "several names" loop of ``rm``, ``image rm``, ``pause`` and ``unpause``.

Like docker, a failure on one name does not stop the others: each name that
worked is echoed on stdout, the failures are collected and raised together
at the end as one :class:`~minicontainer.errors.Failures`, which cli.main
prints one line each. Nothing here prints an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click

from minicontainer.errors import Failures, MiniError


def for_each(names: Iterable[str], fn: Callable[[str], object], *, echo: bool = True) -> None:
    """Call ``fn(name)`` for each name; echo the name when it succeeds
    (unless ``echo`` is False: ``fn`` prints what there is to print)."""
    failures: list[MiniError] = []
    for name in names:
        try:
            fn(name)
        except MiniError as e:
            failures.append(e)
            continue
        if echo:
            click.echo(name)
    if failures:
        raise Failures(failures)


class ExitOneGroup(click.Group):
    """A command group (``image``, ``network``) whose errors leave with exit
    code 1, as docker's do, whatever class they are raised as elsewhere."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MiniError as e:
            e.exit_code = 1
            raise
