"""README's reference is kept true to the CLI: every command, subcommand and
long flag that ``--help`` shows is named in README.md (and a flag the README
names for a command that no longer has it would show up in review, not here:
prose may name Docker's flags for comparison)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from minicontainer.cli import cli

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def walk(cmd, path):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), [*path, name])


COMMANDS = [(" ".join(path), cmd) for path, cmd in walk(cli, [])]


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS if p], ids=str)
def test_every_command_is_in_the_readme(path):
    # `minicontainer image ls` or, in a table of the image commands, `image ls ...`
    pattern = rf"(minicontainer |`){re.escape(path)}(?![\w-])"
    assert re.search(pattern, README), f"README.md does not mention `minicontainer {path}`"


FLAGS = [
    (path, longs)
    for path, cmd in COMMANDS
    for param in cmd.params
    if isinstance(param, click.Option) and not param.hidden
    for longs in [[o for o in param.opts + param.secondary_opts if o.startswith("--")]]
    if longs and longs != ["--help"]
]


@pytest.mark.parametrize(("path", "longs"), FLAGS, ids=[f"{p or 'minicontainer'} {l[0]}" for p, l in FLAGS])
def test_every_flag_is_in_the_readme(path, longs):
    found = any(re.search(re.escape(flag) + r"(?![\w-])", README) for flag in longs)
    assert found, f"README.md does not mention {' or '.join(longs)} of `minicontainer {path}`"
