"""Root tier: layered images through the real CLI, from archives made by
hand (tests/imagetools.py) on top of a layer holding 'mini'.

- a whiteout hides a file of a lower layer and an opaque directory hides
  the lower directory's contents, in a real overlay with a lowerdir stack;
- the image config decides the command, environment, working directory and
  user of ``run``;
- layers are shared, kept while a container uses their image, and removed
  with the last image; a hostile layer refuses the whole archive and
  leaves nothing in the store.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import PY, mc
from imagetools import D, F, H, MIDDLE, TOP, dir_layer, docker_archive, layer, oci_layout, sha
from minicontainer.images.safetree import OPAQUE_XATTR
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.root

SHOW = "ls /data/old; ls /data/keep; test -e /etc/gone || echo 'gone'"


@pytest.fixture(scope="module")
def mini_layer(mc_home) -> bytes:
    """The built-in 'mini' image as a layer tar: a base with a shell."""
    return dir_layer(ImageStore(mc_home).get("mini").rootfs)


@pytest.fixture
def load(tmp_path):
    """``image load -i ARCHIVE``; every image loaded is removed afterwards."""
    names = []

    def _load(path: Path, *extra: str, check: int = 0):
        proc = mc("image", "load", "-i", str(path), *extra, check=check)
        names.extend(line.split()[2] for line in proc.stdout.splitlines() if line.startswith("Loaded image:"))
        return proc

    yield _load
    for name in names:
        mc("image", "rm", name)


def _layers(store: ImageStore) -> set[str]:
    return set(os.listdir(store.layers_dir)) if store.layers_dir.exists() else set()


def test_whiteouts_and_opaque_directories_in_a_run(mini_layer, load, tmp_path, mc_home):
    load(docker_archive(tmp_path / "a.tar", [mini_layer, MIDDLE, TOP], "lay-wh:1"))
    store = ImageStore(mc_home)
    top = store.layer_dir(sha(TOP))
    assert os.getxattr(top / "data/old", OPAQUE_XATTR) == b"y"
    out = mc("run", "--rm", "lay-wh:1", "sh", "-c", SHOW, check=0).stdout
    assert out.split() == ["g", "k", "gone"]  # f hidden by the opaque dir, /etc/gone by its whiteout
    info = json.loads(mc("image", "inspect", "lay-wh:1", check=0).stdout)
    assert info["lowers"] == [str(store.layer_dir(sha(x))) for x in (TOP, MIDDLE, mini_layer)]
    plan = mc("run", "--dry-run", "lay-wh:1", "true", check=0).stderr
    assert "lowerdir=lower:lower-1:lower-2,upperdir=upper,workdir=work" in plan


def test_the_image_config_drives_run(mini_layer, load, tmp_path):
    load(docker_archive(tmp_path / "c.tar", [mini_layer], "lay-cfg", Entrypoint=["/bin/sh", "-c"],
                        Cmd=['echo "$GREETING $(pwd) $(id -u)"'], Env=["GREETING=hello"],
                        WorkingDir="/tmp", User="65534"))
    assert mc("run", "--rm", "lay-cfg", check=0).stdout == "hello /tmp 65534\n"
    # arguments replace Cmd; -e, -w and -u win over the image's
    out = mc("run", "--rm", "-e", "GREETING=bye", "-w", "/", "-u", "0", "lay-cfg",
             'echo "$GREETING $(pwd) $(id -u)"', check=0).stdout
    assert out == "bye / 0\n"
    assert mc("run", "--rm", "--entrypoint", "/bin/echo", "lay-cfg", "plain", check=0).stdout == "plain\n"


def test_layers_are_shared_kept_while_used_and_removed_with_the_last_image(mini_layer, load, tmp_path, mc_home):
    store = ImageStore(mc_home)
    before = _layers(store)
    load(docker_archive(tmp_path / "a.tar", [mini_layer, MIDDLE], "lay-a"))
    out = load(oci_layout(tmp_path / "oci", [mini_layer, TOP], "lay-b", compression="gzip")).stdout
    assert "(1 new layer, 1 shared)" in out
    assert _layers(store) - before == {sha(x)[7:] for x in (mini_layer, MIDDLE, TOP)}
    mc("run", "--name", "lay-user", "lay-a", "true", check=0)
    try:
        refused = mc("image", "rm", "lay-a")
        assert refused.returncode == 1 and "used by container lay-user" in refused.stderr
    finally:
        mc("rm", "lay-user", check=0)
    mc("image", "rm", "lay-a", check=0)
    assert _layers(store) - before == {sha(x)[7:] for x in (mini_layer, TOP)}  # MIDDLE was lay-a's alone
    mc("image", "rm", "lay-b", check=0)
    assert _layers(store) == before


def test_load_from_stdin_and_save_to_stdout(mini_layer, load, tmp_path):
    archive = docker_archive(tmp_path / "a.tar", [mini_layer, MIDDLE, TOP], "lay-io")
    with open(archive, "rb") as f:
        proc = mc("image", "load", stdin=f, check=0)
    assert "Loaded image: lay-io " in proc.stdout
    saved = tmp_path / "saved.tar"
    with open(saved, "wb") as f:
        code = subprocess.run([PY, "-m", "minicontainer", "image", "save", "--format", "oci", "lay-io"],
                              stdout=f, timeout=60).returncode
    mc("image", "rm", "lay-io", check=0)
    assert code == 0
    load(saved, "--tag", "lay-io2")
    assert mc("run", "--rm", "lay-io2", "sh", "-c", SHOW, check=0).stdout.split() == ["g", "k", "gone"]


@pytest.mark.parametrize("hostile, why", [
    (layer(D("etc"), F("etc/.wh..")), "names no file of its directory"),
    (layer(F("../.wh.passwd")), "leaves the root"),
    (layer(H("etc/copy", "etc/gone")), "not an earlier regular file"),  # etc/gone is in another layer
    (layer(D("etc"), F("etc/.wh.x/y")), "whiteout (.wh.*) as a directory"),
])
def test_a_hostile_layer_is_refused_and_leaves_nothing(mini_layer, load, tmp_path, mc_home, hostile, why):
    store = ImageStore(mc_home)
    before = (_layers(store), sorted(os.listdir(store.images_dir)), sorted(os.listdir(store.tmp_dir)))
    proc = load(docker_archive(tmp_path / "h.tar", [mini_layer, MIDDLE, hostile], "lay-bad"), check=1)
    assert why in proc.stderr and len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (_layers(store), sorted(os.listdir(store.images_dir)), sorted(os.listdir(store.tmp_dir))) == before
    assert not store.exists("lay-bad")
