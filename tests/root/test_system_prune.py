"""system df and system prune on real containers, in a store of the test's own (prune -a empties it)."""

from __future__ import annotations

import json

import pytest

from helpers import mc, prepare_mc_home

pytestmark = pytest.mark.root


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    prepare_mc_home(home)
    monkeypatch.setenv("MINICONTAINER_HOME", str(home))
    return home


def test_prune_removes_stopped_containers_and_unused_images(own_home, tmp_path):
    mc("run", "--name", "done", "mini", "sh", "-c", "head -c 200000 /dev/zero > /big", check=0)
    done_id = json.loads(mc("inspect", "done", check=0).stdout)[0]["Id"]
    mc("run", "-d", "--name", "live", "mini", "sleep", "100", check=0)
    try:
        df = {r["type"]: r for r in json.loads(mc("system", "df", "--format", "json", check=0).stdout)}
        assert (df["Containers"]["total"], df["Containers"]["active"]) == (2, 1)
        assert df["Containers"]["reclaimable"] >= 200000  # the exited one's upper layer
        assert (df["Images"]["total"], df["Images"]["active"]) == (1, 1)

        out = mc("system", "prune", "-a", "-f", check=0).stdout
        assert out.startswith(f"Deleted Containers:\n{done_id}\n\n")
        total = out.strip().splitlines()[-1]
        assert total.startswith("Total reclaimed space: ") and total.endswith("kB")
        names = mc("ps", "-a", "--format", "{{.Names}}", check=0).stdout.split()
        assert names == ["live"]
        assert not (own_home / "containers" / done_id).exists()
        # mini stays: a container (running) uses it
        assert mc("image", "ls", "--format", "{{.Name}}", check=0).stdout == "mini\n"
    finally:
        mc("rm", "-f", "live")
    mc("system", "prune", "-a", "-f", check=0)
    assert mc("image", "ls", "-q", check=0).stdout == ""  # nothing uses it now
    layers = own_home / "layers"
    assert not layers.exists() or not any(layers.iterdir())
