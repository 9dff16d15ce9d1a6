"""diff, export and cp of a container whose image is layered (a stack of lower layers
with a whiteout and an opaque directory of their own), through the real CLI."""

from __future__ import annotations

import tarfile

import pytest

from helpers import mc
from imagetools import MIDDLE, TOP, dir_layer, docker_archive
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.root

CHANGES = "echo x > /data/keep/new; rm /data/keep/k; echo y > /etc/added; rm /data/old/g"


@pytest.fixture
def layered(mc_home, tmp_path):
    base = dir_layer(ImageStore(mc_home).get("mini").rootfs)
    mc("image", "load", "-i", str(docker_archive(tmp_path / "a.tar", [base, MIDDLE, TOP], "lay-dx:1")),
       check=0)
    mc("run", "--name", "laydx", "lay-dx:1", "sh", "-c", CHANGES, check=0)
    yield "laydx"
    mc("rm", "-f", "laydx")
    mc("image", "rm", "lay-dx:1")


def test_diff_of_a_container_on_a_layered_image(layered):
    changes = mc("diff", layered, check=0).stdout.splitlines()
    # the image's own whiteout (/etc/gone) and opaque directory (/data/old/f) are the
    # image, not changes: only what the container did shows
    assert changes == ["C /data", "C /data/keep", "D /data/keep/k", "A /data/keep/new", "C /data/old",
                       "D /data/old/g", "C /etc", "A /etc/added"]


def test_export_of_a_container_on_a_layered_image(layered, tmp_path):
    out = tmp_path / "c.tar"
    mc("export", layered, str(out), check=0)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert tf.extractfile("data/keep/new").read() == b"x\n"
        assert tf.extractfile("etc/added").read() == b"y\n"
    assert "bin/sh" in names  # from the bottom layer
    assert "data/old" in names and not any(n.startswith("data/old/") for n in names)  # f hidden, g deleted
    assert "etc/gone" not in names and "data/keep/k" not in names
    assert not any(".wh." in n for n in names)
    # and it imports back as a flat image that runs the same
    mc("image", "import", str(out), "lay-dx-flat", check=0)
    try:
        shown = mc("run", "--rm", "lay-dx-flat", "sh", "-c", "ls /data/old /data/keep; cat /etc/added", check=0)
        assert shown.stdout.split() == ["/data/keep:", "new", "/data/old:", "y"]
    finally:
        mc("image", "rm", "lay-dx-flat")


def test_cp_out_of_an_exited_container_on_a_layered_image(layered, tmp_path):
    mc("cp", f"{layered}:/data/keep/new", str(tmp_path / "new"), check=0)
    mc("cp", f"{layered}:/bin/busybox", str(tmp_path / "bb"), check=0)  # the bottom layer, through the stack
    assert (tmp_path / "new").read_text() == "x\n" and (tmp_path / "bb").stat().st_size > 0
