"""Root tier: import is lossless (owners via lchown, setuid, sticky, absolute
symlinks, hard links; reliability case A7), the store is private (A10), a
full disk leaves nothing (A9), and an imported tarball runs."""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from helpers import mc
from minicontainer.errors import ImageError
from minicontainer.images import importer
from minicontainer.images.store import ImageStore

pytestmark = pytest.mark.root

NOBODY = 65534


# -- a manifest: what must come out exactly -------------------------------------------------


def manifest_of_tar(path: Path) -> dict:
    """(type, mode, uid, gid, linkname, sha256) per member; the last member of
    a name wins, as in extraction; devices and FIFOs are skipped by design."""
    out = {}
    with tarfile.open(path) as tf:
        for m in tf:
            name = m.name.lstrip("/").rstrip("/")
            if name in ("", "."):
                continue
            if m.ischr() or m.isblk() or m.isfifo():
                continue
            if m.islnk():
                target = out[m.linkname.lstrip("/")]
                out[name] = target
                continue
            digest = hashlib.sha256(tf.extractfile(m).read()).hexdigest() if m.isreg() else None
            kind = "f" if m.isreg() else "d" if m.isdir() else "l"
            mode = None if m.issym() else m.mode & 0o7777
            out[name] = (kind, mode, m.uid, m.gid, m.linkname if m.issym() else "", digest)
    return out


def manifest_of_tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                kind, digest = "f", hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                kind, digest = ("d" if stat.S_ISDIR(st.st_mode) else "l"), None
            mode = None if kind == "l" else stat.S_IMODE(st.st_mode)
            out[rel] = (kind, mode, st.st_uid, st.st_gid, os.readlink(p) if kind == "l" else "", digest)
    return out


def _member(tf, name, kind, *, data=b"", mode=0o644, uid=0, gid=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.linkname = kind, mode, uid, gid, linkname
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mtime = 1_700_000_000
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.fixture
def crafted_tar(tmp_path) -> Path:
    path = tmp_path / "rootfs.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
        _member(tf, "bin", D, mode=0o755)
        _member(tf, "bin/su", F, data=b"\x7fELF su", mode=0o4755)
        _member(tf, "bin/newgrp", F, data=b"\x7fELF ng", mode=0o6755)
        _member(tf, "bin/sudo-ish", F, data=b"\x7fELF", mode=0o4711, uid=0, gid=27)
        _member(tf, "tmp", D, mode=0o1777)
        _member(tf, "var", D, mode=0o755)
        _member(tf, "var/mail", D, mode=0o2775, gid=8)
        _member(tf, "home", D, mode=0o755)
        _member(tf, "home/user", D, mode=0o750, uid=1000, gid=1000)
        _member(tf, "home/user/.profile", F, data=b"PS1='$ '\n", mode=0o600, uid=1000, gid=1000)
        _member(tf, "home/user/link", L, linkname="/etc/hostname", uid=1000, gid=1001)  # lchown
        _member(tf, "etc", D)
        _member(tf, "etc/localtime", L, linkname="/usr/share/zoneinfo/UTC")
        _member(tf, "etc/hostname", F, data=b"crafted\n")
        _member(tf, "etc/shadow", F, data=b"root:*:1::::::\n", mode=0o640, gid=42)
        _member(tf, "usr/bin/perl", F, data=b"\x7fELF perl", mode=0o755)
        _member(tf, "usr/bin/perl5.36", H, linkname="usr/bin/perl")
        _member(tf, "big/owner", F, data=b"x", uid=2**21 + 5, gid=2**21 + 6)  # beyond 16 bits
    return path


def test_crafted_tarball_is_imported_losslessly(mc_dirs, crafted_tar):
    out = importer.import_tarball(ImageStore(), str(crafted_tar), "crafted")
    got = manifest_of_tree(out.image.rootfs)
    want = manifest_of_tar(crafted_tar)
    for implicit in ("usr", "usr/bin", "big"):  # made on the way, tar's default mode
        want[implicit] = ("d", 0o755, 0, 0, "", None)
    assert got == want
    r = out.image.rootfs
    assert os.stat(r / "usr/bin/perl").st_ino == os.stat(r / "usr/bin/perl5.36").st_ino
    assert os.lstat(r / "home/user/link").st_uid == 1000  # the link itself, not its target


def test_host_tree_round_trips_with_tar_compare(mc_dirs, tmp_path):
    """A real GNU tar archive of host directories (with their absolute
    symlinks, setuid binaries, odd owners): ``tar --compare`` against the
    imported tree finds no difference."""
    path = tmp_path / "host.tar"
    # /etc (absolute symlinks, 0640 root:shadow files), /usr/sbin, and the
    # setuid/setgid programs of /usr/bin (all of /usr/bin can be huge on a dev box)
    dirs = [d for d in ("etc", "usr/sbin") if os.path.isdir("/" + d)]
    dirs += sorted(
        f"usr/bin/{n}" for n in os.listdir("/usr/bin")
        if os.lstat(f"/usr/bin/{n}").st_mode & (stat.S_ISUID | stat.S_ISGID) or n in ("ls", "sh", "cat")
    )
    made = subprocess.run(["tar", "--numeric-owner", "-C", "/", "-cf", str(path), *dirs], stderr=subprocess.DEVNULL)
    assert made.returncode in (0, 1)  # 1: "file changed as we read it" on a live host
    out = importer.import_tarball(ImageStore(), str(path), "host")
    proc = subprocess.run(["tar", "--compare", "--numeric-owner", "-f", str(path), "-C", str(out.image.rootfs)],
                          capture_output=True, text=True)
    # GNU tar compares contents, mode (incl. setuid/sticky), uid/gid, mtime, symlink targets.
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    abs_links = [p for p in out.image.rootfs.joinpath("etc").rglob("*") if p.is_symlink() and os.readlink(p).startswith("/")]
    assert abs_links, "expected absolute symlinks in /etc"


# -- the store is private ----------------------------------------------------------------------------


def _as_nobody(fn) -> int:
    """Run ``fn`` in a forked child as uid/gid 65534; its return is the exit code."""
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_unprivileged_user_cannot_reach_the_store(monkeypatch, crafted_tar):
    # A world-traversable parent (pytest's own tmp dirs are 0700, which would
    # hide the store whatever its mode): the store itself must be the wall.
    parent = Path(tempfile.mkdtemp(prefix="mc-store-perm-"))
    try:
        os.chmod(parent, 0o755)
        monkeypatch.setenv("MINICONTAINER_HOME", str(parent / "home"))
        img = importer.import_tarball(ImageStore(), str(crafted_tar), "perm").image
        su = img.rootfs / "bin" / "su"
        assert stat.S_IMODE(os.stat(su).st_mode) == 0o4755
        store = ImageStore()
        for d in (store.home, store.images_dir, store.refs_dir, store.tmp_dir, img.rootfs.parent):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d

        def probe() -> int:
            os.listdir(parent)  # the parent is open to everyone ...
            for attempt in (lambda: os.listdir(store.home), lambda: os.stat(su),
                            lambda: os.open(su, os.O_RDONLY), lambda: os.listdir(img.rootfs)):
                try:
                    attempt()
                    return 1  # ... the store is not
                except PermissionError:
                    pass
            try:
                os.execv(str(su), [str(su)])
            except PermissionError:
                return 0
            return 2

        assert _as_nobody(probe) == 0
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# -- a full disk --------------------------------------------------------------------------------------


def _umount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(path), 2)  # MNT_DETACH


def test_full_tmpfs_leaves_nothing_and_frees_space(monkeypatch, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        monkeypatch.setenv("MINICONTAINER_HOME", str(mnt / "home"))
        store = ImageStore()
        store.ensure()
        free_before = os.statvfs(mnt).f_bfree
        path = tmp_path / "big.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(3):
                data = os.urandom(2 << 20)
                ti = tarfile.TarInfo(f"blob{i}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        with pytest.raises(ImageError) as exc:
            importer.import_tarball(store, str(path), "big")
        assert "No space left on device" in str(exc.value) and "full" in exc.value.hint
        assert os.listdir(store.tmp_dir) == [] and os.listdir(store.images_dir) == []
        assert os.listdir(store.refs_dir) == []
        assert os.statvfs(mnt).f_bfree == free_before
    finally:
        _umount(str(mnt))


# -- an imported tarball runs, and its image stays untouched --------------------------------------------


def _real_tarball(tmp_path: Path, mc_home: Path) -> Path:
    """The bookworm tarball scripts/bench caches (or the older bench-import did), if this
    machine has it; else a GNU tar of the built-in mini image plus the host's os-release."""
    for cand in (os.environ.get("MINICONTAINER_TEST_TARBALL"), "/var/cache/minicontainer-bench/bookworm.tar",
                 "/var/cache/minicontainer/bench/bookworm.tar"):
        if cand and os.path.isfile(cand):
            return Path(cand)
    mini = ImageStore(mc_home).get("mini")
    tree = tmp_path / "tree"
    shutil.copytree(mini.rootfs, tree, symlinks=True)
    (tree / "etc").mkdir(exist_ok=True)
    shutil.copyfile("/etc/os-release", tree / "etc" / "os-release", follow_symlinks=True)
    path = tmp_path / "export.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(path), *sorted(os.listdir(tree))], check=True)
    return path


def test_imported_tarball_runs_and_image_is_unchanged(mc_home, tmp_path):
    tarball = _real_tarball(tmp_path, mc_home)
    proc = mc("image", "import", str(tarball), "real-import-test", timeout=300)
    assert proc.returncode == 0, proc.stderr
    try:
        img = ImageStore(mc_home).get("real-import-test")
        before = manifest_of_tree(img.rootfs)
        proc = mc("run", "--rm", "real-import-test", "/bin/sh", "-c",
                  "cat /etc/os-release && echo changed > /etc/os-release && echo new > /written && cat /written",
                  timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "ID=" in proc.stdout and proc.stdout.rstrip().endswith("new")
        assert manifest_of_tree(img.rootfs) == before
        assert not (img.rootfs / "written").exists()
    finally:
        mc("image", "rm", "real-import-test")


# -- file capabilities: the one extended attribute kept ------------------------------------------------

# capabilities(7), VFS_CAP_REVISION_2: magic|effective, then permitted/inheritable
# low and high words. cap_net_raw is bit 13: what Debian gives /bin/ping.
CAP_NET_RAW_EP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def test_file_capabilities_survive_and_overlay_xattrs_do_not(mc_dirs, tmp_path):
    path = tmp_path / "caps.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("bin/ping")
        ti.size, ti.mode = 4, 0o755
        ti.pax_headers = {
            "SCHILY.xattr.security.capability": CAP_NET_RAW_EP.decode("utf-8", "surrogateescape"),
            "SCHILY.xattr.trusted.overlay.redirect": "/etc",
            "SCHILY.xattr.user.note": "dropped",
        }
        tf.addfile(ti, io.BytesIO(b"\x7fELF"))
    img = importer.import_tarball(ImageStore(), str(path), "caps").image
    ping = img.rootfs / "bin" / "ping"
    assert os.getxattr(ping, "security.capability") == CAP_NET_RAW_EP
    assert [x for x in os.listxattr(ping) if not x.startswith("security.")] == []  # no trusted.*, user.*

    copy = importer.import_dir(ImageStore(), str(img.rootfs), "caps-copy").image
    assert os.getxattr(copy.rootfs / "bin" / "ping", "security.capability") == CAP_NET_RAW_EP
