"""Why pivot_root: the classic chroot escape, tried under both (issue 6).

chroot(2) changes only how "/" is resolved for the process; it does not move
the current directory. So a root process can chroot into a subdirectory
while its cwd stays *outside* the new root, climb with "..", which nothing
stops any more, to the real root of the mount namespace, and chroot there:

    mkdir x; chroot x; cd ../../..; chroot .

Under ``--chroot`` the container's mount namespace still holds the host's
whole tree above its root, so the climb ends on the host's "/". Under
pivot_root (the default) the old root was detached: the container's root is
the top of its mount namespace, ".." of "/" is "/" itself, and the same
program finds only the container.

The image has no compiler: the test compiles a tiny static program with
gcc -static (libc6-dev has the static libc) into a copy of ``mini`` used as
a directory image. It reports whether a marker file the test made on the
host is visible.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import mc
from minicontainer.demos.escape import ESCAPE_C  # the program `demo escape` compiles: one copy of it

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def escape_image(mc_home, tmp_path_factory):
    """A copy of mini with /escape (static) in it, as a directory image."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is missing (apt-get install gcc)")
    from minicontainer.images.store import ImageStore

    work = tmp_path_factory.mktemp("escape")
    src = work / "escape.c"
    src.write_text(ESCAPE_C)
    image = work / "image"
    shutil.copytree(ImageStore(mc_home).get("mini").rootfs, image, symlinks=True)
    proc = subprocess.run(["gcc", "-static", "-O2", "-o", str(image / "escape"), str(src)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a static program (the static libc is in libc6-dev): {proc.stderr.strip()[-200:]}")
    yield image
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "host-only-marker"
    m.write_text("on the host\n")
    return m


def test_the_escape_stays_inside_under_pivot_root(escape_image, marker):
    out = mc("run", "--rm", str(escape_image), "/escape", str(marker), check=0).stdout
    assert out.startswith("INSIDE"), out


def test_the_escape_reaches_the_host_under_chroot(escape_image, marker):
    proc = mc("run", "--rm", "--chroot", str(escape_image), "/escape", str(marker), check=0)
    assert proc.stdout.startswith("ESCAPED"), proc.stdout
    assert "escapable" in proc.stderr  # the runtime warned


def test_the_image_copy_is_unchanged(escape_image):
    # /escape-x went to the container's writable layer, not into the image.
    assert not (escape_image / "escape-x").exists()
