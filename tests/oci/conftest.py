"""oci tier: real engines (podman, docker, containerd's ctr) run their containers
with minicontainer-runc. Each engine gets private state directories, so the
tests run beside any other podman or containerd on the machine; afterwards
no container of ours may be left running or with a cgroup (ocitools.live_containers)."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest

from helpers import prepare_mc_home
from ocitools import live_containers


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory) -> Path:
    """The mini image's root, as a directory and as a tarball for `podman import`."""
    if os.geteuid() != 0:
        pytest.skip("the oci tier needs root (engines run containers as root here)")
    home = tmp_path_factory.mktemp("mchome")
    prepare_mc_home(home)
    images = sorted((home / "images").glob("*/rootfs"))
    assert images, "the mini image was not built"
    return images[0]


@pytest.fixture(scope="session")
def rootfs_tar(rootfs, tmp_path_factory) -> Path:
    tar = tmp_path_factory.mktemp("tar") / "mini.tar"
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    return tar


@pytest.fixture(autouse=True)
def no_leaks():
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and live_containers():
        time.sleep(0.1)
    assert live_containers() == [], "a container of ours was left behind"
