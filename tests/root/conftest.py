"""Root tier: every test runs the real CLI; after each one the host must look
exactly as before (mounts, container processes, cgroups)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from helpers import container_cgroups, foreign_pidns_processes, host_mountinfo, prepare_mc_home


@pytest.fixture(scope="session")
def mc_home(tmp_path_factory):
    """One image store for the session, with the built-in 'mini' image built once."""
    home = tmp_path_factory.mktemp("mchome")
    prepare_mc_home(home)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_host(mc_home, tmp_path, monkeypatch):
    """A fresh state root per test, and a check that nothing leaked."""
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("MINICONTAINER_HOME", str(mc_home))
    mounts = host_mountinfo(mc_home, tmp_path)
    procs = foreign_pidns_processes()
    cgroups = container_cgroups()
    yield tmp_path
    # Containers die with their runtime; give the kernel a moment to reap.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and foreign_pidns_processes() - procs:
        time.sleep(0.05)
    assert foreign_pidns_processes() - procs == set(), "a container process was left running"
    assert host_mountinfo(mc_home, tmp_path) == mounts, "the host's mount table changed"
    assert container_cgroups() - cgroups == set(), "a container's cgroup was left behind"
