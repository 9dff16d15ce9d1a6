"""Volumes without root: -v / --mount parsing, the image's Volumes, the plan's
order, the store (create, users, rm refused in use, prune, release) and the fill."""

from __future__ import annotations

import json
import os
import stat

import pytest

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.config import decode, encode
from minicontainer.container.spec import NamedVolume, Tmpfs, Volume, build_spec, parse_mount, parse_volume
from minicontainer.errors import ContainerError, ImageError, SyscallError, UsageError
from minicontainer.images.config import ImageConfig
from minicontainer import volumes as V

pytestmark = pytest.mark.unit

ROOTFS = P.RootfsLayout(lower="/img", layer="/c/1")


# -- -v and --mount -------------------------------------------------------------------


def test_v_has_docker_three_forms(tmp_path):
    bind = parse_volume(f"{tmp_path}:/data:ro")
    assert isinstance(bind, Volume) and (bind.source, bind.readonly) == (str(tmp_path), True)
    named = parse_volume("db-data:/var/lib/db")
    assert named == NamedVolume("db-data", "/var/lib/db")
    anon = parse_volume("/cache/")
    assert isinstance(anon, NamedVolume) and anon.anonymous and anon.target == "/cache" and len(anon.name) == 64
    assert parse_volume("v:/x:ro,nocopy") == NamedVolume("v", "/x", readonly=True, nocopy=True)


@pytest.mark.parametrize("text, words", [
    ("./dist:/usr/share/nginx/html", ["relative path", "$(pwd)", os.path.abspath("dist")]),
    ("dist/sub:/x", ["relative path"]),
    ("bad name:/x", ["invalid volume name"]),
    ("-rf:/x", ["invalid volume name"]),
    ("v:rel", ["not an absolute path"]),
    ("v:/a/../b", ["'..'"]),
    ("v:/", ["cannot be / itself"]),
    ("v:/x:rx", ["invalid volume mode"]),
    ("v:/x:ro,rw", ["invalid volume mode"]),
    ("/no/such/dir:/x", ["does not exist"]),
    ("relative", ["not an absolute path"]),
])
def test_bad_v_is_one_usage_error(text, words):
    with pytest.raises(UsageError) as e:
        parse_volume(text)
    for w in words:
        assert w in str(e.value)
    assert "\n" not in str(e.value)


def test_mount_forms(tmp_path):
    b = parse_mount(f"type=bind,source={tmp_path},target=/site,readonly,bind-propagation=rslave")
    assert b == Volume(str(tmp_path), "/site", True, True, "rslave")
    assert parse_mount(f"type=bind,src={tmp_path},dst=/s,bind-propagation=rprivate").propagation == ""  # the default
    v = parse_mount("type=volume,src=incrementor-data,target=/data,consistency=cached")
    assert v == NamedVolume("incrementor-data", "/data")
    assert parse_mount("src=d,destination=/data,ro=true,volume-nocopy") == NamedVolume("d", "/data", True, nocopy=True)
    assert parse_mount("type=volume,dst=/data").anonymous
    t = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=1770")
    assert isinstance(t, Tmpfs) and t.data == f"size={64 << 20},mode=1770"
    assert parse_mount("type=tmpfs,dst=/r,readonly").flags & 1  # MS_RDONLY


@pytest.mark.parametrize("text, words", [
    ("type=bind,source=dist,target=/x", ["relative path", "source=" + os.path.abspath("dist")]),
    ("type=bind,target=/x", ["no source"]),
    ("type=bind,source=/no/such,target=/x", ["does not exist"]),
    ("type=bind,source=/,target=/x,bind-propagation=rshared", ["host's mount table"]),
    ("type=bind,source=/,target=/x,bind-propagation=sideways", ["unsupported bind-propagation"]),
    ("type=volume,src=./data,dst=/x", ["is a path", "type=bind"]),
    ("type=volume,src=a%b,dst=/x", ["invalid volume name"]),
    ("type=volume,src=a", ["no target"]),
    ("type=volume,src=a,dst=/x,readonly=maybe", ["true or false"]),
    ("type=volume,src=a,dst=/x,tmpfs-size=1m", ["unknown --mount key 'tmpfs-size'"]),
    ("type=nfs,dst=/x", ["unsupported --mount type"]),
    ("type=tmpfs,dst=/x,tmpfs-size=lots", ["tmpfs-size"]),
    ("type=tmpfs,dst=/x,tmpfs-mode=u+rwx", ["tmpfs-mode"]),
    ("type=volume,src=a,src=b,dst=/x", ["given twice"]),
])
def test_bad_mount_is_one_usage_error(text, words):
    with pytest.raises(UsageError) as e:
        parse_mount(text)
    for w in words:
        assert w in str(e.value)


def test_duplicate_targets_are_refused(tmp_path):
    with pytest.raises(UsageError, match="duplicate mount point /data"):
        build_spec("mini", volumes=["a:/data"], mount=[f"type=bind,source={tmp_path},target=/data/"])
    with pytest.raises(UsageError, match="duplicate mount point /t"):
        build_spec("mini", tmpfs=["/t"], mount=["type=tmpfs,target=/t"])


def test_build_spec_sorts_mounts_by_kind_and_the_codec_keeps_them(tmp_path):
    spec = build_spec("mini", volumes=["a:/a", f"{tmp_path}:/h", "/anon"],
                      mount=["type=volume,src=b,dst=/b", "type=tmpfs,dst=/t"])
    assert [v.name for v in spec.named_volumes][:1] == ["a"] and spec.named_volumes[2].name == "b"
    assert [v.target for v in spec.volumes] == ["/h"] and [t.target for t in spec.tmpfs] == ["/t"]
    assert decode(json.loads(json.dumps(encode(spec)))) == spec  # config.json: restart and start use the same


# -- the image's Volumes (issue 16) ---------------------------------------------------------


def test_image_volumes_become_anonymous_volumes_once():
    cfg = ImageConfig(volumes=("/srv/db", "/data", "/logs/"))
    spec = build_spec("img", volumes=["mine:/data"]).with_image(cfg)
    anon = [v for v in spec.named_volumes if v.anonymous]
    assert [v.target for v in anon] == ["/srv/db", "/logs"]  # /data is the run's own volume
    again = spec.with_image(cfg)  # a restart reads the spec back and applies the image again
    assert again.named_volumes == spec.named_volumes


def test_a_bad_image_volume_is_refused():
    with pytest.raises(ImageError, match="bad volume"):
        build_spec("img").with_image(ImageConfig(volumes=("relative",)))


# -- the plan ----------------------------------------------------------------------------------


def test_plan_mounts_parents_first_and_fills_before_mounting(tmp_path):
    spec = build_spec("mini", volumes=["db:/data/db", f"{tmp_path}:/data:ro"], tmpfs=["/data/db/tmp"],
                      mount=["type=volume,src=raw,dst=/raw,volume-nocopy"])
    plan = P.build_plan(spec, hostname="h", rootfs=ROOTFS, volume_root="/v", container_id="c9")
    ensure = [s for s in plan.steps if isinstance(s, S.EnsureVolume)]
    assert [(s.name, s.path, s.container) for s in ensure] == [("db", "/v/db", "c9"), ("raw", "/v/raw", "c9")]
    assert plan.steps[:2] == ensure
    user = [s for s in plan.steps if isinstance(s, (S.Mount, S.FillVolume, S.ReadonlyRecursive))
            and s.target in ("/data", "/data/db", "/data/db/tmp", "/raw")]
    assert [(type(s).__name__, s.target) for s in user] == [
        ("Mount", "/data"), ("ReadonlyRecursive", "/data"), ("Mount", "/raw"),
        ("FillVolume", "/data/db"), ("Mount", "/data/db"), ("Mount", "/data/db/tmp")]
    vol = next(s for s in user if s.target == "/data/db" and isinstance(s, S.Mount))
    assert vol.source == "/v/db/_data" and vol.host_source and "volume db" in vol.why()
    assert not any(isinstance(s, S.FillVolume) and s.name == "raw" for s in plan.steps)  # volume-nocopy
    assert next(s for s in plan.steps if isinstance(s, S.MakeMountsPrivate)).slave is False


def test_a_plain_run_has_no_volume_steps():
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS)
    assert not any(isinstance(s, (S.EnsureVolume, S.FillVolume, S.SetPropagation)) for s in plan.steps)


# -- the store ---------------------------------------------------------------------------------


def _store(tmp_path):
    (tmp_path / "containers").mkdir(exist_ok=True)
    return V.VolumeStore(tmp_path / "volumes", containers=tmp_path / "containers")


def _container(tmp_path, cid: str, name: str, vols) -> None:
    d = tmp_path / "containers" / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"name": name}))
    spec = build_spec("mini", volumes=vols)
    (d / "config.json").write_text(json.dumps(encode(spec)))


def test_create_is_whole_private_and_once(tmp_path):
    store = _store(tmp_path)
    info, made = store.create("data")
    assert made and not info.anonymous and info.created > 0
    assert store.create("data", exist_ok=True) == (info, False)
    with pytest.raises(UsageError, match="already exists"):
        store.create("data")
    assert stat.S_IMODE(os.stat(tmp_path / "volumes").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "volumes" / "data").st_mode) == 0o700
    assert sorted(os.listdir(tmp_path / "volumes" / "data")) == ["_data", "fresh", "volume.json"]
    assert store.names() == ["data"] and store.path("data") == f"{tmp_path}/volumes/data/_data"
    with pytest.raises(UsageError, match="invalid volume name"):
        store.create("../x")
    assert sorted(os.listdir(tmp_path / "volumes")) == [".lock", "data"]  # no temporary left


def test_rm_is_refused_while_any_container_uses_it(tmp_path):
    store = _store(tmp_path)
    store.create("data")
    _container(tmp_path, "c1", "web", ["data:/data"])
    assert store.users() == {"data": ["web"]}
    with pytest.raises(ContainerError, match="in use by container web"):
        store.remove("data")
    assert store.remove_unused(["data"]) == []
    (tmp_path / "containers" / "c1" / "config.json").unlink()  # the container is gone
    assert store.remove("data") is True and store.names() == []
    with pytest.raises(ContainerError, match="no such volume"):
        store.remove("data")
    assert store.remove("data", missing_ok=True) is False


def test_a_bind_of_a_path_inside_a_volume_is_a_use_of_it(tmp_path):
    # -v $MINICONTAINER_HOME/volumes/NAME/_data/sub:/x reaches the volume's files as -v NAME:/x does
    store = _store(tmp_path)
    for name in ("data", "other", "spare"):
        store.create(name)
    os.mkdir(f"{store.path('data')}/sub")
    os.symlink(store.path("other"), tmp_path / "link")  # the real path counts, not the spelling
    _container(tmp_path, "c1", "web", [f"{store.path('data')}/sub:/x"])
    _container(tmp_path, "c2", "db", [f"{tmp_path / 'link'}:/y", f"{tmp_path}:/all"])
    assert store.users() == {"data": ["web"], "other": ["db"]}  # the store's parent is no use of a volume
    with pytest.raises(ContainerError, match="in use by container web"):
        store.remove("data")
    assert [n for n, _ in store.prune(all_volumes=True)] == ["spare"]


def test_prune_takes_unused_anonymous_ones_and_with_all_named_too(tmp_path):
    store = _store(tmp_path)
    store.create("named")
    store.create("a" * 64, anonymous=True)
    store.create("b" * 64, anonymous=True)
    _container(tmp_path, "c1", "web", ["b" * 64 + ":/b"])
    assert [n for n, _ in store.prune()] == ["a" * 64]
    assert store.names() == ["b" * 64, "named"]
    assert [n for n, _ in store.prune(all_volumes=True)] == ["named"]


def test_release_removes_anonymous_and_what_a_failed_run_made(tmp_path):
    store = _store(tmp_path)
    store.create("old")  # existed before the run
    store.create("new", created_for="c1")
    store.create("x" * 64, anonymous=True, created_for="c1")
    vols = [("old", False), ("new", False), ("x" * 64, True)]
    assert V.release(vols, "c1", half_made=False, store=store) == ["x" * 64]
    assert V.release(vols, "c1", half_made=True, store=store) == ["new"]
    assert store.names() == ["old"]


def test_the_volumes_of_a_saved_spec(tmp_path):
    """What a run's cleanup (runtime.volumes_of) and VolumeStore.users read of config.json."""
    from minicontainer.container.config import named_volumes, saved_fields

    _container(tmp_path, "c1", "web", ["n:/n", "/anon"])
    got = named_volumes(saved_fields(tmp_path / "containers" / "c1"))
    assert got[0] == ("n", False) and got[1][1] is True
    assert named_volumes(saved_fields(tmp_path / "nothing")) == []


# -- filling -----------------------------------------------------------------------------------


def _root_fd(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_fill_copies_the_image_once_keeping_links_and_modes(tmp_path):
    image = tmp_path / "img"
    (image / "data" / "sub").mkdir(parents=True)
    (image / "data" / "f").write_text("seed")
    os.chmod(image / "data" / "f", 0o640)
    os.symlink("/etc/shadow", image / "data" / "link")
    os.chmod(image / "data", 0o750)
    store = _store(tmp_path)
    store.create("v")
    vdir = str(tmp_path / "volumes" / "v")
    root = _root_fd(image)
    try:
        assert V.fill(root, "/data", vdir) == 4
        data = tmp_path / "volumes" / "v" / "_data"
        assert (data / "f").read_text() == "seed" and stat.S_IMODE(os.stat(data / "f").st_mode) == 0o640
        assert os.readlink(data / "link") == "/etc/shadow"  # a link, not what it points to
        assert (data / "sub").is_dir() and stat.S_IMODE(os.stat(data).st_mode) == 0o750
        (data / "f").write_text("changed by a container")
        assert V.fill(root, "/data", vdir) == 0  # not new any more
        assert (data / "f").read_text() == "changed by a container"
    finally:
        os.close(root)


def test_fill_of_a_path_the_image_lacks_leaves_it_empty(tmp_path):
    (tmp_path / "img").mkdir()
    store = _store(tmp_path)
    store.create("v")
    root = _root_fd(tmp_path / "img")
    try:
        assert V.fill(root, "/nothing/here", str(tmp_path / "volumes" / "v")) == 0
    finally:
        os.close(root)
    assert os.listdir(tmp_path / "volumes" / "v" / "_data") == []
    assert not (tmp_path / "volumes" / "v" / "fresh").exists()


def test_fill_never_follows_a_symlink_of_the_image(tmp_path):
    image = tmp_path / "img"
    image.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    os.symlink(str(outside), image / "jump")
    store = _store(tmp_path)
    store.create("v")
    root = _root_fd(image)
    try:
        with pytest.raises(SyscallError, match="symlink at /jump"):
            V.fill(root, "/jump", str(tmp_path / "volumes" / "v"))
    finally:
        os.close(root)
    assert os.listdir(tmp_path / "volumes" / "v" / "_data") == []


def test_fill_skips_what_is_no_file_directory_or_link_and_says_so(tmp_path, capsys):
    image = tmp_path / "img"
    (image / "data").mkdir(parents=True)
    os.mkfifo(image / "data" / "pipe")
    (image / "data" / "ok").write_text("1")
    store = _store(tmp_path)
    store.create("v")
    root = _root_fd(image)
    try:
        V.fill(root, "/data", str(tmp_path / "volumes" / "v"))
    finally:
        os.close(root)
    assert os.listdir(tmp_path / "volumes" / "v" / "_data") == ["ok"]
    assert "did not get the image's /data/pipe: a FIFO is not copied" in capsys.readouterr().err


def test_fill_never_copies_over_what_a_nocopy_mount_wrote(tmp_path):
    image = tmp_path / "img"
    (image / "data").mkdir(parents=True)
    (image / "data" / "f").write_text("image")
    store = _store(tmp_path)
    store.create("v")
    data = tmp_path / "volumes" / "v" / "_data"
    (data / "f").write_text("written with volume-nocopy")
    root = _root_fd(image)
    try:
        assert V.fill(root, "/data", str(tmp_path / "volumes" / "v")) == 0
    finally:
        os.close(root)
    assert (data / "f").read_text() == "written with volume-nocopy"
    assert not (tmp_path / "volumes" / "v" / "fresh").exists()
