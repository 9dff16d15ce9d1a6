"""Hostile and malformed tarballs (reliability cases A1-A9), compression
detection, lossless extraction of what an unprivileged user can check.

Every hostile import runs next to a canary directory; afterwards the canary
must be byte-for-byte unchanged, nothing new may appear beside the store,
and the result is a clean refusal (nothing in the store) or a safe image.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import resource
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from minicontainer.errors import ImageError
from minicontainer.images import importer
from minicontainer.images.store import ImageStore
from minicontainer.images.tarread import (
    BadHeader,
    Limits,
    detect_compression,
    extract_tar,
    member_parts,
    parse_header,
    parse_pax,
)

pytestmark = pytest.mark.unit


# -- building archives ---------------------------------------------------------------


def _info(name, kind, *, mode=0o644, size=0, linkname="", mtime=1_600_000_000, uid=0, gid=0):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
    return ti


def F(name, data=b"x", mode=0o644, **kw):
    return (_info(name, tarfile.REGTYPE, mode=mode, size=len(data), **kw), data)


def D(name, mode=0o755, **kw):
    return (_info(name, tarfile.DIRTYPE, mode=mode, **kw), None)


def S(name, target, **kw):
    return (_info(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **kw), None)


def H(name, target, **kw):
    return (_info(name, tarfile.LNKTYPE, linkname=target, **kw), None)


def SPECIAL(name, kind):
    return (_info(name, kind, mode=0o666), None)


def tar_bytes(members, fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def write_tar(path: Path, members, fmt=tarfile.GNU_FORMAT) -> Path:
    path.write_bytes(tar_bytes(members, fmt))
    return path


# -- the canary and the store ---------------------------------------------------------


def snapshot(top: Path, skip: tuple[str, ...] = ()) -> dict:
    """Everything about a tree that an escape could change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        if rel.split(os.sep)[0] in skip:
            dirnames[:] = []
            continue
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            if os.path.relpath(p, top) in skip:
                continue
            st = os.lstat(p)
            extra = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink, st.st_size, extra)
    return out


class Env:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.store = ImageStore(self.home)
        self.canary = tmp_path / "canary"
        (self.canary / "victimdir").mkdir(parents=True)
        self.victim = self.canary / "victim"
        self.victim.write_text("secret\n")
        os.chmod(self.victim, 0o600)
        (self.canary / "victimdir" / "keep").write_text("keep\n")
        self.tars = tmp_path / "tars"
        self.tars.mkdir()
        self._n = 0

    def tar(self, members, fmt=tarfile.GNU_FORMAT) -> Path:
        self._n += 1
        return write_tar(self.tars / f"t{self._n}.tar", members, fmt)

    def before(self):
        self._snap = snapshot(self.tmp, skip=("home",))
        self._victim_ino = os.stat(self.victim).st_ino

    def check_outside(self):
        assert snapshot(self.tmp, skip=("home",)) == self._snap, "something outside the store changed"

    def check_nothing_stored(self):
        for sub in ("images", "refs", "tmp"):
            d = self.home / sub
            assert not d.exists() or sorted(os.listdir(d)) == [], f"{sub}/ is not empty"
        assert self.store.list() == []

    def rootfs_inodes(self, image) -> set:
        inos = set()
        for dirpath, dirnames, filenames in os.walk(image.rootfs):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                inos.add((st.st_dev, st.st_ino))
        return inos

    def refuse(self, members, match, fmt=tarfile.GNU_FORMAT, limits=Limits()):
        path = self.tar(members, fmt)
        self.before()
        with pytest.raises(ImageError, match=match) as exc:
            importer.import_tarball(self.store, str(path), "hostile", limits=limits)
        self.check_outside()
        self.check_nothing_stored()
        assert exc.value.exit_code == 1
        return exc.value

    def accept(self, members, fmt=tarfile.GNU_FORMAT, name="img"):
        path = self.tar(members, fmt)
        self.before()
        outcome = importer.import_tarball(self.store, str(path), name)
        self.check_outside()
        victim = os.stat(self.victim)
        assert (victim.st_dev, victim.st_ino) not in self.rootfs_inodes(outcome.image)
        return outcome


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


# -- A1, A2: names that leave the root ------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/../x", "a/../../x", "./../x", "a/b/../../../x", ".."])
def test_a1_dotdot_escape_refused(env, name):
    env.refuse([D("a"), F(name, b"pwned")], "leaves the root")


def test_a1_dotdot_inside_is_resolved_lexically(env):
    out = env.accept([D("a"), F("a/../b", b"fine")])
    assert (out.image.rootfs / "b").read_bytes() == b"fine"


def test_a2_absolute_name_is_stripped(env):
    target = str(env.canary / "x")  # /tmp/.../canary/x: absolute
    out = env.accept([F(target, b"inside")])
    assert not (env.canary / "x").exists()
    assert (out.image.rootfs / target.lstrip("/")).read_bytes() == b"inside"


# -- A3: symlink, then write through it ------------------------------------------------


@pytest.mark.parametrize("target", ["ABS", "../../../../../../../../../canary", "/"])
def test_a3_write_through_symlink_refused(env, target):
    target = str(env.canary) if target == "ABS" else target
    err = env.refuse([S("s", target), F("s/f", b"pwned"), F("s/victim", b"pwned")], "written through 's'")
    assert "symlink" in str(err)


def test_a3_loophole_in_subdir_refused(env):
    env.refuse(
        [D("dir"), S("dir/loophole", "../../../../../../../../canary/victimdir"), D("dir/loophole/newdir"),
         F("dir/loophole/newdir/newfile", b"pwned")],
        "written through 'dir/loophole'",
    )


def test_a3_split_across_two_archives(env):
    """Each import gets a fresh root: the first archive's symlink does not
    exist when the second one is extracted."""
    first = env.accept([S("s", str(env.canary))], name="first")
    second = env.accept([D("s"), F("s/f", b"data")], name="second")
    assert os.path.islink(first.image.rootfs / "s")
    assert (second.image.rootfs / "s" / "f").read_bytes() == b"data"
    assert not (env.canary / "f").exists()


def test_a3_directory_replaced_by_symlink(env):
    """A later member replaces a directory with a symlink; what follows must
    not go through it (the cached directory fd must not be reused either)."""
    env.refuse(
        [D("d"), F("d/a", b"1"), (_info("d", tarfile.SYMTYPE, linkname=str(env.canary)), None)],
        "not empty",
    )
    env.refuse(
        [D("d"), (_info("d", tarfile.SYMTYPE, linkname=str(env.canary)), None), F("d/x", b"pwned")],
        "written through 'd'",
    )


# -- A4: entry replacement ----------------------------------------------------------------


def test_a4_file_symlink_file_does_not_touch_victim(env):
    out = env.accept([F("v", b"one"), S("v", str(env.victim)), F("v", b"three")])
    v = out.image.rootfs / "v"
    assert not v.is_symlink()
    assert v.read_bytes() == b"three"
    assert env.victim.read_text() == "secret\n"


def test_a4_symlink_then_dir_then_file(env):
    out = env.accept([S("d", str(env.canary)), D("d"), F("d/f", b"in")])
    assert not (out.image.rootfs / "d").is_symlink()
    assert (out.image.rootfs / "d" / "f").read_bytes() == b"in"


# -- A5: hard links ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "linkname, match",
    [
        ("VICTIM", "not an earlier regular file"),  # absolute: stripped, so not a member
        ("../victim", "leaves the root"),
        ("../../../../../../../canary/victim", "leaves the root"),
        ("s/victim", "not an earlier regular file"),  # through a symlink
        ("l", "not an earlier regular file"),  # a hard link to a symlink
        ("nothere", "not an earlier regular file"),
        ("d", "not an earlier regular file"),  # a directory
    ],
)
def test_a5_bad_hardlinks_refused(env, linkname, match):
    linkname = str(env.victim) if linkname == "VICTIM" else linkname
    victim_before = os.stat(env.victim)
    env.refuse([S("s", str(env.canary)), S("l", str(env.victim)), D("d"), H("h", linkname, mode=0o777)], match)
    after = os.stat(env.victim)
    assert (after.st_mode, after.st_mtime_ns, after.st_nlink) == (
        victim_before.st_mode, victim_before.st_mtime_ns, victim_before.st_nlink)


def test_a5_hardlink_to_replaced_member_refused(env):
    # f was a regular file, then became a symlink to the victim: linking f now
    # would link the symlink (or, with the wrong flag, the victim).
    env.refuse([F("f", b"1"), S("f", str(env.victim)), H("h", "f")], "not an earlier regular file")


def test_a5_good_hardlink_shares_inode(env):
    out = env.accept([D("bin"), F("bin/a", b"same", mode=0o755), H("bin/b", "bin/a"), H("/bin/c", "/bin/a")])
    a, b, c = (os.stat(out.image.rootfs / "bin" / n) for n in "abc")
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3


# -- A6: realpath-style bypasses --------------------------------------------------------------


def test_a6_symlink_chain_longer_than_path_max(env):
    """The shape of CVE-2025-4517's exploit: deep long-named directories and
    a chain of symlinks whose realpath exceeds PATH_MAX, then a link that
    climbs out and a write through it. We never resolve links: refused."""
    comp = "d" * 247
    members, path = [], ""
    steps = "abcdefghijklmnop"
    for i, step in enumerate(steps):
        members.append(D(os.path.join(path, comp)))
        members.append(S(os.path.join(path, step), comp))
        path = os.path.join(path, comp)
    chain = "/".join(steps)
    members.append(S("l" * 254, chain + "/" + "../" * len(steps)))
    members.append(S("escape", "l" * 254 + "/" + "../" * 8 + "canary"))
    members.append(F("escape/pwned", b"pwned"))
    env.refuse(members, "written through 'escape'")


def test_a6_hardlink_through_chain_refused(env):
    env.refuse([S("a", "b"), S("b", str(env.canary)), H("h", "a/victim")], "not an earlier regular file")


@pytest.mark.parametrize("target", ["", "x" * 4100])
def test_a6_empty_or_overlong_symlink_refused(env, target):
    env.refuse([S("s", target)], "empty, NUL-containing or over-long target", fmt=tarfile.PAX_FORMAT)


# -- A8: special members ------------------------------------------------------------------------


def test_a8_devices_and_fifos_skipped_and_counted(env):
    out = env.accept([
        D("dev"), SPECIAL("dev/null", tarfile.CHRTYPE), SPECIAL("dev/sda", tarfile.BLKTYPE),
        SPECIAL("dev/fifo", tarfile.FIFOTYPE), F("etc/hostname", b"h\n"),
    ])
    assert out.skipped_special == 3
    assert os.listdir(out.image.rootfs / "dev") == []
    assert out.image.meta["skipped_special"] == 3


@pytest.mark.parametrize("name", [".wh.", "etc/.wh.", ".wh..wh..opq", "etc/.wh.passwd", "../.wh.x"])
def test_a8_whiteouts_refused(env, name):
    # the victim lives beside the store: a whiteout must never delete it
    env.refuse([D("etc"), F("etc/passwd", b"root"), F(name, b"")], "whiteout|leaves the root")
    assert env.victim.exists()


# -- A9: bombs and malformed input ---------------------------------------------------------------


def test_a9_member_count_limit(env):
    members = [F(f"f{i}", b"") for i in range(60)]
    env.refuse(members, "more than 50 members", limits=Limits(max_members=50))
    assert Limits().max_members < 10**6  # 10^6 entries is refused by default


def test_a9_file_size_limit_checked_from_header(env):
    env.refuse([F("big", b"\0" * 4096)], "over the 1024-byte limit", limits=Limits(max_file_bytes=1024))


def test_a9_total_size_limit(env):
    members = [F(f"f{i}", b"\0" * 8192) for i in range(8)]
    env.refuse(members, "larger than the limit", limits=Limits(max_total_bytes=20000))


def test_a9_huge_header_size_without_data_is_truncated(env):
    """A header announcing 10 GiB with nothing behind it: an error, quickly."""
    ti = _info("huge", tarfile.REGTYPE, size=10 << 30)
    path = env.tars / "huge.tar"
    path.write_bytes(ti.tobuf(tarfile.GNU_FORMAT) + b"\0" * 4096)
    env.before()
    with pytest.raises(ImageError, match="truncated archive.*inside member 'huge'"):
        importer.import_tarball(env.store, str(path), "huge")
    env.check_outside()
    env.check_nothing_stored()


def _ext_header(records: dict, kind=tarfile.XHDTYPE) -> bytes:
    """One pax extended (or global) header block with its data, as tarfile writes it."""
    return tarfile.TarInfo._create_pax_generic_header(records, kind, "utf-8")


def _end() -> bytes:
    return b"\0" * 1024


def _refused_fast(env, path, match):
    """The import is refused with a one-line error, in well under a second,
    through the CLI too (exit 1, one stderr line)."""
    import time

    env.before()
    start = time.monotonic()
    with pytest.raises(ImageError, match=match) as exc:
        importer.import_tarball(env.store, str(path), "bomb")
    assert time.monotonic() - start < 1.0
    assert "\n" not in str(exc.value)
    env.check_outside()
    env.check_nothing_stored()
    proc = subprocess.run([sys.executable, "-m", "minicontainer", "image", "import", str(path), "bomb"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MINICONTAINER_HOME": str(env.tmp / "clihome"),
                               "MINICONTAINER_ROOT": str(env.tmp / "clirun")})
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a9_a_run_of_extended_headers_before_a_member_is_bounded(env):
    # issue 11, item 7: 20,000 pax headers (20 MB) describing one member, none
    # of them a member itself: refused after Limits.max_ext_headers
    member = tar_bytes([F("f", b"x")])[:1024]  # its header and data block
    path = env.tars / "many-pax.tar"
    path.write_bytes(_ext_header({"comment": "x"}) * 20_000 + member + _end())
    _refused_fast(env, path, "more than 16 extended headers in a row")
    # a real archive's one to three (pax, long name, long link) pass
    env.accept([F("a" * 120 + "/" + "b" * 120, b"x", linkname="")])


def test_a9_the_pax_global_set_is_bounded(env):
    # global headers add up (each one is up to max_header_bytes): their sum is bounded too
    path = env.tars / "globals.tar"
    chunks = [_ext_header({f"k{n}.{i}": "v" * 64 for i in range(12_000)}, tarfile.XGLTYPE) for n in range(4)]
    member = tar_bytes([F("f", b"x")])[:1024]
    path.write_bytes(b"".join(c + member for c in chunks) + _end())
    _refused_fast(env, path, "global headers .* hold more than 1048576 bytes")


def test_a9_global_records_apply_without_being_copied_per_member(env):
    # a global record applies to every member without one of its own (pax(1))
    members = tar_bytes([F(f"f{i}", b"x") for i in range(3)], fmt=tarfile.USTAR_FORMAT)
    own = _ext_header({"mtime": "1500000000"}) + tar_bytes([F("own", b"x")], fmt=tarfile.USTAR_FORMAT)[:1024]
    path = env.tars / "global-mtime.tar"
    path.write_bytes(_ext_header({"mtime": "1234567890.5", "comment": "x"}, tarfile.XGLTYPE) + own + members)
    env.before()
    outcome = importer.import_tarball(env.store, str(path), "g")
    root = Path(outcome.image.rootfs)
    assert sorted(os.listdir(root)) == ["f0", "f1", "f2", "own"]
    assert all(os.lstat(root / f"f{i}").st_mtime_ns == 1_234_567_890_500_000_000 for i in range(3))
    assert os.lstat(root / "own").st_mtime_ns == 1_500_000_000 * 10**9


def test_a9_300_char_name_refused(env):
    env.refuse([F("a" * 300, b"x")], "longer than NAME_MAX")


def test_a9_4096_deep_directories_refused(env):
    env.refuse([F("a/" * 4096 + "f", b"x")], "PATH_MAX")
    env.refuse([F("a/" * 300 + "f", b"x")], "deeper than 256")


def test_a9_disk_full_leaves_nothing(env):
    """ENOSPC stand-in without root: RLIMIT_FSIZE makes write(2) fail with
    EFBIG (Python ignores SIGXFSZ). The import runs in a child process."""
    path = env.tar([F("small", b"s"), F("big", os.urandom(1 << 20))])
    env.before()
    code = (
        "import resource, sys\n"
        "from minicontainer.images import importer\n"
        "from minicontainer.images.store import ImageStore\n"
        "from minicontainer.errors import ImageError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))\n"
        f"try:\n    importer.import_tarball(ImageStore({str(env.home)!r}), {str(path)!r}, 'full')\n"
        "except ImageError as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "extracting 'big'" in proc.stdout and "too large" in proc.stdout.lower()
    env.check_outside()
    env.check_nothing_stored()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda t: t[: len(t) // 2], "truncated archive"),
        (lambda t: _gz(t)[: len(_gz(t)) // 2], "truncated archive"),
        (lambda t: b"\x1f\x8b" + os.urandom(4000), "corrupt gzip data"),
        (lambda t: lzma.compress(t)[:-40], "truncated archive|corrupt xz"),
        (lambda t: b"\xfd7zXZ\x00" + b"\x01" * 3000, "corrupt xz data"),
        (lambda t: b"BZh9" + os.urandom(3000), "corrupt bzip2 data"),
        (lambda t: b"", "the input is empty"),
        (lambda t: b"hello, this is not a tar file\n" * 100, "not a tar archive"),
        (lambda t: os.urandom(8192), "not a tar archive"),
        (lambda t: b"\0" * 10240, "the archive is empty"),
        (lambda t: t[:512] + b"\xff" * 512 + t[1024:], "corrupt archive: bad header"),
        (lambda t: b"\x28\xb5\x2f\xfd" + b"\0" * 100, "corrupt zstd data"),
    ],
    ids=["truncated-tar", "truncated-gzip", "garbage-gzip", "truncated-xz", "garbage-xz", "garbage-bzip2",
         "empty", "text", "random", "only-zero-blocks", "bad-second-header", "zstd"],
)
def test_a9_malformed_input_refused_and_leaves_nothing(env, make, match):
    good = tar_bytes([D("etc"), F("etc/a", os.urandom(5000)), F("etc/b", b"b" * 3000), F("etc/c", b"c")])
    path = env.tars / "bad"
    path.write_bytes(make(good))
    env.before()
    with pytest.raises(ImageError, match=match):
        importer.import_tarball(env.store, str(path), "bad")
    env.check_outside()
    env.check_nothing_stored()
    assert _hash_threads() == []  # the sha256 thread stops on errors too


def _hash_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "sha256"]


def test_a9_missing_end_of_archive_is_truncated(env):
    good = tar_bytes([F("a", b"a" * 600)])
    path = env.tars / "noend.tar"
    path.write_bytes(good[: 512 + 1024])  # header and data, no zero blocks
    with pytest.raises(ImageError, match="truncated archive"):
        importer.import_tarball(env.store, str(path), "noend")
    env.check_nothing_stored()


# -- detection, identity, duplicates ---------------------------------------------------------------


def test_detect_compression_from_magic():
    assert detect_compression(_gz(b"x")) == "gzip"
    assert detect_compression(lzma.compress(b"x")) == "xz"
    assert detect_compression(bz2.compress(b"x")) == "bzip2"
    assert detect_compression(tar_bytes([F("a")])) == "none"
    assert detect_compression(b"") == "none"


@pytest.mark.parametrize("suffix, compress", [
    (".tar", lambda b: b), (".bin", _gz), (".tar", lzma.compress), (".gz", bz2.compress),
], ids=["plain", "gzip-named-bin", "xz-named-tar", "bzip2-named-gz"])
def test_compression_detected_by_content_not_name(env, suffix, compress):
    raw = tar_bytes([D("etc"), F("etc/os-release", b"ID=test\n")])
    path = env.tars / ("img" + suffix)
    path.write_bytes(compress(raw))
    out = importer.import_tarball(env.store, str(path), "img")
    assert out.image.id == hashlib.sha256(raw).hexdigest()  # id: digest of the *uncompressed* stream
    assert (out.image.rootfs / "etc" / "os-release").read_bytes() == b"ID=test\n"


def test_id_of_a_many_chunk_stream(env):
    """The digest, computed on another thread chunk by chunk, is the sha256
    of the whole stream, in order (several 1 MiB chunks, gzip and plain)."""
    raw = tar_bytes([F("big", os.urandom(3 << 20)), F("small", b"s"), F("big2", os.urandom((1 << 20) + 7))])
    for i, data in enumerate((raw, _gz(raw))):
        path = env.tars / f"many{i}"
        path.write_bytes(data)
        out = importer.import_tarball(env.store, str(path), f"many{i}")
        assert out.image.id == hashlib.sha256(raw).hexdigest()
    assert _hash_threads() == []


def test_same_content_shares_the_image(env):
    raw = tar_bytes([F("a", b"hello")])
    plain = env.tars / "a.tar"
    plain.write_bytes(raw)
    gz = env.tars / "a.tar.gz"
    gz.write_bytes(_gz(raw))
    first = importer.import_tarball(env.store, str(plain), "one")
    again = importer.import_tarball(env.store, str(plain), "two")  # same file: from the cache
    other = importer.import_tarball(env.store, str(gz), "three")  # same content, other file: hashed
    assert not first.shared and again.from_cache and other.shared and not other.from_cache
    assert first.image.id == again.image.id == other.image.id
    assert len(os.listdir(env.home / "images")) == 1
    assert os.listdir(env.home / "tmp") == []
    env.store.remove("one")
    env.store.remove("two")
    assert (env.store.get("three").rootfs / "a").read_bytes() == b"hello"
    env.store.remove("three")
    assert os.listdir(env.home / "images") == []


def test_changed_file_is_not_taken_from_the_cache(env):
    path = env.tars / "a.tar"
    path.write_bytes(tar_bytes([F("a", b"one")]))
    importer.import_tarball(env.store, str(path), "one")
    path.write_bytes(tar_bytes([F("a", b"two")]))  # same inode, new ctime
    out = importer.import_tarball(env.store, str(path), "two")
    assert not out.from_cache
    assert (out.image.rootfs / "a").read_bytes() == b"two"


def test_import_from_a_pipe(env):
    raw = tar_bytes([D("etc"), F("etc/x", os.urandom(3 << 20))])
    data = _gz(raw)
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as rf:
        out = importer.import_tarball(env.store, "-", "piped", stdin=rf)
    t.join()
    assert out.image.id == hashlib.sha256(raw).hexdigest()
    assert out.image.meta["compression"] == "gzip"


def test_progress_counts_raw_bytes(env):
    raw = tar_bytes([F("a", os.urandom(300_000))])
    seen = []
    with io.BytesIO(raw) as f:
        res = extract_tar(f, _empty(env.tmp / "x"), progress=seen.append)
    assert sum(seen) == len(raw) and res.bytes == len(raw)


def _empty(p: Path) -> Path:
    p.mkdir()
    return p


# -- lossless (what a user can check; owners are in the root tier) ---------------------------


def test_modes_links_and_mtimes_are_kept(env):
    out = env.accept([
        D("./", mode=0o755),
        D("bin", mode=0o755, mtime=1_500_000_000),
        F("bin/su", b"\x7fELF", mode=0o4755, mtime=1_400_000_000),
        F("bin/wall", b"\x7fELF", mode=0o2755),
        D("tmp", mode=0o1777, mtime=1_500_000_001),
        D("etc", mode=0o755),
        S("etc/localtime", "/usr/share/zoneinfo/UTC", mtime=1_450_000_000),
        S("etc/rel", "../bin/su"),
        D("ro", mode=0o555, mtime=1_500_000_002),
        F("ro/file", b"r", mode=0o444),
        D("ro/sub", mode=0o500),
    ])
    r = out.image.rootfs
    assert stat.S_IMODE(os.stat(r / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(r / "bin/wall").st_mode) & 0o755 == 0o755
    assert stat.S_IMODE(os.stat(r / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(r / "ro").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(r / "ro/sub").st_mode) == 0o500
    assert os.readlink(r / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.lstat(r / "etc/localtime").st_mtime == 1_450_000_000
    assert os.readlink(r / "etc/rel") == "../bin/su"
    assert os.stat(r / "bin/su").st_mtime == 1_400_000_000
    # directory mtimes survive their contents being written
    assert os.stat(r / "bin").st_mtime == 1_500_000_000
    assert os.stat(r / "tmp").st_mtime == 1_500_000_001
    assert os.stat(r / "ro").st_mtime == 1_500_000_002


def test_pax_and_gnu_long_names(env):
    long_dir = "/".join(["segment%02d" % i for i in range(12)])
    long_target = "/" + "t" * 180
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        name = f"img{fmt}"
        ti_file = _info(long_dir + "/file", tarfile.REGTYPE, size=3)
        if fmt == tarfile.PAX_FORMAT:
            ti_file.pax_headers = {"mtime": "1600000000.123456789"}
        out = env.accept([D(long_dir), (ti_file, b"abc"), S(long_dir + "/link", long_target)], fmt=fmt, name=name)
        r = out.image.rootfs / long_dir
        assert (r / "file").read_bytes() == b"abc"
        assert os.readlink(r / "link") == long_target
        if fmt == tarfile.PAX_FORMAT:
            assert os.stat(r / "file").st_mtime_ns == 1_600_000_000_123_456_789


def test_implicit_parent_directories(env):
    out = env.accept([F("usr/lib/x/file", b"f")])
    assert stat.S_IMODE(os.stat(out.image.rootfs / "usr/lib/x").st_mode) == 0o755


def test_non_utf8_names_survive(env):
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    out = env.accept([F(name, b"latin-1 name")], fmt=tarfile.GNU_FORMAT)
    assert os.listdir(os.fsencode(out.image.rootfs)) == [b"caf\xe9"]


def test_unsupported_types_refused(env):
    env.refuse([(_info("sparse", tarfile.GNUTYPE_SPARSE, size=0), None)], "sparse")
    env.refuse([(_info("weird", b"Z"), None)], "unsupported type")


def test_root_entry_must_be_a_directory(env):
    env.refuse([F("./", b"x")], "root directory itself")


# -- pure helpers ----------------------------------------------------------------------------------


def test_member_parts():
    assert member_parts("/usr//bin/./ls") == ("usr", "bin", "ls")
    assert member_parts("./") == ()
    assert member_parts("a/b/../c") == ("a", "c")
    for bad in ("..", "../a", "a/../../b", "/../etc"):
        with pytest.raises(ImageError, match="leaves the root"):
            member_parts(bad)
    with pytest.raises(ImageError, match="NUL"):
        member_parts("a\0b")
    with pytest.raises(ImageError, match="deeper than 3"):
        member_parts("a/b/c/d", Limits(max_depth=3))


@pytest.mark.parametrize("prefix", ["usr/share", "/usr//share/.", "./usr/x/../share"])
def test_member_parts_limits_are_the_same_on_its_plain_path_and_its_loop(prefix):
    """A name without an empty, '.', '..' or whiteout component (the first
    prefix, and most names of an export) skips the loop, ~5x faster; the
    limits are the same on both paths, in bytes, not characters."""
    assert member_parts(prefix + "/" + "é" * 127) == ("usr", "share", "é" * 127)  # 254 bytes
    with pytest.raises(ImageError, match="longer than NAME_MAX"):
        member_parts(prefix + "/" + "é" * 128)  # 256 bytes
    with pytest.raises(ImageError, match="longer than NAME_MAX"):
        member_parts(prefix + "/" + "x" * 256 + "/y")
    assert member_parts(prefix + "/doc", Limits(max_depth=3)) == ("usr", "share", "doc")
    with pytest.raises(ImageError, match="deeper than 2"):
        member_parts(prefix + "/doc", Limits(max_depth=2))
    assert member_parts("a.b/c..d/.e/f.wh") == ("a.b", "c..d", ".e", "f.wh")  # dots alone are plain


def test_parse_pax():
    rec = b"path=a/b\n"
    data = b"%d %s" % (len(rec) + 3, rec)
    assert parse_pax(data, "m") == {"path": "a/b"}
    with pytest.raises(ImageError, match="pax"):
        parse_pax(b"99 path=x\n", "m")
    with pytest.raises(ImageError, match="pax"):
        parse_pax(b"x path=x\n", "m")


def test_no_fds_leak(env):
    before = len(os.listdir("/proc/self/fd"))
    env.refuse([S("s", "/"), F("s/x", b"1")], "written through")
    env.accept([D("a/b/c"), F("a/b/c/d", b"1"), F("x/y", b"2")])
    assert len(os.listdir("/proc/self/fd")) == before


def test_resource_module_present():
    # the disk-full test relies on RLIMIT_FSIZE (Linux)
    assert hasattr(resource, "RLIMIT_FSIZE")


def test_out_of_range_ids_and_times_refused(env):
    env.refuse([F("a", b"x", uid=2**32)], "bad size, uid or gid", fmt=tarfile.PAX_FORMAT)
    ti = _info("b", tarfile.REGTYPE, size=1)
    ti.pax_headers = {"mtime": "1" + "0" * 30}
    env.refuse([(ti, b"x")], "corrupt archive: member 'b'", fmt=tarfile.PAX_FORMAT)


# -- our header parser against tarfile's -------------------------------------------------------


def _header_blocks():
    """Last header block of members written by tarfile in each format (the
    blocks before it, for long names, are extended headers)."""
    infos = []
    for name, kind, extra in [
        ("etc/passwd", tarfile.REGTYPE, {}),
        ("usr/bin/", tarfile.DIRTYPE, {}),
        ("bin", tarfile.SYMTYPE, {"linkname": "usr/bin"}),
        ("etc/localtime", tarfile.SYMTYPE, {"linkname": "/usr/share/zoneinfo/Etc/UTC"}),
        ("usr/bin/su", tarfile.REGTYPE, {"mode": 0o4755, "size": 70000}),
        ("tmp", tarfile.DIRTYPE, {"mode": 0o1777, "mtime": 0}),
        ("dev/null", tarfile.CHRTYPE, {}),
        ("x" * 80 + "/" + "y" * 90, tarfile.REGTYPE, {}),  # ustar splits it into prefix + name
        ("caf\u00e9/\u00fc", tarfile.REGTYPE, {}),
        ("big", tarfile.REGTYPE, {"uid": 3_000_000_000 - 7, "gid": 65534, "size": 9 << 30}),  # base 256 in GNU
        ("old", tarfile.REGTYPE, {"mtime": -86400}),  # before 1970: base 256 in GNU
    ]:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = extra.get("mode", 0o644)
        ti.linkname = extra.get("linkname", "")
        ti.size = extra.get("size", 0)
        ti.mtime = extra.get("mtime", 1_700_000_000)
        ti.uid, ti.gid = extra.get("uid", 0), extra.get("gid", 0)
        infos.append(ti)
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        for ti in infos:
            try:
                buf = ti.tobuf(fmt, "utf-8", "surrogateescape")
            except ValueError:
                continue  # e.g. a 9 GiB size or a negative mtime has no ustar form
            yield fmt, buf[-512:]


def _fields(h):
    return (h.name, h.linkname, h.type, h.mode, h.uid, h.gid, h.size, h.mtime)


def test_parse_header_matches_tarfile():
    seen = 0
    for fmt, block in _header_blocks():
        ours = parse_header(block)
        theirs = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        assert _fields(ours) == _fields(theirs), (fmt, block[:100])
        seen += 1
    assert seen >= 28


def test_the_type_flags_are_tarfiles():
    from minicontainer.images import tarread

    names = [n for n in dir(tarfile) if n.endswith("TYPE")] + ["GNUTYPE_LONGNAME", "GNUTYPE_LONGLINK",
                                                                 "GNUTYPE_SPARSE"]
    assert len(names) == 15
    assert {n: getattr(tarread, n) for n in names} == {n: getattr(tarfile, n) for n in names}


def test_the_checksum_sum_is_exact_up_to_the_largest_block():
    """_byte_sum (two adler32 halves) is sum(): each half's sum stays under
    adler32's modulus 65521, even for 512 bytes of 0xff (65280 a half)."""
    import random

    from minicontainer.images.tarread import _byte_sum

    rng = random.Random(7)
    blocks = [bytes(512), b"\xff" * 512, b"\xff" * 256 + bytes(256), bytes(255) + b"\xff" * 257]
    blocks += [rng.randbytes(512) for _ in range(200)] + [bytes(rng.choice((0, 0xFF)) for _ in range(512))]
    for block in blocks:
        assert _byte_sum(block) == sum(block)


def test_parse_header_v7_directory_and_signed_checksum():
    ti = tarfile.TarInfo("old/dir/")
    ti.type = tarfile.AREGTYPE  # V7: a directory is a "file" whose name ends in /
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT)[:512])
    h = parse_header(bytes(block))
    assert (h.name, h.type) == ("old/dir", tarfile.DIRTYPE)
    # a name byte >= 0x80 summed as a signed char, as some old tars did
    block[0:1] = b"\xe9"
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % signed
    assert parse_header(bytes(block)).name.startswith("\udce9")


def test_parse_header_refuses_whatever_tarfile_refuses():
    """Random damage to valid blocks: if tarfile calls it invalid, so do we
    (we are stricter about numbers: no '+1', '0o7' or '1_0' that int() takes)."""
    import random

    rng = random.Random(1234)
    blocks = [b for _, b in _header_blocks()]
    refused = 0
    for i in range(3000):
        block = bytearray(rng.choice(blocks))
        for _ in range(rng.randint(1, 3)):
            pos = rng.choice([rng.randrange(512), rng.randrange(100, 157)])  # favour the number fields
            block[pos] = rng.choice([rng.randrange(256), ord("8"), ord("+"), ord(" "), 0])
        block = bytes(block)
        try:
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            theirs_ok = True
        except tarfile.HeaderError:
            theirs_ok = False
        try:
            parse_header(block)
            ours_ok = True
        except BadHeader:
            ours_ok = False
        if not theirs_ok:
            assert not ours_ok, block
            refused += 1
    assert refused > 2000  # almost any damage breaks the checksum


@pytest.mark.parametrize("field, value", [(b"+0000644", "mode"), (b"0o00644\0", "mode"), (b"00_0644\0", "mode"),
                                          (b"0000844\0", "mode")])
def test_parse_header_strict_numbers(field, value):
    ti = tarfile.TarInfo("f")
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT)[:512])
    block[100:108] = field
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    with pytest.raises(BadHeader, match="invalid number"):
        parse_header(bytes(block))


def test_safetree_finds_each_members_directory_after_a_switch_and_after_a_refused_walk(tmp_path):
    """SafeTree._parent keeps the last walked chain of directory fds and
    answers the same directory at once: a member in a/x/c after a/b/c, and a
    walk that failed half way (x/c is a symlink), must not get a/b/c's fd."""
    from minicontainer.images.safetree import SafeTree

    root = tmp_path / "root"
    root.mkdir()

    def put(tree, parts, data):
        tree.write_file(parts, 0o644, 0, 0, None, "/".join(parts), lambda fd: os.write(fd, data))

    with SafeTree(root, same_owner=False) as tree:
        put(tree, ("a", "b", "c", "1"), b"1")
        put(tree, ("a", "x", "c", "2"), b"2")
        put(tree, ("a", "b", "c", "3"), b"3")
        os.symlink("/", root / "a" / "x" / "c" / "l")
        with pytest.raises(ImageError, match="symlink"):
            put(tree, ("a", "x", "c", "l", "4"), b"4")  # the chain is a/x/c when it fails, as long as a/b/c
        put(tree, ("a", "b", "c", "5"), b"5")
        put(tree, ("a", "x", "c", "6"), b"6")
    assert sorted(p.name for p in (root / "a" / "b" / "c").iterdir()) == ["1", "3", "5"]
    assert sorted(p.name for p in (root / "a" / "x" / "c").iterdir()) == ["2", "6", "l"]
    assert not Path("/4").exists()
