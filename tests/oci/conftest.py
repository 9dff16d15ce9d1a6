"""oci tier: real engines (podman, containerd's ctr) run their containers
with minicontainer-runc. Each engine gets private state directories, so the
tests run beside any other podman or containerd on the machine; afterwards
no container process, mount or cgroup of ours may be left."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/helpers.py

from helpers import prepare_mc_home  # noqa: E402

RUNC = shutil.which("minicontainer-runc") or str(Path(sys.executable).parent / "minicontainer-runc")


def apt_install(package: str, binary: str) -> str | None:
    """The project's way to get a tool (scripts/test does the same): apt-get."""
    if shutil.which(binary):
        return shutil.which(binary)
    if os.geteuid() != 0:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0 and shutil.which(binary):
            return shutil.which(binary)
    return shutil.which(binary)


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


# The state roots the engines' minicontainer-runc calls use (--root), registered by the engine fixtures.
ROOTS: list[Path] = []


def live_containers() -> list[str]:
    """Containers of ours whose process or cgroup is still there. (Not the
    host-wide snapshot of the root tier: other engineers' containers come and
    go on this machine while an engine test runs.)"""
    out = []
    for root in ROOTS:
        for state in (root / "containers").glob("*/state.json"):
            cid = state.parent.name
            proc = subprocess.run([RUNC, "--root", str(root), "state", json_name(state)], capture_output=True,
                                  text=True, timeout=30)
            if proc.returncode == 0 and '"stopped"' not in proc.stdout:
                out.append(f"{root}: {cid} still {proc.stdout.split('status')[1][:14]!r}")
            if any(Path(d, "minicontainer", cid).is_dir() for d in Path("/sys/fs/cgroup").iterdir()):
                out.append(f"{root}: {cid}'s cgroup is left")
    return out


def json_name(state: Path) -> str:
    import json

    return json.loads(state.read_text())["name"]


@pytest.fixture(autouse=True)
def no_leaks():
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and live_containers():
        time.sleep(0.1)
    assert live_containers() == [], "a container of ours was left behind"
