"""Volumes for real: named, anonymous (-v /path, an image's VOLUME), --mount
bind/volume/tmpfs, the volume command, and that nothing is left behind.

The image store (and so the volume store, $MINICONTAINER_HOME/volumes) is
shared by the session: every test names its volumes with its own suffix and
removes what it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from helpers import mc

pytestmark = pytest.mark.root


@pytest.fixture
def vol(mc_home):
    """A function making this test's volume names; those left at the end are removed."""
    suffix = uuid.uuid4().hex[:8]
    before = set(_names())

    def name(base: str) -> str:
        return f"{base}-{suffix}"

    yield name
    for leftover in set(_names()) - before:
        mc("volume", "rm", "-f", leftover)


def _names() -> list[str]:
    return mc("volume", "ls", "-q", check=0).stdout.split()


def _volume_dir(mc_home, name: str):
    return mc_home / "volumes" / name


def _store_listing(mc_home) -> set[str]:
    """The volume store's entries (its lock file aside), empty before the first volume."""
    d = mc_home / "volumes"
    return {n for n in os.listdir(d) if n != ".lock"} if d.exists() else set()


def _one_line_error(proc) -> None:
    assert proc.returncode == 125, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("minicontainer: error:"), proc.stderr


def _no_containers(tmp_path) -> bool:
    d = tmp_path / "run" / "containers"
    return not d.exists() or os.listdir(d) == []


# -- data across containers ------------------------------------------------------------------


def test_data_written_by_one_container_is_read_by_the_next(vol, mc_home):
    v = vol("data")
    mc("run", "--rm", "-v", f"{v}:/data", "mini", "sh", "-c", "echo kept > /data/f", check=0)
    out = mc("run", "--rm", "--mount", f"type=volume,src={v},target=/data", "mini", "cat", "/data/f", check=0)
    assert out.stdout == "kept\n"
    assert (_volume_dir(mc_home, v) / "_data" / "f").read_text() == "kept\n"
    ls = json.loads(mc("volume", "ls", "--format", "json", check=0).stdout)
    mine = next(e for e in ls if e["Name"] == v)
    assert mine["Mountpoint"] == str(_volume_dir(mc_home, v) / "_data") and not mine["Anonymous"]
    assert mc("volume", "rm", v, check=0).stdout == f"{v}\n"
    assert not _volume_dir(mc_home, v).exists()


def test_a_new_volume_gets_the_images_files_and_an_old_one_keeps_its_own(vol, mc_home):
    v = vol("etc")
    out = mc("run", "--rm", "-v", f"{v}:/etc", "mini", "sh", "-c", "cat /etc/hostname >/dev/null; ls /etc", check=0)
    assert "passwd" in out.stdout.split()
    data = _volume_dir(mc_home, v) / "_data"
    assert "passwd" in os.listdir(data)
    (data / "passwd").write_text("mine\n")
    out = mc("run", "--rm", "-v", f"{v}:/etc", "mini", "cat", "/etc/passwd", check=0)
    assert out.stdout == "mine\n"  # filled once, when new
    nocopy = vol("empty")
    out = mc("run", "--rm", "--mount", f"type=volume,src={nocopy},dst=/etc,volume-nocopy", "mini", "ls", "-A", "/etc",
             check=0)
    assert out.stdout == ""


def test_volume_rm_is_refused_while_a_container_uses_it(vol, mc_home):
    v = vol("busy")
    mc("run", "--name", "user1", "-v", f"{v}:/data", "mini", "true", check=0)  # exited, not removed
    proc = mc("volume", "rm", v)
    assert proc.returncode == 1 and "in use by container user1" in proc.stderr
    assert mc("volume", "rm", "-f", v).returncode == 1  # -f forgives a missing volume, not one in use
    info = json.loads(mc("volume", "inspect", v, check=0).stdout)
    assert info[0]["UsedBy"] == ["user1"] and info[0]["CreatedAt"]
    mounts = json.loads(mc("inspect", "user1", check=0).stdout)[0]["Mounts"]
    assert mounts == [{"Type": "volume", "Name": v, "Source": str(_volume_dir(mc_home, v) / "_data"),
                       "Destination": "/data", "Driver": "local", "RW": True, "Anonymous": False}]
    mc("rm", "user1", check=0)
    assert _volume_dir(mc_home, v).is_dir()  # a named volume outlives its container (rm -v too)
    mc("volume", "rm", v, check=0)
    assert mc("volume", "rm", "-f", v, check=0).stdout == ""


# -- anonymous volumes ---------------------------------------------------------------------


def _anonymous_of(name: str) -> list[str]:
    mounts = json.loads(mc("inspect", name, check=0).stdout)[0]["Mounts"]
    return [m["Name"] for m in mounts if m.get("Anonymous")]


def test_rm_v_removes_anonymous_volumes_and_rm_alone_leaves_them_to_prune(vol, mc_home):
    mc("run", "--name", "anon1", "-v", "/scratch", "mini", "sh", "-c", "echo x > /scratch/f", check=0)
    (a1,) = _anonymous_of("anon1")
    assert (_volume_dir(mc_home, a1) / "_data" / "f").read_text() == "x\n"
    mc("rm", "-v", "anon1", check=0)
    assert not _volume_dir(mc_home, a1).exists()
    mc("run", "--name", "anon2", "--mount", "type=volume,dst=/scratch", "mini", "true", check=0)
    (a2,) = _anonymous_of("anon2")
    mc("rm", "anon2", check=0)
    assert _volume_dir(mc_home, a2).is_dir()  # dangling, as in docker
    pruned = mc("volume", "prune", "-f", check=0).stdout
    assert a2 in pruned.split() and not _volume_dir(mc_home, a2).exists()


def test_run_rm_removes_its_anonymous_volumes_foreground_and_detached(mc_home, tmp_path):
    before = _store_listing(mc_home)
    mc("run", "--rm", "-v", "/scratch", "mini", "true", check=0)
    cid = mc("run", "-d", "--rm", "-v", "/scratch", "mini", "true", check=0).stdout.strip()
    mc("wait", cid)
    assert _store_listing(mc_home) == before
    assert _no_containers(tmp_path)


def test_an_anonymous_volume_survives_restarts_of_its_container(vol):
    mc("create", "--name", "again", "-v", "/count", "mini", "sh", "-c", "echo . >> /count/n; wc -l < /count/n",
       check=0)
    mc("start", "-a", "again", check=0)
    out = mc("start", "-a", "again", check=0)
    assert out.stdout.strip() == "2"
    cid = mc("run", "-d", "--name", "again-d", "-v", "/count", "mini", "sh", "-c", "echo . >> /count/n", check=0)
    mc("wait", "again-d")
    mc("start", "again-d", check=0)
    mc("wait", "again-d")
    (a,) = _anonymous_of("again-d")
    assert cid.stdout.strip() and mc("run", "--rm", "-v", f"{a}:/c", "mini", "wc", "-l", "/c/n",
                                     check=0).stdout.split()[0] == "2"
    mc("rm", "-v", "again", "again-d", check=0)
    assert a not in _names()


def test_an_images_volume_is_an_anonymous_volume_filled_from_it(vol, tmp_path, mc_home):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM mini\nRUN mkdir -p /srv/db && echo seed > /srv/db/init\nVOLUME /srv/db\n")
    image = vol("volimg")
    mc("build", "-t", image, str(ctx), check=0, timeout=120)
    try:
        mc("run", "--name", "imgvol", image, "sh", "-c", "cat /srv/db/init && echo more >> /srv/db/init", check=0)
        (a,) = _anonymous_of("imgvol")
        assert (_volume_dir(mc_home, a) / "_data" / "init").read_text() == "seed\nmore\n"
        mine = vol("db")  # a mount of the run at the same path replaces the image's volume
        mc("run", "--rm", "-v", f"{mine}:/srv/db", image, "true", check=0)
        assert (_volume_dir(mc_home, mine) / "_data" / "init").read_text() == "seed\n"
        mc("rm", "-v", "imgvol", check=0)
        assert not _volume_dir(mc_home, a).exists()
    finally:
        mc("image", "rm", image)


# -- --mount bind and tmpfs ------------------------------------------------------------------------


def test_mount_bind_readonly_and_tmpfs(tmp_path):
    site = tmp_path / "dist"
    site.mkdir()
    (site / "index.html").write_text("hello")
    script = ("cat /usr/share/nginx/html/index.html; echo; echo x > /usr/share/nginx/html/y; echo ro=$?; "
              "grep ' /scratch ' /proc/self/mountinfo; stat -c %a /scratch")
    proc = mc("run", "--rm", "--mount", f"type=bind,source={site},target=/usr/share/nginx/html,readonly",
              "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770", "mini", "sh", "-c", script,
              check=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == "hello" and lines[1] == "ro=1" and "size=1024k" in lines[2] and lines[3] == "1770"
    assert not (site / "y").exists()


def test_bind_propagation_rslave_brings_later_host_mounts_in(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    # the test's own shared mount point: propagation needs a peer group on the host side
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        for name, extra in (("slave", ",bind-propagation=rslave"), ("private", "")):
            mc("run", "-d", "--name", name, "--mount", f"type=bind,source={src},target=/x{extra}", "mini",
               "sleep", "60", check=0)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "sub")], check=True)
        try:
            (src / "sub" / "f").write_text("late")
            assert mc("exec", "slave", "cat", "/x/sub/f", check=0).stdout == "late"
            assert mc("exec", "private", "cat", "/x/sub/f").returncode != 0
            mountinfo = mc("exec", "slave", "cat", "/proc/self/mountinfo", check=0).stdout
            assert any(" /x " in line and "master:" in line for line in mountinfo.splitlines())
        finally:
            mc("rm", "-f", "slave", "private", check=0)
            subprocess.run(["umount", str(src / "sub")], check=True)
    finally:
        subprocess.run(["umount", str(src)], check=True)


def test_explain_shows_the_volume_directory(vol, mc_home):
    v = vol("shown")
    err = mc("run", "--rm", "--explain", "-v", f"{v}:/data:ro", "mini", "true", check=0).stderr
    assert f"VOLUMES={mc_home}/volumes" in err
    assert f"use volume {v} at $VOLUMES/{v}, created now if it does not exist" in err
    assert f"bind-mount $VOLUMES/{v}/_data on /data" in err and "make /data read-only" in err


# -- bad input: one line, nothing left ----------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["-v", "./dist:/usr/share/nginx/html"], ["relative path", "$(pwd)"]),
    (["--mount", "type=bind,source=dist,target=/x"], ["relative path"]),
    (["--mount", "type=bind,source=/no/such/dir,target=/x"], ["does not exist"]),
    (["-v", "bad%name:/x"], ["invalid volume name"]),
    (["--mount", "type=volume,src=a b,dst=/x"], ["invalid volume name"]),
    (["--mount", "type=tmpfs,target=/x,tmpfs-size=huge"], ["tmpfs-size"]),
    (["-v", "samename:/x", "--tmpfs", "/x"], ["duplicate mount point"]),
])
def test_bad_volume_input_is_one_line_and_leaves_nothing(args, words, mc_home, tmp_path):
    before = _store_listing(mc_home)
    proc = mc("run", "--rm", *args, "mini", "true")
    _one_line_error(proc)
    for w in words:
        assert w in proc.stderr
    assert _store_listing(mc_home) == before
    assert _no_containers(tmp_path)


@pytest.mark.parametrize("how", ["named", "anonymous", "existing"])
def test_a_volume_target_through_a_symlink_of_the_image_is_refused(how, vol, tmp_path, mc_home):
    from minicontainer.images.store import ImageStore

    rootfs = tmp_path / "evil"
    subprocess.run(["cp", "-a", str(ImageStore(mc_home).get("mini").rootfs), str(rootfs)], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), rootfs / "jump")
    name = vol("escape")
    if how == "existing":
        mc("volume", "create", name, check=0)
    before = _store_listing(mc_home)
    arg = "/jump/sub" if how == "anonymous" else f"{name}:/jump/sub"
    proc = mc("run", "--rm", "-v", arg, str(rootfs), "true")
    _one_line_error(proc)
    assert "symlink at /jump" in proc.stderr
    assert os.listdir(outside) == []
    # the run's new volume went with it; one that existed before stays
    assert _store_listing(mc_home) == before
    assert _no_containers(tmp_path)
