"""cli.py: every command has --help; bad input is one line, exit 125, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from minicontainer.cli import COMMANDS, cli

pytestmark = pytest.mark.unit


def all_command_paths():
    """Every command and subcommand that exists, as argument lists."""
    import click

    paths = [[]]
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        paths.append([name])
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                paths.append([name, sub])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "minicontainer")
def test_help_of_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_basic_commands_exist():
    names = cli.list_commands(None)
    for required in ("run", "ps", "rm"):
        assert required in names
    assert set(names) <= set(COMMANDS)


def run_cli(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "minicontainer", *args], capture_output=True, text=True, timeout=60, env=e)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--name", "../x", "mini"],
        ["run", "--nosuchflag", "mini"],
        ["run"],
        ["run", "-e", "BAD NAME=1", "mini"],
        ["rm"],
        ["nosuchcommand"],
        ["ps", "--format", "xml"],
        ["run", "--device", "/dev/no-such-device", "mini"],
        ["run", "--device", "/etc/passwd", "mini"],
        ["run", "--device", "/dev/null:/dev/x:rwq", "mini"],
        ["run", "--device", "/dev/null:relative", "mini"],
    ],
)
def test_bad_input_is_one_line(args, tmp_path):
    proc = run_cli(*args, env={"MINICONTAINER_HOME": str(tmp_path / "h"), "MINICONTAINER_ROOT": str(tmp_path / "r")})
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicontainer: error:"), proc.stderr
    assert not (tmp_path / "h").exists() and not (tmp_path / "r").exists()


def test_rm_of_several_names_reports_each_failure(tmp_path, monkeypatch, capsys):
    from minicontainer.cli import main

    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "r"))
    with pytest.raises(SystemExit) as e:
        main(["rm", "nosuch1", "nosuch2"])
    out, err = capsys.readouterr()
    assert e.value.code == 125 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("minicontainer: error: no such container: nosuch1 (hint: ")
    assert lines[1].startswith("minicontainer: error: no such container: nosuch2 (hint: ")


@pytest.mark.parametrize("layer", ["minicontainer.cgroups.resources", "minicontainer.security.config",
                                   "minicontainer.security", "minicontainer.cgroups.devices"])
def test_run_fails_closed_when_a_layer_cannot_be_imported(layer, tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import` raise ImportError, as a broken build would
    from minicontainer.cli import main

    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "r"))
    monkeypatch.setitem(sys.modules, layer, None)
    with pytest.raises(SystemExit) as e:
        main(["run", "--dry-run", "mini", "true"])  # no limit or security flag given: still refused
    out, err = capsys.readouterr()
    assert e.value.code == 125 and out == ""
    assert err.startswith("minicontainer: error: part of minicontainer cannot be loaded, so nothing was started: ")
    assert layer in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "pivot_root" not in err


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("--debug", "run", "--name", "../x", "mini")
    assert "Traceback" in proc.stderr


def test_run_does_not_import_heavy_modules():
    code = (
        "import sys, minicontainer.cli, minicontainer.commands.run, minicontainer.container.runtime, minicontainer.container.process;"
        "print(sorted(m for m in ('pyroute2', 'psutil') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dry_run_works_without_root_and_creates_nothing(tmp_path):
    env = {"MINICONTAINER_HOME": str(tmp_path / "h"), "MINICONTAINER_ROOT": str(tmp_path / "r")}
    proc = run_cli("run", "--dry-run", "--name", "t", "mini", "echo", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "pivot_root" in proc.stderr and "exec echo hi" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("module, argv", [
    ("minicontainer.commands.runspec", ["run", "--dry-run", "mini", "true"]),  # the lean parser's path
    ("minicontainer.commands.run", ["run", "--rm=1", "mini"]),  # click's (a flag the lean parser leaves to it)
    ("minicontainer.commands.ps", ["ps"]),
])
def test_a_command_module_that_cannot_be_imported_is_a_refusal(module, argv, monkeypatch, capsys):
    # Not "No such command": the install is broken, and the user is told so.
    from minicontainer.cli import main

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 125
    assert err.startswith("minicontainer: error: part of minicontainer cannot be loaded") and module in err


def test_version_is_what_click_prints_without_importing_click():
    """main.py answers --version itself (the bench's floor of a command):
    the same line as click's version_option in cli.py."""
    from click.testing import CliRunner

    from minicontainer.cli import cli

    clicks = CliRunner().invoke(cli, ["--version"]).output
    code = ("import sys; from minicontainer.main import main\ntry:\n    main(['--version'])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'click' in sys.modules)")
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ours == clicks + "exit 0 False\n"
