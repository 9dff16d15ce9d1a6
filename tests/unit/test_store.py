"""The image store, import-dir, and the ``minicontainer image`` commands."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minicontainer import paths
from minicontainer.errors import ImageError, MiniError, UsageError
from minicontainer.images import importer
from minicontainer.images.store import ImageStore, Populated, containers_using, validate_image_name

pytestmark = pytest.mark.unit


def _fill(files: dict[str, bytes]):
    def populate(rootfs: Path):
        for name, data in files.items():
            p = rootfs / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return None

    return populate


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "home")


def _leftovers(store: ImageStore) -> list[str]:
    return sorted(os.listdir(store.tmp_dir)) if store.tmp_dir.exists() else []


# -- names and layout ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mini", "debian:bookworm", "a", "A.b-c_d", "x" * 64])
def test_valid_names(name):
    assert validate_image_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-rf", ".hidden", "x" * 65, "a:", "a b", "é"])
def test_invalid_names(name):
    with pytest.raises(UsageError):
        validate_image_name(name)


def test_store_dirs_are_private(store):
    store.ensure()
    for d in (store.home, store.images_dir, store.refs_dir, store.tmp_dir):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


# -- create / get / list / remove ---------------------------------------------------------------


def test_create_get_list_remove(store):
    img = store.create("one", _fill({"bin/sh": b"#!"}), source="test")
    assert img.name == "one" and (img.rootfs / "bin/sh").read_bytes() == b"#!"
    assert img.meta["source"] == "test" and img.meta["size"] > 0
    assert stat.S_IMODE(os.stat(store.images_dir / img.id).st_mode) == 0o700
    assert [i.name for i in store.list()] == ["one"]
    store.remove("one")
    assert store.list() == [] and os.listdir(store.images_dir) == [] and _leftovers(store) == []
    with pytest.raises(ImageError, match="no such image: one"):
        store.get("one")


def test_populated_meta_and_content_id(store):
    img = store.create("x", lambda r: Populated("ab" * 32, {"members": 3}), source="s")
    assert img.id == "ab" * 32 and img.meta["members"] == 3 and img.meta["id"] == img.id


def test_failed_populate_leaves_nothing(store):
    def boom(rootfs: Path):
        (rootfs / "half").write_text("written")
        raise ImageError("boom")

    with pytest.raises(ImageError, match="boom"):
        store.create("x", boom, source="s")
    assert _leftovers(store) == [] and os.listdir(store.images_dir) == [] and os.listdir(store.refs_dir) == []


def test_existing_name_needs_force(store):
    store.create("x", _fill({"a": b"1"}), source="s")
    with pytest.raises(ImageError, match="already exists"):
        store.create("x", _fill({"a": b"2"}), source="s")
    img = store.create("x", _fill({"a": b"2"}), source="s", force=True)
    assert (img.rootfs / "a").read_bytes() == b"2"


def test_same_id_is_shared_and_freed_with_last_name(store):
    a = store.create("a", lambda r: Populated("cd" * 32), source="s")
    b = store.create("b", lambda r: Populated("cd" * 32), source="s")
    assert a.id == b.id and len(os.listdir(store.images_dir)) == 1
    assert store.names_of(a.id) == ["a", "b"]
    store.remove("a")
    assert store.has_id(a.id)
    store.remove("b")
    assert not store.has_id(a.id) and _leftovers(store) == []


def test_tag(store):
    img = store.create("a", _fill({"f": b"1"}), source="s")
    assert store.tag("b", img.id).id == img.id
    with pytest.raises(ImageError, match="no image with id"):
        store.tag("c", "0" * 64)


def test_damaged_ref_is_not_followed(store):
    store.ensure()
    (store.refs_dir / "evil").write_text("../../../etc\n")
    with pytest.raises(ImageError, match="damaged"):
        store.get("evil")
    assert store.list() == []


def test_clean_tmp_removes_dead_imports_only(store):
    store.ensure()
    dead = store.tmp_dir / "new-999999999-abc"
    (dead / "rootfs").mkdir(parents=True)
    mine = store.tmp_dir / f"new-{os.getpid()}-xyz"
    mine.mkdir()
    assert store.clean_tmp() == [dead]
    assert not dead.exists() and mine.exists()


def test_read_only_dirs_are_removed(store):
    def populate(rootfs: Path):
        (rootfs / "ro").mkdir()
        (rootfs / "ro" / "f").write_text("x")
        os.chmod(rootfs / "ro", 0o500)

    store.create("ro", populate, source="s")
    store.remove("ro")
    assert os.listdir(store.images_dir) == []


# -- containers using an image ----------------------------------------------------------------------


def _state(root: Path, cid: str, **fields):
    d = root / "containers" / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"id": cid, **fields}))


def test_rm_refused_while_a_container_uses_it(store, tmp_path):
    img = store.create("web", _fill({"a": b"1"}), source="s")
    run = tmp_path / "run"
    _state(run, "c1", name="frontend", image="web", image_id=img.id, status="exited")
    _state(run, "c2", name="other", image="web", image_id="ff" * 32)  # an older 'web'
    (run / "containers" / "junk").mkdir()
    assert containers_using(img, run) == ["frontend"]
    with pytest.raises(ImageError, match="used by container frontend") as exc:
        store.remove("web", state_root=run)
    assert "minicontainer rm frontend" in exc.value.hint
    assert store.get("web").id == img.id
    (run / "containers" / "c1" / "state.json").unlink()
    store.remove("web", state_root=run)
    assert store.list() == []


def test_containers_using_by_name_without_image_id(store, tmp_path):
    img = store.create("web", _fill({"a": b"1"}), source="s")
    _state(tmp_path / "run", "c9", image="web")
    assert containers_using(img, tmp_path / "run") == ["c9"]
    assert containers_using(img, tmp_path / "nothing") == []


# -- import-dir ---------------------------------------------------------------------------------------


def test_import_dir_keeps_links_modes_and_skips_specials(store, tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    (src / "bin" / "su").write_bytes(b"\x7fELF" * 1000)
    os.chmod(src / "bin" / "su", 0o4755)
    os.utime(src / "bin" / "su", ns=(1, 1_400_000_000_000_000_000))
    os.link(src / "bin" / "su", src / "bin" / "su2")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(str(outside), src / "escape")  # must be copied as a link, never followed
    os.symlink("/usr/share/zoneinfo/UTC", src / "localtime")
    os.mkfifo(src / "fifo")
    os.utime(src / "bin", ns=(1, 1_500_000_000_000_000_000))

    out = importer.import_dir(store, str(src), "copy")
    r = out.image.rootfs
    assert out.skipped_special == 1 and not (r / "fifo").exists()
    assert os.readlink(r / "escape") == str(outside) and not (r / "secret").exists()
    assert os.readlink(r / "localtime") == "/usr/share/zoneinfo/UTC"
    assert stat.S_IMODE(os.stat(r / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(r / "tmp").st_mode) == 0o1777
    assert os.stat(r / "bin/su").st_ino == os.stat(r / "bin/su2").st_ino
    assert os.stat(r / "bin/su").st_ino != os.stat(src / "bin/su").st_ino
    assert (r / "bin/su").read_bytes() == b"\x7fELF" * 1000
    assert os.stat(r / "bin/su").st_mtime_ns == 1_400_000_000_000_000_000
    assert os.stat(r / "bin").st_mtime_ns == 1_500_000_000_000_000_000
    assert out.image.meta["source"] == f"dir:{src}"


def test_import_dir_errors(store, tmp_path):
    with pytest.raises(ImageError, match="not a directory"):
        importer.import_dir(store, str(tmp_path / "missing"), "x")
    assert store.list() == []


def test_debootstrap_missing_gives_apt_hint(store, monkeypatch):
    import shutil  # importer imports it only for debootstrap

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importer.os, "access", lambda p, m: False)
    with pytest.raises(ImageError, match="debootstrap is not installed") as exc:
        importer.debootstrap(store, "bookworm", "deb")
    assert "apt-get install -y debootstrap" in exc.value.hint
    with pytest.raises(ImageError, match="invalid suite"):
        importer.debootstrap(store, "../x", "deb")


# -- the CLI --------------------------------------------------------------------------------------------


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def mc(capsys, *argv) -> tuple[int, str, str]:
    from minicontainer.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_import_ls_inspect_rm(mc_dirs, tmp_path, capsys):
    home, run = mc_dirs
    t = _tar(tmp_path / "a.tar", {"etc/os-release": b"ID=test\n"})
    code, out, err = mc(capsys, "image", "import", str(t), "test")
    assert code == 0 and out.startswith("test ") and err == ""  # no progress bar: stderr is no tty
    code, out, _ = mc(capsys, "image", "import", str(t), "test2")
    assert code == 0 and "shares" in out

    code, out, _ = mc(capsys, "image", "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "CREATED", "SOURCE"]
    assert [line.split()[0] for line in lines[1:]] == ["test", "test2"]
    assert len(lines[1].split()[1]) == 12

    code, out, _ = mc(capsys, "image", "ls", "--format", "json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["test", "test2"] and rows[0]["source"] == str(t)
    assert set(rows[0]) == {"name", "id", "size", "created", "source"}

    code, out, _ = mc(capsys, "image", "inspect", "test")
    info = json.loads(out)
    assert info["names"] == ["test", "test2"] and info["digest"] == "sha256:" + info["id"]
    assert info["used_by"] == []

    _state(run, "c1", name="db", image="test", image_id=info["id"])
    code, out, err = mc(capsys, "image", "rm", "test")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert "used by container db" in err and err.startswith("minicontainer: error:")

    (run / "containers" / "c1" / "state.json").unlink()
    code, out, _ = mc(capsys, "image", "rm", "test", "test2")
    assert code == 0 and out.split() == ["test", "test2"]
    assert json.loads(mc(capsys, "image", "ls", "--format", "json")[1]) == []


def test_cli_image_rm_goes_on_past_a_failure(mc_dirs, tmp_path, capsys):
    t = _tar(tmp_path / "a.tar", {"f": b"1"})
    mc(capsys, "image", "import", str(t), "one")
    mc(capsys, "image", "import", str(t), "two")
    code, out, err = mc(capsys, "image", "rm", "one", "nosuch", "two", "../bad")
    assert code == 1 and out.split() == ["one", "two"]
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("minicontainer: error: ") for line in lines), err
    assert "nosuch" in lines[0] and "../bad" in lines[1]


def test_cli_failed_import_leaves_nothing(mc_dirs, tmp_path, capsys):
    home, _ = mc_dirs
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 200)
    code, out, err = mc(capsys, "image", "import", str(bad), "bad")
    assert code == 1 and "not a tar archive" in err and len(err.strip().splitlines()) == 1
    assert json.loads(mc(capsys, "image", "ls", "--format", "json")[1]) == []
    assert os.listdir(home / "tmp") == [] and os.listdir(home / "images") == []
    code, _, err = mc(capsys, "image", "import", str(tmp_path / "nope.tar"), "bad")
    assert code == 1 and "no such file" in err
    code, _, err = mc(capsys, "image", "inspect", "nothere")
    assert code != 0 and "no such image" in err


def test_cli_import_dir(mc_dirs, tmp_path, capsys):
    src = tmp_path / "tree"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "sh").write_bytes(b"#!")
    code, out, _ = mc(capsys, "image", "import-dir", str(src), "tree")
    assert code == 0 and out.startswith("tree ")


@pytest.mark.parametrize("sub", ["import", "import-dir", "debootstrap", "build-mini", "ls", "inspect", "rm"])
def test_every_image_command_has_help(capsys, sub):
    code, out, _ = mc(capsys, "image", sub, "--help")
    assert code == 0 and "Usage:" in out


def test_progress_only_on_a_terminal():
    from minicontainer.commands.image_import import Progress as _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet = io.StringIO()
    p = _Progress(1000, quiet)
    p(500)
    p.close()
    assert quiet.getvalue() == ""

    tty = Tty()
    p = _Progress(2 << 20, tty)
    p._last = -1.0
    p(1 << 20)
    assert "\r" in tty.getvalue() and "1 MiB / 2 MiB" in tty.getvalue() and "/s" in tty.getvalue()
    p.close()


def test_import_for_run_names_and_reuses_the_image(store, tmp_path):
    t = _tar(tmp_path / "c.tar", {"bin/sh": b"#!"})
    first = importer.import_for_run(store, str(t))
    assert first.name == f"tar-{first.id[:12]}" and (first.rootfs / "bin/sh").exists()
    again = importer.import_for_run(store, str(t))
    assert again == first and len(os.listdir(store.images_dir)) == 1
    store.tag("mine", first.id)
    store.remove(first.name)
    assert importer.import_for_run(store, str(t)).name == "mine"  # an existing name is reused


def test_import_for_run_refuses_hostile_tar(store, tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        ti = tarfile.TarInfo("../../evil")
        tf.addfile(ti, io.BytesIO(b""))
    with pytest.raises(ImageError, match="leaves the root"):
        importer.import_for_run(store, str(path))
    assert store.list() == [] and _leftovers(store) == []


def test_damaged_image_can_be_removed(store):
    img = store.create("dmg", _fill({"a": b"1"}), source="s")
    (store.images_dir / img.id / "meta.json").unlink()
    with pytest.raises(ImageError, match="damaged"):
        store.get("dmg")
    store.remove("dmg")
    assert not (store.images_dir / img.id).exists() and not store.exists("dmg")
    (store.refs_dir / "evil").write_text("../../x\n")
    store.remove("evil")  # the ref goes, nothing outside is touched
    assert not store.exists("evil")


# -- replacing a name frees the old image; prune ----------------------------------------------------


def test_force_replace_deletes_the_old_image(store):
    old = store.create("x", _fill({"a": b"1"}), source="s")
    new = store.create("x", _fill({"a": b"2"}), source="s", force=True)
    assert new.id != old.id and os.listdir(store.images_dir) == [new.id]
    assert _leftovers(store) == []


def test_force_replace_keeps_an_image_still_named_or_used(store, tmp_path):
    run = tmp_path / "run"
    store.state_root = run
    shared = store.create("x", _fill({"a": b"1"}), source="s")
    store.tag("alias", shared.id)
    store.create("x", _fill({"a": b"2"}), source="s", force=True)
    assert store.get("alias").id == shared.id  # another name still points to it

    used = store.create("y", _fill({"a": b"3"}), source="s")
    _state(run, "c1", name="web", image="y", image_id=used.id, status="running")
    store.create("y", _fill({"a": b"4"}), source="s", force=True)
    assert store.has_id(used.id)  # a container runs on it: kept...
    assert store.prune() == []  # ...and prune agrees
    (run / "containers" / "c1" / "state.json").unlink()
    pruned = store.prune()
    assert [i.id for i in pruned] == [used.id] and pruned[0].meta["source"] == "s"
    assert not store.has_id(used.id) and store.has_id(shared.id) and _leftovers(store) == []
    assert sorted(i.name for i in store.list()) == ["alias", "x", "y"]


def test_tag_force_deletes_the_old_image(store):
    a = store.create("a", _fill({"f": b"1"}), source="s")
    b = store.create("b", _fill({"f": b"2"}), source="s")
    with pytest.raises(ImageError, match="already exists"):
        store.tag("a", b.id)
    store.tag("a", b.id, force=True)
    assert not store.has_id(a.id) and os.listdir(store.images_dir) == [b.id]


def test_import_force_deletes_the_old_image(store, tmp_path):
    first = importer.import_tarball(store, str(_tar(tmp_path / "1.tar", {"f": b"1"})), "t").image
    second = importer.import_tarball(store, str(_tar(tmp_path / "2.tar", {"f": b"2"})), "t", force=True).image
    assert os.listdir(store.images_dir) == [second.id] and first.id != second.id
    # the cached fast path switches names the same way
    again = importer.import_tarball(store, str(tmp_path / "1.tar"), "u")
    assert not again.from_cache  # its image was deleted: read again
    importer.import_tarball(store, str(tmp_path / "2.tar"), "u", force=True)
    assert os.listdir(store.images_dir) == [second.id]


def test_build_mini_force_does_not_leak(mc_dirs, monkeypatch):
    from minicontainer.images import mini

    monkeypatch.setattr(mini, "plan_mini", lambda: mini.MiniPlan(kind="host", description="fake"))
    monkeypatch.setattr(mini, "write_mini", lambda rootfs, plan: (rootfs / "sh").write_text("fake"))
    store = ImageStore()
    for _ in range(3):
        img = mini.build_mini(store, force=True)
    assert os.listdir(store.images_dir) == [img.id] and store.list() == [img]


def test_prune_removes_unnamed_images_only(store):
    kept = store.create("kept", _fill({"a": b"1"}), source="s")
    orphan = store.create("gone", _fill({"a": b"2"}), source="orphan-src")
    (store.refs_dir / "gone").unlink()  # as left by an older version
    damaged = store.create("dmg", _fill({"a": b"3"}), source="s")
    (store.images_dir / damaged.id / "meta.json").unlink()  # still named: kept
    assert [i.id for i in store.prune()] == [orphan.id]
    assert sorted(os.listdir(store.images_dir)) == sorted([kept.id, damaged.id])
    assert store.prune() == [] and _leftovers(store) == []


def test_cli_prune(mc_dirs, tmp_path, capsys):
    home, _ = mc_dirs
    t = _tar(tmp_path / "a.tar", {"etc/os-release": b"ID=test\n"})
    code, out, _ = mc(capsys, "image", "prune")
    assert code == 0 and out == "reclaimed 0 B (0 images)\n"
    assert mc(capsys, "image", "import", str(t), "p")[0] == 0
    image_id = json.loads(mc(capsys, "image", "inspect", "p")[1])["id"]
    (home / "refs" / "p").unlink()
    code, out, _ = mc(capsys, "image", "prune")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"deleted {image_id[:12]}") and str(t) in lines[0]
    assert lines[1].startswith("reclaimed ") and lines[1].endswith("(1 image)")
    assert os.listdir(home / "images") == []


# -- the store lock: one build at a time per name -----------------------------------------------------


def _in_child(fn) -> int:
    """Fork; the child runs ``fn`` and exits 0 if it returned, 1 if it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait_ok(pid: int) -> bool:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_lock_is_exclusive_between_processes_and_reentrant(store, tmp_path):
    import time

    marks = tmp_path / "marks"
    marks.touch()

    def worker(tag: str):
        def run():
            with store.lock("x"):
                with store.lock("x"):  # nested in one process: no self-deadlock
                    with open(marks, "a") as f:
                        f.write(f"{tag}+\n")
                    time.sleep(0.3)
                    with open(marks, "a") as f:
                        f.write(f"{tag}-\n")

        return run

    pids = [_in_child(worker("a")), _in_child(worker("b"))]
    assert all(_wait_ok(p) for p in pids)
    lines = marks.read_text().split()
    # never interleaved: each holder's enter and leave are adjacent
    assert len(lines) == 4 and lines[0][0] == lines[1][0] and lines[2][0] == lines[3][0], lines
    with store.lock():
        with store.lock("x"):
            pass  # a different lock, free
    assert stat.S_IMODE(os.stat(store.locks_dir).st_mode) == 0o700


def test_two_first_ensure_mini_build_once(mc_dirs, tmp_path, monkeypatch):
    """Two first `run mini` at once: one builds, the other waits and reuses it."""
    import time

    from minicontainer.images import mini

    builds = tmp_path / "builds"
    builds.touch()

    def slow_write(rootfs, plan):
        with open(builds, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the other process to arrive
        (rootfs / "sh").write_text("fake")

    monkeypatch.setattr(mini, "plan_mini", lambda: mini.MiniPlan(kind="host", description="fake"))
    monkeypatch.setattr(mini, "write_mini", slow_write)
    ids = tmp_path / "ids"
    ids.mkdir()

    def first_run():
        img = mini.ensure_mini(ImageStore())
        (ids / str(os.getpid())).write_text(img.id)

    pids = [_in_child(first_run), _in_child(first_run)]
    assert all(_wait_ok(p) for p in pids)
    assert len(builds.read_text().split()) == 1
    seen = {p.read_text() for p in ids.iterdir()}
    store = ImageStore()
    assert len(seen) == 1 and seen == {store.get("mini").id}
    assert os.listdir(store.images_dir) == [seen.pop()] and _leftovers(store) == []


def test_concurrent_create_of_one_name_has_one_winner(store, tmp_path):
    import time

    def slow(rootfs: Path):
        time.sleep(0.3)
        (rootfs / "f").write_text(str(os.getpid()))

    pids = [_in_child(lambda: store.create("same", slow, source="s")) for _ in range(2)]
    results = sorted(_wait_ok(p) for p in pids)
    assert results == [False, True]  # the second waited, then found the name taken
    assert len(os.listdir(store.images_dir)) == 1 and _leftovers(store) == []


# -- exit codes of image commands ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["image", "import", "{tar}", "../bad"],
        ["image", "import-dir", "{dir}", "a b"],
        ["image", "inspect", "nothere"],
        ["image", "inspect", "../x"],
        ["image", "rm", "nothere"],
        ["image", "import", "{dir}/missing.tar", "ok"],
    ],
)
def test_image_errors_exit_1(mc_dirs, tmp_path, capsys, argv):
    t = _tar(tmp_path / "a.tar", {"f": b"1"})
    argv = [a.format(tar=t, dir=tmp_path) for a in argv]
    code, out, err = mc(capsys, *argv)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("minicontainer: error: ")


def test_image_flag_errors_stay_125_and_run_keeps_125(mc_dirs, capsys):
    code, _, err = mc(capsys, "image", "ls", "--format", "xml")
    assert code == 125 and "minicontainer: error:" in err
    code, _, err = mc(capsys, "run", "--name", "../x", "mini")
    assert code == 125 and "minicontainer: error:" in err


# -- an OSError on the store is one line --------------------------------------------------------------


def test_an_oserror_inside_the_store_is_one_line(mc_dirs, capsys):
    home, _ = mc_dirs
    store = ImageStore(home)
    store.ensure()
    (store.refs_dir / "mini").mkdir()  # read_text() on it: IsADirectoryError, even for root
    code, out, err = mc(capsys, "image", "inspect", "mini")
    assert code == 1 and out == ""
    where = store.refs_dir / "mini"
    assert err.splitlines() == [f"minicontainer: error: using the image store at {where}: Is a directory"]


class _FakeStore:
    store_kind = paths.StoreKind("the fake store", "FAKE_STORE_HOME", "HOME", top="top")

    def __init__(self, top):
        self.top = top

    @paths.on_store
    def fail(self, path, err=errno.EACCES):
        raise OSError(err, os.strerror(err), str(path))


@pytest.mark.parametrize("env, hint", [("/elsewhere", "run as root, or unset FAKE_STORE_HOME"),
                                        (None, "run as root, or as yourself with your own HOME")])
def test_a_user_in_someone_elses_store_is_told_what_to_do(tmp_path, monkeypatch, env, hint):
    monkeypatch.setattr(paths, "_host_uid", lambda: 1000)
    if env:
        monkeypatch.setenv("FAKE_STORE_HOME", env)
    else:
        monkeypatch.delenv("FAKE_STORE_HOME", raising=False)
    store = _FakeStore(tmp_path / "top")
    # inside the store, and on the way to it (mkdir -p of its parents)
    for path in (tmp_path / "top" / "refs" / "x", tmp_path):
        with pytest.raises(MiniError) as exc:
            store.fail(path)
        assert exc.value.message == f"using the fake store at {path}: Permission denied"
        assert exc.value.hint.startswith(hint)


def test_errors_elsewhere_and_roots_errors_are_left_alone(tmp_path, monkeypatch):
    store = _FakeStore(tmp_path / "top")
    with pytest.raises(PermissionError):
        store.fail(tmp_path / "other" / "file.tar")  # not the store's: its caller explains it
    monkeypatch.setattr(paths, "_host_uid", lambda: 0)
    with pytest.raises(MiniError) as exc:
        store.fail(tmp_path / "top" / "x", errno.ENOSPC)
    assert exc.value.hint == "the disk (or tmpfs) is full"  # the errno's own hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory; the root tier runs this as another user")
def test_an_unreadable_store_is_one_line(mc_dirs, capsys):
    home, _ = mc_dirs
    ImageStore(home).ensure()
    os.chmod(home, 0)
    try:
        code, _, err = mc(capsys, "image", "ls")
    finally:
        os.chmod(home, 0o700)
    assert code == 1 and len(err.splitlines()) == 1 and "Permission denied" in err
    assert "unset MINICONTAINER_HOME" in err


def test_a_plain_image_import_says_what_clicks_says_without_click(tmp_path, monkeypatch, capsys):
    """main.py reads `image import FILE NAME [--force]` itself (commands/
    fastparse.py, commands/image_import.py): the same lines and exit codes as
    the click command, step by step in two stores, for imports, a shared one,
    a forced one and refusals."""
    import subprocess
    import sys

    from minicontainer.main import main as lean

    def ours(*argv):
        with pytest.raises(SystemExit) as exc:
            lean(list(argv))
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    t = _tar(tmp_path / "a.tar", {"etc/os-release": b"ID=test\n"})
    steps = [(str(t), "one"), (str(t), "one"), ("--force", str(t), "one"), (str(t), "two"),
             (str(tmp_path / "none.tar"), "x"), (str(t), "../bad")]
    def by_click(*argv):
        with monkeypatch.context() as m:
            m.setattr("minicontainer.commands.fastparse.parse_image_import", lambda argv: None)
            return ours("image", "import", *argv)

    runs = {"click": by_click, "lean": lambda *argv: ours("image", "import", *argv)}
    seen = {}
    for who, run in runs.items():
        monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / who / "home"))
        monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / who / "run"))
        seen[who] = [run(*argv) for argv in steps]
    assert seen["lean"] == seen["click"]
    assert [code for code, _, _ in seen["lean"]] == [0, 1, 0, 0, 1, 1]
    assert seen["lean"][0][1].startswith("one ") and "minicontainer: error:" in seen["lean"][4][2]
    probe = ("import sys\nfrom minicontainer.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nprint('click' in sys.modules, 'dataclasses' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", probe, "image", "import", str(t), "three"], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.splitlines()[-1] == "False False" and p.stdout.startswith("three ")
