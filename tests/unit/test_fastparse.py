"""The lean parser of ``run``'s flags (commands/fastparse.py) against click's
own parse of the same command line: the same values whenever it answers, and
never an answer where click refuses (then click parses, and its message is
the one the user reads)."""

from __future__ import annotations

import random

import click
import pytest

from minicontainer.commands.fastparse import RUN_ONLY, RUN_OPTIONS, parse_run
from minicontainer.commands.run import run as run_command

pytestmark = pytest.mark.unit


def _click(argv: list[str]):
    try:
        params = dict(run_command.make_context("run", list(argv)).params)
    except click.exceptions.Exit:
        return "exit"  # --help
    except click.ClickException:
        return None
    run_opts = {k: params.pop(k) for k in RUN_ONLY}
    return params.pop("image"), params.pop("command"), run_opts, params


def test_the_table_is_what_click_declares():
    declared = []
    for p in run_command.params:
        if isinstance(p, click.Option):
            kind = "flag" if p.is_flag else "many" if p.multiple else "one"
            assert p.type.name in ("text", "boolean"), f"{p.name}: the lean parser reads only strings and switches"
            assert p.callback is None and p.envvar is None, p.name
            declared.append((p.name, kind, tuple(p.opts + p.secondary_opts)))
    assert list(RUN_OPTIONS) == declared


PLAIN = [
    ["mini"],
    ["mini", "/bin/true"],
    ["--rm", "-m", "32m", "--pids-limit", "16", "mini", "/bin/true"],
    ["-itm32m", "--rm", "-e", "A=1", "-e", "B=2", "mini", "sh", "-c", "echo $A"],
    ["--name=web", "-d", "mini", "sleep", "9"],
    ["-dit", "--name", "x", "mini"],
    ["-m=32m", "mini"],  # click reads the value "=32m" (and the spec refuses it, the same either way)
    ["--", "mini", "--rm"],
    ["--rm", "mini", "--", "ls"],
    ["--name", "--", "mini"],  # a value may look like a flag
    ["-h", "box", "--network", "none", "--net=host", "mini", "-h"],
    ["--dry-run", "--explain", "--userns", "--report", "r.json", "mini"],
    ["-v", "/a:/b:ro", "--volume=/c:/d", "--mount", "type=tmpfs,target=/x", "--tmpfs", "/t", "mini"],
    ["--cap-add", "NET_ADMIN", "--cap-drop=ALL", "--security-opt", "seccomp=unconfined", "-u", "1000", "mini"],
    ["-p", "8080:80", "-P", "--add-host", "a:1.2.3.4", "--dns", "1.1.1.1", "--ip", "10.0.0.2", "mini"],
    ["--entrypoint", "", "mini"],
    ["-", "x"],
]
REFUSED = [
    [], ["--rm"], ["--name"], ["-m"], ["--rm=yes", "mini"], ["--nosuch", "mini"], ["-x", "mini"], ["-iq", "mini"],
    ["--help"], ["-it", "--help", "mini"], ["--"], ["--network-alia", "x", "mini"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_command_lines_are_parsed_as_click_parses_them(argv):
    ours = parse_run(argv)
    assert ours is not None, "the start path would go through click"
    assert ours == _click(argv)


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_what_click_refuses_or_answers_itself_goes_to_click(argv):
    assert parse_run(argv) is None
    assert _click(argv) in (None, "exit")


def test_random_command_lines_agree_with_click():
    words = ["-i", "-t", "-it", "-itd", "-d", "-m", "-m32m", "-itm", "--rm", "--rm=1", "--name", "--name=a", "-e",
             "A=1", "--env", "-h", "--help", "--", "-", "mini", "sh", "-c", "--memory", "--memory=", "-P", "-Pp",
             "80:80", "--userns", "--report=x", "-x", "--net", "--nosuch", "=", "-v", "/a:/b", "-u0", "--init"]
    rng = random.Random(15)
    for _ in range(3000):
        argv = [rng.choice(words) for _ in range(rng.randint(0, 7))]
        ours, theirs = parse_run(argv), _click(argv)
        if ours is not None:
            assert ours == theirs, argv


# -- image import -----------------------------------------------------------------------------------------

from minicontainer.commands.fastparse import parse_image_import  # noqa: E402
from minicontainer.commands.image import import_cmd  # noqa: E402


def _click_import(argv: list[str]):
    try:
        p = import_cmd.make_context("import", list(argv)).params
    except click.exceptions.Exit:
        return "exit"
    except click.ClickException:
        return None
    return p["file"], p["name"], p["force"]


def test_image_import_declares_what_the_lean_parser_reads():
    assert [(p.name, type(p).__name__, tuple(p.opts)) for p in import_cmd.params] == [
        ("file", "Argument", ("file",)), ("name", "Argument", ("name",)), ("force", "Option", ("--force",))]


@pytest.mark.parametrize("argv", [
    ["rootfs.tar", "base"], ["--force", "rootfs.tar", "base"], ["rootfs.tar", "--force", "base"],
    ["rootfs.tar", "base", "--force"], ["-", "base"], ["a b.tar.gz", "base:1"],
])
def test_plain_image_import_is_read_as_click_reads_it(argv):
    assert parse_image_import(argv) == _click_import(argv)


@pytest.mark.parametrize("argv", [
    [], ["rootfs.tar"], ["a", "b", "c"], ["--help"], ["a", "b", "--help"], ["--", "a", "b"], ["-f", "a", "b"],
    ["--force=1", "a", "b"], ["--forc", "a", "b"], ["a", "-x", "b"], ["--force", "--force", "a", "b"],
])
def test_anything_else_of_image_import_goes_to_click(argv):
    assert parse_image_import(argv) is None
