"""Layered images without root: whiteout names, image configs and the run
rules they feed, the layer store (shared layers, garbage collection), load
of docker and OCI archives with every digest checked, save and load again.

Opaque directories need CAP_SYS_ADMIN (a trusted.* xattr): the root tier
(tests/root/test_layered_images.py) covers them and the real overlay mount.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from imagetools import D, F, H, L, config, docker_archive, layer, oci_layout, sha, tar_dir
from minicontainer.container.spec import build_spec
from minicontainer.container.steps import MountRootfs
from minicontainer.errors import ImageError
from minicontainer.images import archive
from minicontainer.images.config import ImageConfig, parse_config
from minicontainer.images.history import history
from minicontainer.images.store import ImageStore
from minicontainer.images.tarread import Limits, extract_tar, member_parts, whiteout_target
from minicontainer.security.config import parse_security

pytestmark = pytest.mark.unit

BASE = layer(D("etc"), F("etc/os", b"base\n"), F("etc/gone", b"bye\n"), D("data"), F("data/a", b"a"))
TOP = layer(D("etc"), F("etc/.wh.gone"), F("etc/new", b"new\n"))


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "home")


def _nothing_left(store: ImageStore) -> None:
    assert not store.refs_dir.exists() or os.listdir(store.refs_dir) == []
    assert not store.images_dir.exists() or os.listdir(store.images_dir) == []
    assert not store.layers_dir.exists() or os.listdir(store.layers_dir) == []
    assert not store.tmp_dir.exists() or os.listdir(store.tmp_dir) == []


# -- whiteout names ----------------------------------------------------------------------------


def test_whiteouts_are_allowed_only_as_the_last_component_of_a_layer_member():
    assert member_parts("etc/.wh.gone", whiteouts=True) == ("etc", ".wh.gone")
    assert whiteout_target(("etc", ".wh.gone"), "m") == ("etc", "gone")
    assert whiteout_target(("etc", ".wh..wh..opq"), "m") == ("etc",)
    assert whiteout_target(("etc", "plain"), "m") is None
    with pytest.raises(ImageError, match="whiteout"):
        member_parts("etc/.wh.gone")  # a flat export: refused as before
    with pytest.raises(ImageError, match="as a directory"):
        member_parts(".wh.dir/file", whiteouts=True)


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "etc/.wh..wh.plnk", "a/.wh..wh..wh.x"])
def test_whiteouts_that_name_no_file_of_their_directory_are_refused(name):
    with pytest.raises(ImageError, match="names no file"):
        whiteout_target(member_parts(name, whiteouts=True), name)


def test_whiteout_escapes_are_refused_and_write_nothing(tmp_path):
    for i, members in enumerate([
        (F("../.wh.victim"),),  # '..' out of the root
        (L("etc", "/"), F("etc/.wh.passwd")),  # through a symlink the layer planted
        (L("up", ".."), F("up/.wh.x")),
        (F(".wh.."),),
    ]):
        dest = tmp_path / f"d{i}"
        dest.mkdir()
        with pytest.raises(ImageError, match="refusing archive"):
            extract_tar(_io(layer(*members)), dest, layer=True)
        assert [p.name for p in dest.rglob("*") if not p.is_symlink()] == []


def test_a_hard_link_to_a_file_of_another_layer_is_refused(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ImageError, match="not an earlier regular file"):
        extract_tar(_io(layer(H("etc/shadow-copy", "etc/os"))), dest, layer=True)


def test_a_whiteout_becomes_a_0_0_character_device(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    res = extract_tar(_io(TOP), dest, layer=True)
    st = os.lstat(dest / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (dest / "etc/new").read_bytes() == b"new\n"
    assert res.whiteouts == 1 and res.digest == sha(TOP) and res.raw_digest == sha(TOP)


def test_an_empty_layer_is_fine_but_an_empty_export_is_not(tmp_path):
    empty = b"\0" * 1024
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert extract_tar(_io(empty), tmp_path / "a", layer=True).members == 0
    with pytest.raises(ImageError, match="empty"):
        extract_tar(_io(empty), tmp_path / "b")


def _io(data: bytes):
    import io

    return io.BytesIO(data)


# -- the config and the run rules -----------------------------------------------------------------


def test_parse_config_reads_what_run_uses_and_refuses_nonsense():
    cfg = parse_config(json.loads(config([], Entrypoint=["/bin/echo"], Cmd=["hi"], Env=["A=1", "B=x=y"],
                                         WorkingDir="/w", User="1000:1000", StopSignal="SIGINT",
                                         Labels={"k": "v"}, ExposedPorts={"80/tcp": {}}, Volumes={"/d": {}})))
    assert cfg == ImageConfig(entrypoint=("/bin/echo",), cmd=("hi",), env=(("A", "1"), ("B", "x=y")), workdir="/w",
                              user="1000:1000", stop_signal="SIGINT", labels=(("k", "v"),),
                              exposed_ports=("80/tcp",), volumes=("/d",))
    for bad in ({"Cmd": "sh"}, {"Env": ["NOEQUALS"]}, {"WorkingDir": "relative"}, {"Entrypoint": ["a\0b"]}):
        with pytest.raises(ImageError, match="image config"):
            parse_config({"config": bad})


def test_run_takes_entrypoint_cmd_env_workdir_and_user_from_the_image():
    cfg = ImageConfig(entrypoint=("/bin/echo",), cmd=("default",), env=(("PATH", "/opt/bin"), ("A", "image")),
                      workdir="/app", user="nobody")
    spec = build_spec("img", security=parse_security()).with_image(cfg)
    assert spec.argv() == ("/bin/echo", "default")
    assert spec.cwd() == "/app"
    assert spec.security.user == "nobody"
    assert spec.environment("h")["PATH"] == "/opt/bin"
    # the run's arguments replace Cmd; -e, -w and -u win over the image
    spec = build_spec("img", ["x"], env=["A=run"], workdir="/w", security=parse_security(user="0")).with_image(cfg)
    assert spec.argv() == ("/bin/echo", "x")
    assert spec.environment("h")["A"] == "run" and spec.cwd() == "/w" and spec.security.user == "0"
    # --entrypoint replaces the image's and clears its Cmd; '' clears it
    assert build_spec("img", entrypoint="/bin/sh").with_image(cfg).argv() == ("/bin/sh",)
    assert build_spec("img", ["/bin/true"], entrypoint="").with_image(cfg).argv() == ("/bin/true",)
    assert build_spec("img").with_image(ImageConfig()).argv() == ("/bin/sh",)


def test_the_rootfs_step_stacks_the_layers_top_first():
    step = MountRootfs(target="/c/1/merged", layer="/c/1", lower="/l/top", lower_stack=("/l/mid", "/l/base"))
    assert step.overlay_options == "lowerdir=lower:lower-1:lower-2,upperdir=upper,workdir=work"
    assert "3 layers" in step.what()
    ro = MountRootfs(target="/c/1/merged", layer="/c/1", lower="/l/top", lower_stack=("/l/base",), writable=False)
    assert ro.overlay_options == "lowerdir=lower:lower-1:empty"


@pytest.mark.parametrize("ref, name", [
    ("base:latest", "base"), ("docker.io/library/base:latest", "base"), ("example.com:5000/team/app:1.2", "app:1.2"),
    ("app", "app"), ("app@sha256:" + "0" * 64, "app"), ("bad name", None),
])
def test_local_names_of_archive_references(ref, name):
    assert archive.local_name(ref) == name


# -- load: the layer store ----------------------------------------------------------------------------


def test_load_docker_archive_stores_each_layer_once_under_its_diff_id(store, tmp_path):
    a = docker_archive(tmp_path / "a.tar", [BASE, TOP], "one:1", Cmd=["/bin/sh"])
    b = docker_archive(tmp_path / "b.tar", [BASE], "two:latest")
    (one,) = archive.load(store, str(a))
    (two,) = archive.load(store, str(b))
    assert (one.new_layers, two.new_layers, two.shared_layers) == (2, 0, 1)
    assert sorted(os.listdir(store.layers_dir)) == sorted([sha(BASE)[7:], sha(TOP)[7:]])
    img = store.get("one:1")
    assert img.stack == (store.layer_dir(sha(TOP)), store.layer_dir(sha(BASE)))
    assert img.id == sha(config([BASE, TOP], Cmd=["/bin/sh"]))[7:]
    assert store.get("two").stack == (store.layer_dir(sha(BASE)),)  # :latest is the bare name
    # a layer goes with the last image that has it
    store.remove("one:1")
    assert os.listdir(store.layers_dir) == [sha(BASE)[7:]]
    store.remove("two")
    _nothing_left(store)


def test_load_checks_the_diff_ids(store, tmp_path):
    cfg = config([BASE, layer(F("other"))])
    bad = docker_archive(tmp_path / "bad.tar", [BASE, TOP], cfg=cfg)
    with pytest.raises(ImageError, match="layer 2 .* does not match the config's diff_id"):
        archive.load(store, str(bad))
    _nothing_left(store)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_load_oci_layout_dir_and_tar(store, tmp_path, compression):
    root = oci_layout(tmp_path / "oci", [BASE, TOP], "docker.io/library/web:2", compression=compression,
                      Env=["A=1"])
    (out,) = archive.load(store, str(root))
    assert out.image.name == "web:2"
    assert (store.layer_dir(sha(BASE)) / "etc/os").read_bytes() == b"base\n"
    store.remove("web:2")
    (out,) = archive.load(store, str(tar_dir(root, tmp_path / "oci.tar")), tag="other")
    assert out.image.name == "other" and out.new_layers == 2
    assert store.layer_meta(sha(TOP))["compression"] == compression


def test_load_checks_the_compressed_digest_of_an_oci_layer(store, tmp_path):
    root = oci_layout(tmp_path / "oci", [BASE])
    manifest = [p for p in (root / "blobs/sha256").iterdir() if b"image.manifest.v1+json" in p.read_bytes()[:200]
                and b'"config"' in p.read_bytes()][0]
    layer_blob = root / "blobs/sha256" / json.loads(manifest.read_text())["layers"][0]["digest"][7:]
    layer_blob.write_bytes(gzip.compress(BASE, compresslevel=1, mtime=1))  # the same tar, other bytes
    with pytest.raises(ImageError, match="does not match the manifest's digest"):
        archive.load(store, str(root))
    _nothing_left(store)


def test_a_hostile_layer_refuses_the_whole_archive(store, tmp_path):
    hostile = layer(D("etc"), F("etc/.wh.."))
    with pytest.raises(ImageError, match="names no file"):
        archive.load(store, str(docker_archive(tmp_path / "h.tar", [BASE, hostile])))
    _nothing_left(store)


def test_save_then_load_gives_the_same_tree_and_config(store, tmp_path):
    archive.load(store, str(docker_archive(tmp_path / "a.tar", [BASE, TOP], "app:1", Cmd=["/bin/echo", "hi"])))
    for fmt in ("docker", "oci"):
        out = tmp_path / f"saved-{fmt}.tar"
        with open(out, "wb") as f:
            archive.save(store, ["app:1"], f, fmt=fmt)
        other = ImageStore(tmp_path / f"home-{fmt}")
        (loaded,) = archive.load(other, str(out))
        assert loaded.image.name == "app:1"
        assert parse_config(loaded.image.config()).cmd == ("/bin/echo", "hi")
        top = other.get("app:1").stack[0]
        assert stat.S_ISCHR(os.lstat(top / "etc/gone").st_mode)
        assert (top / "etc/new").read_bytes() == b"new\n"
        # the same tree packs to the same bytes: a second save has the same id
        again = tmp_path / f"again-{fmt}.tar"
        with open(again, "wb") as f:
            archive.save(other, ["app:1"], f, fmt=fmt)
        assert archive.load(ImageStore(tmp_path / f"home2-{fmt}"), str(again))[0].image.id == loaded.image.id


def test_history_pairs_layers_with_their_instructions(store, tmp_path):
    doc = json.loads(config([BASE, TOP]))
    doc["history"] = [{"created_by": "ADD base"}, {"created_by": "ENV A=1", "empty_layer": True},
                      {"created_by": "RUN rm /etc/gone"}]
    cfg = json.dumps(doc).encode()
    archive.load(store, str(docker_archive(tmp_path / "a.tar", [BASE, TOP], "h", cfg=cfg)))
    rows = history(store, "h")
    assert [(r["created_by"], r["layer"]) for r in rows] == [
        ("RUN rm /etc/gone", sha(TOP)), ("ENV A=1", ""), ("ADD base", sha(BASE))]
    assert rows[2]["size"] == len(b"base\n") + len(b"bye\n") + 1


def test_load_refuses_an_archive_name_we_cannot_store_and_a_missing_file(store, tmp_path):
    with pytest.raises(ImageError, match="not a valid image name"):
        archive.load(store, str(docker_archive(tmp_path / "a.tar", [BASE], "bad name:1")))
    with pytest.raises(ImageError, match="no such file"):
        archive.load(store, str(tmp_path / "missing.tar"))
    with pytest.raises(ImageError, match="not an image archive"):
        (tmp_path / "junk").write_bytes(b"junk" * 300)
        archive.load(store, str(tmp_path / "junk"))
    _nothing_left(store)
