"""``minicontainer volume ...`` through the CLI (click's runner): no root, a temp store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from minicontainer.cli import cli

pytestmark = pytest.mark.unit


@pytest.fixture
def run(mc_dirs):
    home, root = mc_dirs

    def invoke(*args):
        return CliRunner().invoke(cli, ["volume", *args])

    return invoke


def _used_by(mc_dirs, cid: str, name: str, volume: str) -> None:
    d = mc_dirs[1] / "containers" / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"name": name}))
    (d / "config.json").write_text(json.dumps({"named_volumes": [{"name": volume, "anonymous": False}]}))


def test_create_ls_inspect_rm(run, mc_dirs):
    assert run("create", "web-data").output == "web-data\n"
    made = run("create").output.strip()
    assert len(made) == 64
    assert run("ls", "-q").output.split() == sorted(["web-data", made])
    table = run("ls").output.splitlines()
    assert table[0].split()[:3] == ["DRIVER", "VOLUME", "NAME"] and any("web-data" in line for line in table)
    rows = json.loads(run("ls", "--format", "json").output)
    web = next(r for r in rows if r["Name"] == "web-data")
    assert web["Mountpoint"] == f"{mc_dirs[0]}/volumes/web-data/_data" and web["UsedBy"] == []
    assert not web["Anonymous"] and web["Driver"] == "local"
    info = json.loads(run("inspect", "web-data").output)
    assert info[0]["Name"] == "web-data" and info[0]["CreatedAt"].endswith("Z")
    assert run("rm", "web-data", made).output.split() == ["web-data", made]
    assert run("ls", "-q").output == ""


def test_in_use_filters_and_errors(run, mc_dirs):
    run("create", "busy")
    run("create", "idle")
    _used_by(mc_dirs, "c1", "db", "busy")
    assert run("ls", "-q", "--filter", "dangling=true").output.split() == ["idle"]
    assert run("ls", "-q", "-f", "dangling=false").output.split() == ["busy"]
    assert run("ls", "-q", "-f", "name=bu").output.split() == ["busy"]
    r = run("rm", "busy")
    assert r.exit_code == 1 and "in use by container db" in str(r.exception)
    assert run("rm", "-f", "nosuch").exit_code == 0
    r = run("rm", "nosuch")
    assert r.exit_code == 1 and "no such volume" in str(r.exception)
    for bad in (["create", "a/b"], ["create", "busy"], ["ls", "-f", "dangling=maybe"],
                ["inspect", "nosuch"]):
        assert run(*bad).exit_code == 1, bad
    r = run("ls", "--format", "yaml")  # a flag error, as every listing's (125 from the CLI)
    assert r.exit_code == 2 and "Invalid value for '--format': 'yaml'" in r.output
    assert run("ls", "--format", "{{.Name}}={{.UsedBy}}").output.split() == ["busy=db", "idle=-"]


def test_prune_keeps_named_ones_unless_all(run, mc_dirs):
    from minicontainer.volumes import VolumeStore

    VolumeStore(mc_dirs[0] / "volumes").create("a" * 64, anonymous=True)
    run("create", "named")
    out = run("prune", "-f").output
    assert "a" * 64 in out.split() and "Total reclaimed space" in out
    assert run("ls", "-q").output.split() == ["named"]
    assert "named" in run("prune", "-a", "-f").output.split()
    assert run("ls", "-q").output == ""


def test_volume_names_complete(run):
    from minicontainer.commands.volume import complete_volumes

    run("create", "web-data")
    run("create", "db-data")
    assert complete_volumes(None, None, "w") == ["web-data"]
    assert complete_volumes(None, None, "") == ["db-data", "web-data"]
