"""Root tier, against Debian's real docker (docker.io): images that docker
builds load and run here, and images saved here load and run in docker.

The module starts a private dockerd of its own with scripts/docker/dockerd.sh
(the code scripts/docker-test uses): --bridge=none --iptables=false, its
socket, data root, exec root and pid file in a temp dir, stopped at the end.
No registry: the base image is ``docker import`` of a tarball of 'mini'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import mc
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
DOCKERD = REPO / "scripts/docker/dockerd.sh"
TAG = f"mcl{os.getpid()}"  # the names of this session's images, in docker and here

# The second layer deletes a file and replaces a directory: docker writes a
# whiteout (.wh.gone) and an opaque directory (.wh..wh..opq) into its tar.
DOCKERFILE = """\
FROM {base}
RUN mkdir -p /data/old /data/keep && echo old > /data/old/f && echo k > /data/keep/k && echo bye > /etc/gone
RUN rm /etc/gone && rm -rf /data/old && mkdir /data/old && echo new > /data/old/g
ENV GREETING=hello
WORKDIR /data
CMD ["/bin/sh", "-c", "echo $GREETING; pwd; ls /data/old /data/keep; test -e /etc/gone || echo gone"]
"""
EXPECTED = "hello\n/data\n/data/keep:\nk\n\n/data/old:\ng\ngone\n"


@pytest.fixture(scope="module")
def docker(mc_home):
    """A private dockerd; yields a function running Debian's docker CLI against it."""
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        pytest.skip("docker.io is not installed and apt-get is missing to install it")
    # short: containerd's sockets live under the exec root (sun_path is 108 bytes)
    work = tempfile.mkdtemp(prefix="mcd-", dir="/tmp")
    started = subprocess.run([str(DOCKERD), "start", work], capture_output=True, text=True, timeout=300)
    if started.returncode == 125:
        shutil.rmtree(work, ignore_errors=True)
        pytest.skip(f"docker.io cannot run on this host: {started.stderr.strip()[-300:]}")
    assert started.returncode == 0, started.stderr
    env = dict(os.environ, DOCKER_HOST=started.stdout.strip())
    cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"  # Debian's, matching its daemon

    def run(*args, check=True, timeout=300):
        proc = subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
        return proc

    try:
        yield run
    finally:
        subprocess.run([str(DOCKERD), "stop", work], timeout=60)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def built(docker, mc_home, tmp_path_factory):
    """``docker import`` mini as a base, ``docker build`` two images on it,
    ``docker save`` each: {name: archive}."""
    work = tmp_path_factory.mktemp("docker-build")
    rootfs = ImageStore(mc_home).get("mini").rootfs
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(work / "mini.tar"), "."], check=True)
    docker("import", str(work / "mini.tar"), f"{TAG}-base:1")
    out = {}
    for name, dockerfile in (
        (f"{TAG}-a:1", DOCKERFILE.format(base=f"{TAG}-base:1")),
        (f"{TAG}-b:1", f"FROM {TAG}-base:1\nRUN echo b > /b\nCMD [\"cat\", \"/b\"]\n"),
    ):
        ctx = work / name.replace(":", "-")
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        docker("build", "-q", "-t", name, str(ctx))
        docker("save", "-o", str(ctx / "saved.tar"), name)
        out[name] = ctx / "saved.tar"
    return out


@pytest.fixture
def loaded(built):
    names = []

    def _load(name: str) -> str:
        proc = mc("image", "load", "-i", str(built[name]), check=0)
        names.append(name)
        return proc.stdout

    yield _load
    for name in names:
        mc("image", "rm", name)


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def test_a_docker_built_image_runs_with_its_whiteouts_and_config(loaded):
    out = loaded(f"{TAG}-a:1")
    assert f"Loaded image: {TAG}-a:1" in out and "(3 new layers)" in out
    assert mc("run", "--rm", f"{TAG}-a:1", check=0).stdout == EXPECTED
    rows = mc("image", "history", f"{TAG}-a:1", check=0).stdout
    assert "rm /etc/gone" in rows and "WORKDIR /data" in rows


def test_two_images_on_one_base_store_it_once(loaded, mc_home):
    store = ImageStore(mc_home)
    loaded(f"{TAG}-a:1")
    out = loaded(f"{TAG}-b:1")
    assert "(1 new layer, 1 shared)" in out
    a, b = store.get(f"{TAG}-a:1"), store.get(f"{TAG}-b:1")
    assert a.stack[-1] == b.stack[-1]  # the same directory for the base layer
    layers = set(a.stack) | set(b.stack)
    assert len(layers) == 4  # base + two of a + one of b
    base = _du(a.stack[-1])
    assert _du(store.layers_dir) < base * 1.2  # the base once, not twice
    assert mc("run", "--rm", f"{TAG}-b:1", check=0).stdout == "b\n"


def test_saved_here_loads_and_runs_the_same_in_docker(loaded, docker, tmp_path):
    loaded(f"{TAG}-a:1")
    saved = tmp_path / "saved.tar"
    mc("image", "save", "-o", str(saved), f"{TAG}-a:1", check=0)
    docker("rmi", f"{TAG}-a:1")
    docker("load", "-i", str(saved))
    ours = mc("run", "--rm", f"{TAG}-a:1", check=0).stdout
    theirs = docker("run", "--rm", "--network", "none", f"{TAG}-a:1").stdout
    assert ours == theirs == EXPECTED
    # a flat image is saved as one layer with a config of its own
    mc("image", "save", "-o", str(tmp_path / "mini.tar"), "mini", check=0)
    docker("load", "-i", str(tmp_path / "mini.tar"))
    assert docker("run", "--rm", "--network", "none", "mini", "echo", "flat").stdout == "flat\n"
    docker("rmi", "mini")
