"""Root tier, against Debian's podman: an image saved here with ``image save
--format oci`` loads in podman (``podman load``) and runs there as it runs here.

podman gets storage of its own (--root/--runroot in a temp dir, reset at the
end), no network, cgroupfs, and runc (crun refuses this hybrid host's
cgroups); the image is a hand-made three-layer one (a base holding 'mini', a
layer with files, a layer with a whiteout and an opaque directory) and a
config with Env, WorkingDir and Cmd.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from helpers import mc
from imagetools import MIDDLE, TOP, dir_layer, docker_archive
from minicontainer.images.store import ImageStore
from ocitools import apt_install

pytestmark = pytest.mark.root

CMD = ["/bin/sh", "-c", "echo $GREETING; pwd; ls /data/old /data/keep; test -e /etc/gone || echo gone"]
EXPECTED = "hello\n/data\n/data/keep:\nk\n\n/data/old:\ng\ngone\n"


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    binary = apt_install("podman", "podman")
    runc = shutil.which("runc") or apt_install("runc", "runc")
    if not (binary and runc) and os.environ.get("MINICONTAINER_IN_DOCKER"):
        # the docker tier's image is built offline, with the suite's own packages only
        pytest.skip("podman is not in the docker tier's image and apt-get cannot reach a mirror there")
    assert binary and runc, "podman and runc are installed by scripts/test (apt-get)"
    d = tmp_path_factory.mktemp("podman")
    base = [binary, "--root", str(d / "storage"), "--runroot", str(d / "run"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", runc]

    def run(*args, check=0, timeout=180):
        if args[:1] == ("run",):
            args = ("run", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                    *args[1:])
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"podman {args}: exit {proc.returncode}: {proc.stdout} {proc.stderr}"
        return proc

    yield run
    run("rm", "-a", "-f", check=None)
    run("system", "reset", "-f", check=None)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def layered(mc_home, tmp_path):
    archive = docker_archive(tmp_path / "a.tar", [dir_layer(ImageStore(mc_home).get("mini").rootfs), MIDDLE, TOP], "laypod:1",
                             Env=["GREETING=hello"], WorkingDir="/data", Cmd=CMD)
    mc("image", "load", "-i", str(archive), check=0)
    yield "laypod:1"
    mc("image", "rm", "laypod:1")


def test_saved_as_oci_loads_and_runs_the_same_in_podman(podman, layered, tmp_path):
    saved = tmp_path / "oci.tar"
    mc("image", "save", "--format", "oci", "-o", str(saved), layered, check=0)
    loaded = podman("load", "-i", str(saved)).stdout
    assert "Loaded image: docker.io/library/laypod:1" in loaded
    ours = mc("run", "--rm", layered, check=0).stdout
    theirs = podman("run", "--rm", "laypod:1").stdout
    assert ours == theirs == EXPECTED
    # a flat image is saved as one layer with a config of its own
    mc("image", "save", "--format", "oci", "-o", str(tmp_path / "mini.tar"), "mini", check=0)
    podman("load", "-i", str(tmp_path / "mini.tar"))
    assert podman("run", "--rm", "docker.io/library/mini", "echo", "flat").stdout == "flat\n"
