"""The VM tier's fixtures: one image store per module, and a check after each
test that nothing is left on the host (mounts, container processes, cgroups,
controllers enabled in the root's subtree_control)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cgtools import scale
from helpers import HostSnapshot, prepare_mc_home
from runtools import containers  # noqa: F401 - the tier's fixture, shared with the other cgroup tier

ROOT = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def mc_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("mchome")
    prepare_mc_home(home, timeout=scale(60))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def clean_host(mc_home, tmp_path, monkeypatch):
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("MINICONTAINER_HOME", str(mc_home))
    subtree = (ROOT / "cgroup.subtree_control").read_text().split()
    before = HostSnapshot(mc_home, tmp_path)
    yield tmp_path
    leaks = before.leaks(settle=scale(2))
    # The runtime enables controllers in the root's subtree_control (as runc
    # does); hand back what we found, where nothing below still uses it.
    for c in set((ROOT / "cgroup.subtree_control").read_text().split()) - set(subtree):
        try:
            (ROOT / "cgroup.subtree_control").write_text(f"-{c}")
        except OSError:
            pass
    assert not leaks, leaks
