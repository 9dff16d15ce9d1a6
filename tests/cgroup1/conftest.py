"""Fixtures for the end-to-end tests of this tier (test_run_limits.py), the
same as tests/root/conftest.py's but not autouse: the manager tests here
(test_cgroup_manager_v1.py) fork plain processes and need no image.

A module opts in with ``pytestmark = pytest.mark.usefixtures("clean_host")``.
"""

from __future__ import annotations

import shutil

import pytest

from helpers import HostSnapshot, prepare_mc_home
from runtools import containers  # noqa: F401 - the tier's fixture, shared with the other cgroup tier


@pytest.fixture(scope="session")
def mc_home(tmp_path_factory):
    """One image store for the session, with the built-in 'mini' image built once."""
    home = tmp_path_factory.mktemp("mchome")
    prepare_mc_home(home)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def clean_host(mc_home, tmp_path, monkeypatch):
    """A fresh state root per test; afterwards no container process, mount or
    cgroup named minicontainer may be left that was not there before."""
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("MINICONTAINER_HOME", str(mc_home))
    before = HostSnapshot(mc_home, tmp_path)
    yield tmp_path
    leaks = before.leaks()
    assert not leaks, leaks
