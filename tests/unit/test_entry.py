"""main.leave: how both console scripts end (issue 15). It skips the
interpreter's teardown with os._exit, so what the teardown would have done
that a caller can see (the last output, the exit status) must still happen;
and it raises the garbage collector's first threshold for the command."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _leave(body: str, **kw) -> subprocess.CompletedProcess:
    """A process whose command() is ``body`` (indented into a function), ended by leave."""
    code = ("import sys, gc\nfrom minicontainer.main import leave\n"
            "def command():\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "leave(command)\n"
            "print('not reached', file=sys.stderr)\n")
    kw.setdefault("stdout", subprocess.PIPE)
    # stdout buffered, as it is for a pipe unless PYTHONUNBUFFERED says otherwise
    kw["env"] = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, timeout=60, **kw)


def test_unflushed_output_reaches_a_pipe_and_the_returned_status_is_the_exit_status():
    # A pipe makes stdout block-buffered: without the flush in leave, os._exit would drop this.
    p = _leave("print('a line, not flushed')\nsys.stderr.write('to stderr, no newline')\nreturn 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "a line, not flushed\n", "to stderr, no newline")


@pytest.mark.parametrize("exit_arg, status, err", [
    ("None", 0, ""), ("0", 0, ""), ("125", 125, ""), ("'a message'", 1, "a message\n"), ("256 + 7", 7, ""),
])
def test_system_exit_ends_as_python_would_end_it(exit_arg, status, err):
    p = _leave(f"sys.exit({exit_arg})")
    assert (p.returncode, p.stderr) == (status, err)


def test_a_command_returning_nothing_exits_0():
    assert _leave("pass").returncode == 0


def test_a_reader_that_left_gets_141_and_no_traceback():
    # `minicontainer ps | head -0`: the last output's flush meets a closed pipe.
    r, w = os.pipe()
    os.close(r)
    try:
        p = _leave("print('x' * 100)\nreturn 0", stdout=w)
    finally:
        os.close(w)
    assert p.returncode == 141
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


def test_the_collector_runs_rarely_during_the_command_not_never():
    p = _leave("print(gc.isenabled(), gc.get_threshold())")
    assert p.stdout == "True (50000, 10, 10)\n"


def test_the_installed_commands_end_through_leave():
    """pyproject's console scripts are the entry functions (what pip writes
    the launchers from, and what scripts/bench times), not the bare mains."""
    with open(REPO / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts == {"minicontainer": "minicontainer.main:entry",
                       "minicontainer-runc": "minicontainer.oci.cli:entry"}
    for name in ("minicontainer", "minicontainer.oci.cli"):
        p = subprocess.run([sys.executable, "-m", name, "--version"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0 and "version" in p.stdout and p.stderr == ""
