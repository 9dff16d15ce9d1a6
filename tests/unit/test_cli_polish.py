"""CLI polish: Ctrl-C's one line, the seccomp step's why as sentences."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "Abort"])
def test_ctrl_c_prints_one_line_of_ours(raised, monkeypatch, capsys, mc_dirs):
    import click

    from minicontainer.cli import main
    from minicontainer.container.state import StateStore

    def interrupted(self):
        raise KeyboardInterrupt() if raised == "KeyboardInterrupt" else click.exceptions.Abort()

    monkeypatch.setattr(StateStore, "list", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["ps"])
    _, err = capsys.readouterr()
    assert e.value.code == 130
    # (click starts a new line first, after the terminal's ^C)
    assert err.lstrip("\n") == "minicontainer: interrupted\n" and "Aborted" not in err


def seccomp_step(**opts):
    from minicontainer.container import steps as S
    from minicontainer.security.config import parse_security
    from minicontainer.security.steps import security_steps

    steps = security_steps(parse_security(**opts), last_cap=40, bounding=(1 << 41) - 1, arch="x86_64")
    return next(s for s in steps.inside if isinstance(s, S.InstallSeccomp))


def test_the_seccomp_why_reads_as_sentences():
    why = seccomp_step().why()
    assert "ALLOW" not in why and ": ALLOW" not in why
    assert why.endswith(".")
    assert "A call it does not list is allowed; a call made through another architecture kills the process" in why
    assert "an x32 call (nr >= 0x40000000) fails with EPERM." in why
    for sentence in re.split(r"(?<=\.) ", why):
        assert sentence[0].isupper() or sentence.startswith("seccomp(2)"), sentence


def test_a_docker_style_profile_reads_as_sentences_too(tmp_path):
    import json

    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO",
                                   "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}))
    why = seccomp_step(security_opt=(f"seccomp={profile}",)).why()
    assert "A call it does not list fails with EPERM; a call made through another architecture fails with EPERM" in why


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_come_from_click(shell):
    from click.testing import CliRunner

    from minicontainer.cli import cli

    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert "_MINICONTAINER_COMPLETE" in result.output and f"{shell}_complete" in result.output


def complete(words: str, env) -> list[str]:
    """What bash's completion gets back for the words typed so far."""
    import os
    import subprocess
    import sys

    e = {**os.environ, **env, "_MINICONTAINER_COMPLETE": "bash_complete", "COMP_WORDS": words,
         "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    out = subprocess.run([sys.executable, "-m", "minicontainer"], env=e, capture_output=True, text=True, timeout=60)
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if "," in line]


def test_completion_offers_commands_container_and_image_names(mc_dirs):
    from minicontainer.container.state import ContainerState, StateStore

    home, root = mc_dirs
    env = {"MINICONTAINER_HOME": str(home), "MINICONTAINER_ROOT": str(root)}
    StateStore().reserve(ContainerState(id="ab" * 32, name="webserver", image="mini", status="exited"))
    assert "doctor" in complete("minicontainer d", env) and "diff" in complete("minicontainer d", env)
    assert complete("minicontainer rm we", env) == ["webserver"]
    assert complete("minicontainer run mi", env) == ["mini"]
    assert "--memory" in complete("minicontainer run --mem", env)


def test_completion_offers_network_names(mc_dirs):
    from minicontainer.network.store import NetworkStore

    home, root = mc_dirs
    env = {"MINICONTAINER_HOME": str(home), "MINICONTAINER_ROOT": str(root)}
    NetworkStore(home / "networks").define("app-net", subnet="10.89.0.0/24")
    assert complete("minicontainer network rm ap", env) == ["app-net"]
    assert complete("minicontainer network connect ap", env) == ["app-net"]
    assert complete("minicontainer run --network b", env) == ["bridge"]
    assert complete("minicontainer run --network a", env) == ["app-net"]


# Every flag of run, with a value where it takes one: --dry-run changes
# nothing, so none of them may need root (limits and bridge networks, which
# a rootless run refuses, are shown as root would run them).
DRY_RUN_FLAGS = [
    ["-m", "64m"], ["--memory-swap", "128m", "-m", "64m"], ["--cpus", "0.5"], ["--pids-limit", "10"],
    ["--cpuset-cpus", "0"], ["--network", "bridge"], ["--network", "none"], ["--network", "host"],
    ["-v", "/tmp:/x:ro"], ["--tmpfs", "/scratch"], ["--read-only"], ["--privileged"],
    ["--cap-add", "NET_ADMIN"], ["--cap-drop", "ALL"], ["--device", "/dev/null"], ["--init"], ["-d"], ["-t"],
    ["--restart", "always", "-d"], ["--ulimit", "nofile=10:10"], ["-e", "A=1"], ["-w", "/tmp"], ["-u", "nobody"],
    ["--hostname", "h"], ["--security-opt", "no-new-privileges=false"], ["--pid", "host"], ["--rm"],
]


@pytest.mark.parametrize("flags", DRY_RUN_FLAGS, ids=lambda f: " ".join(f))
def test_dry_run_works_without_root_for_every_flag(flags, monkeypatch, capsys, mc_dirs):
    from minicontainer.cli import main
    from minicontainer.container import userns

    monkeypatch.setattr(userns, "host_uid", lambda proc="/proc": 1000)
    with pytest.raises(SystemExit) as e:
        main(["run", "--dry-run", *flags, "mini", "true"])
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert err.rstrip().endswith(" true") and "minicontainer: error" not in err
    as_root = "you are not root: this is the plan of a run as root" in err
    assert as_root == (flags[0] in ("-m", "--memory-swap", "--cpus", "--pids-limit", "--cpuset-cpus")
                       or flags in (["--network", "bridge"], ["--pid", "host"]))
    assert not mc_dirs[1].exists()  # no state dir: nothing was created


def test_an_image_name_that_exists_gets_a_hint_naming_force(monkeypatch, capsys, mc_dirs, tmp_path):
    import io
    import tarfile

    from minicontainer.cli import main

    tar = tmp_path / "t.tar"
    with tarfile.open(tar, "w") as tf:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(SystemExit) as e:
        main(["image", "import", str(tar), "t1"])
    assert e.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["image", "import", str(tar), "t1"])
    err = capsys.readouterr().err
    assert e.value.code == 1
    assert err == ("minicontainer: error: image t1 already exists (hint: add --force to replace it, "
                   "or remove it first with 'minicontainer image rm t1')\n")
    with pytest.raises(SystemExit) as e:
        main(["image", "import", "--force", str(tar), "t1"])
    assert e.value.code == 0
