"""layers.py on fake layer trees in a temp dir (no root, no mount).

Whiteouts are character devices 0:0, which only root can make: those cases
are in tests/root/test_export_diff.py, next to a cross-check against a real
overlay mount. Here opaque directories and redirects use the ``user.overlay.``
xattrs (overlayfs's "userxattr" mode), which any owner may set.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from minicontainer import layers as L
from minicontainer.errors import ContainerError, ImageError

pytestmark = pytest.mark.unit

T0 = 1_600_000_000  # a fixed mtime, so "unchanged" really is unchanged


def write(path: Path, data: str = "x", mode: int = 0o644, mtime: int = T0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
    return path


def freeze_dirs(root: Path) -> None:
    """Give every directory the same mtime (after their contents are made)."""
    for d, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        os.utime(d, (T0, T0))


@pytest.fixture
def image(tmp_path) -> Path:
    low = tmp_path / "lower"
    write(low / "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    write(low / "etc/hostname", "mini\n")
    write(low / "etc/skel/.profile", "PS1=x\n")
    write(low / "bin/busybox", "ELF", 0o755)
    write(low / "bin/su", "ELF", 0o4755)
    os.symlink("busybox", low / "bin/sh")
    os.link(low / "bin/busybox", low / "bin/ls")
    write(low / "usr/lib/libc.so", "lib")
    os.symlink("/usr/lib", low / "lib")  # absolute: must never resolve on the host
    write(low / "data/a", "a")
    write(low / "data/b", "b")
    (low / "tmp").mkdir()
    os.chmod(low / "tmp", 0o1777)
    freeze_dirs(low)
    return low


def overlay(tmp_path: Path, image: Path) -> tuple[L.Layers, Path]:
    up = tmp_path / "upper"
    up.mkdir()
    return L.Layers("overlay", lower=str(image), upper=str(up), xattr_prefix=L.USER_PREFIX), up


def copy_up_dir(image: Path, up: Path, rel: str) -> Path:
    """What overlayfs does before writing in a lower directory: make it and
    its parents in upper with the same mode and times."""
    chain = [Path(rel), *Path(rel).parents][:-1]  # etc/skel, etc
    for q in reversed(chain):
        if not (up / q).exists():
            (up / q).mkdir()
            os.chmod(up / q, stat.S_IMODE(os.stat(image / q).st_mode))
    for q in chain:  # children first: making one touches its parent
        st = os.stat(image / q)
        os.utime(up / q, ns=(st.st_atime_ns, st.st_mtime_ns))
    return up / rel


def changes(lay: L.Layers) -> list[str]:
    return [str(c) for c in L.diff(lay)]


def merged(lay: L.Layers) -> dict[str, os.stat_result]:
    return {e.path: e.st for e in L.walk_merged(lay)}


# -- diff ------------------------------------------------------------------------


def test_no_changes_no_output(tmp_path, image):
    lay, _ = overlay(tmp_path, image)
    assert changes(lay) == []


def test_added_files_and_their_new_directories_are_A_with_parent_C(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc")
    write(up / "etc/new.conf")
    (up / "opt/app").mkdir(parents=True)
    write(up / "opt/app/run")
    assert changes(lay) == ["C /etc", "A /etc/new.conf", "A /opt", "A /opt/app", "A /opt/app/run"]


def test_changed_file_is_C_and_so_is_its_directory(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc")
    write(up / "etc/passwd", "root:x:0:0::/root:/bin/sh\nbob:x:1:1::/:/bin/sh\n")
    for d in ("etc",):
        os.utime(up / d, (T0, T0))  # the kernel restores a parent's times after a copy-up
    assert changes(lay) == ["C /etc", "C /etc/passwd"]


def test_copied_up_directory_without_changes_is_not_listed(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc/skel")
    assert changes(lay) == []


def test_directory_metadata_change_is_C(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "data")
    os.chmod(up / "data", 0o700)
    assert changes(lay) == ["C /data"]


def test_opaque_directory_deletes_the_lower_children(tmp_path, image):
    """rm -rf /data; mkdir /data; echo > /data/a; echo > /data/c"""
    lay, up = overlay(tmp_path, image)
    (up / "data").mkdir()
    os.setxattr(up / "data", "user.overlay.opaque", b"y")
    write(up / "data/a", "new a")
    write(up / "data/c", "c")
    assert changes(lay) == ["C /data", "C /data/a", "D /data/b", "A /data/c"]
    view = merged(lay)
    assert "/data/b" not in view and view["/data/a"].st_size == len("new a")


def test_opaque_xattr_of_the_other_namespace_is_ignored(tmp_path, image):
    """A container may set user.overlay.opaque on its own directory; with the
    kernel's default (trusted.) xattrs it means nothing, and must not hide
    lower files from diff or export."""
    _, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "data")
    os.setxattr(up / "data", "user.overlay.opaque", b"y")
    lay = L.Layers("overlay", lower=str(image), upper=str(up))  # trusted.overlay.
    assert changes(lay) == []
    assert {"/data/a", "/data/b"} <= set(merged(lay))


def test_file_replacing_a_directory_is_one_C(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    write(up / "data", "now a file")
    assert changes(lay) == ["C /data"]
    view = merged(lay)
    assert stat.S_ISREG(view["/data"].st_mode) and "/data/a" not in view


def test_directory_replacing_a_file_lists_its_contents_as_A(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc")
    os.utime(up / "etc", (T0, T0))
    (up / "etc/hostname").mkdir()
    write(up / "etc/hostname/x")
    assert changes(lay) == ["C /etc", "C /etc/hostname", "A /etc/hostname/x"]


def test_symlinks_in_upper_and_lower_are_never_followed(tmp_path, image):
    secret = tmp_path / "host-secret"
    write(secret / "shadow", "root:HASH")
    lay, up = overlay(tmp_path, image)
    os.symlink(str(secret), up / "data")  # /data replaced by a link to a host directory
    (up / "lib").mkdir()  # a real /lib over the image's absolute link /lib -> /usr/lib
    write(up / "lib/extra.so")
    assert changes(lay) == ["C /data", "C /lib", "A /lib/extra.so"]
    view = merged(lay)
    assert stat.S_ISLNK(view["/data"].st_mode)
    assert not any("shadow" in p for p in view)
    assert "/lib/libc.so" not in view  # /usr/lib was not merged in through the link


def test_changes_are_sorted_with_directories_before_their_contents(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    write(up / "etc-x")
    copy_up_dir(image, up, "etc")
    write(up / "etc/z")
    write(up / "a")
    paths = [c.split(" ", 1)[1] for c in changes(lay)]
    assert paths == ["/a", "/etc", "/etc/z", "/etc-x"]


def test_relative_redirect_merges_the_renamed_lower_directory(tmp_path, image):
    """mv /data /stuff with redirect_dir=on: upper /stuff points back at the
    lower /data (the whiteout on /data is root-only: see the root tier)."""
    lay, up = overlay(tmp_path, image)
    (up / "stuff").mkdir()
    os.setxattr(up / "stuff", "user.overlay.redirect", b"data")
    write(up / "stuff/c")
    view = merged(lay)
    assert {"/stuff/a", "/stuff/b", "/stuff/c"} <= set(view)
    assert ["A /stuff", "A /stuff/a", "A /stuff/b", "A /stuff/c"] == [c for c in changes(lay) if "stuff" in c]


def test_absolute_redirect_starts_from_the_lower_root(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    (up / "opt").mkdir()
    (up / "opt/skel").mkdir()
    os.setxattr(up / "opt/skel", "user.overlay.redirect", b"/etc/skel")
    assert "/opt/skel/.profile" in merged(lay)


def test_redirect_through_a_lower_symlink_goes_nowhere(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    (up / "x").mkdir()
    os.setxattr(up / "x", "user.overlay.redirect", b"/lib")  # /lib -> /usr/lib in the image
    assert [p for p in merged(lay) if p.startswith("/x/")] == []


def test_metacopy_upper_files_are_refused(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc")
    write(up / "etc/passwd", "")
    os.setxattr(up / "etc/passwd", "user.overlay.metacopy", b"")
    with pytest.raises(ContainerError, match="metacopy"):
        changes(lay)
    with pytest.raises(ContainerError, match="metacopy"):
        merged(lay)


def test_read_only_container_has_no_changes(image):
    assert L.diff(L.Layers("read-only", lower=str(image))) == []


def test_copy_mode_compares_the_whole_tree_with_the_image(tmp_path, image):
    copy = tmp_path / "copy"
    shutil.copytree(image, copy, symlinks=True)
    lay = L.Layers("copy", lower=str(copy), image=str(image))
    assert changes(lay) == []
    (copy / "etc/hostname").unlink()
    write(copy / "etc/passwd", "changed")
    write(copy / "new")
    os.utime(copy / "etc", (T0, T0))
    assert changes(lay) == ["C /etc", "D /etc/hostname", "C /etc/passwd", "A /new"]


def test_copy_mode_without_the_image_cannot_diff(tmp_path, image):
    with pytest.raises(ContainerError, match="image is gone"):
        L.diff(L.Layers("copy", lower=str(image), image=None))


def test_depth_is_limited(tmp_path, image, monkeypatch):
    lay, up = overlay(tmp_path, image)
    (up / "a/b/c/d/e").mkdir(parents=True)
    monkeypatch.setattr(L, "MAX_DEPTH", 3)
    with pytest.raises(ContainerError, match="deeper than 3"):
        changes(lay)


# -- the merged view and the tar ----------------------------------------------------


def export(lay: L.Layers) -> tuple[dict[str, tarfile.TarInfo], tarfile.TarFile, L.ExportStats]:
    buf = io.BytesIO()
    stats = L.write_tar(lay, buf)
    buf.seek(0)
    tar = tarfile.open(fileobj=buf)
    return {m.name: m for m in tar.getmembers()}, tar, stats


def test_export_keeps_modes_links_owners_and_times(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    members, tar, stats = export(lay)
    assert members["bin/su"].mode == 0o4755
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["lib"].issym() and members["lib"].linkname == "/usr/lib"
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    # bin/busybox and bin/ls are one inode: the second is a hard link to the first
    assert members["bin/busybox"].isreg() and members["bin/ls"].islnk()
    assert members["bin/ls"].linkname == "bin/busybox"
    assert members["etc/passwd"].mtime == T0
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert {m.uid for m in members.values()} == {os.getuid()}
    assert tar.extractfile("etc/passwd").read() == b"root:x:0:0::/root:/bin/sh\n"
    assert stats.members == len(members) and stats.skipped == 0
    assert "" not in members and "." not in members and not any(n.startswith(("/", "./")) for n in members)


def test_export_reads_changes_from_upper_and_hides_the_replaced(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "etc")
    write(up / "etc/passwd", "changed\n")
    (up / "data").mkdir()
    os.setxattr(up / "data", "user.overlay.opaque", b"y")
    write(up / "data/new", "n")
    members, tar, _ = export(lay)
    assert tar.extractfile("etc/passwd").read() == b"changed\n"
    assert "etc/hostname" in members
    assert [n for n in members if n.startswith("data/")] == ["data/new"]


def test_export_of_a_copied_up_hard_link_breaks_the_link(tmp_path, image):
    """Writing to one name of a lower hard link copies up that name only:
    the two are separate files from then on."""
    lay, up = overlay(tmp_path, image)
    copy_up_dir(image, up, "bin")
    write(up / "bin/ls", "new ls", 0o755)
    members, tar, _ = export(lay)
    assert members["bin/ls"].isreg() and members["bin/busybox"].isreg()
    assert tar.extractfile("bin/ls").read() == b"new ls"


def test_a_file_replaced_by_a_symlink_while_reading_is_skipped(tmp_path, image):
    """The race of CVE-2018-15664: the container swaps a file for a link to a
    host file between our listing and our read. We must not read the host file."""
    secret = write(tmp_path / "host-secret", "TOP SECRET")
    lay, up = overlay(tmp_path, image)
    write(up / "f", "harmless")
    for entry in L.walk_merged(lay):
        if entry.path == "/f":
            os.unlink(up / "f")
            os.symlink(str(secret), up / "f")
            assert entry.open() is None
            break
    else:
        pytest.fail("/f not walked")


def test_exact_reader_pads_a_shrunk_file_and_cuts_a_grown_one(tmp_path):
    f = write(tmp_path / "f", "abc")
    fd = os.open(f, os.O_RDONLY)
    try:
        r = L._ExactReader(fd, 5, "/f")
        assert r.read(4) + r.read(4) + r.read(4) == b"abc\0\0"
    finally:
        os.close(fd)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert L._ExactReader(fd, 2, "/f").read() == b"ab"
    finally:
        os.close(fd)


def test_export_round_trips_through_tar_extraction(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    write(up / "added", "hello")
    buf = io.BytesIO()
    L.write_tar(lay, buf)
    buf.seek(0)
    out = tmp_path / "out"
    with tarfile.open(fileobj=buf) as tar:
        tar.extractall(out, filter="fully_trusted")
    assert (out / "added").read_text() == "hello"
    assert os.readlink(out / "lib") == "/usr/lib"
    assert stat.S_IMODE(os.lstat(out / "bin/su").st_mode) == 0o4755
    assert os.stat(out / "bin/ls").st_ino == os.stat(out / "bin/busybox").st_ino


# -- layout and output checks ------------------------------------------------------------


def test_container_layers_reads_the_runtime_layout(tmp_path, image):
    d = tmp_path / "c1"
    d.mkdir()
    os.symlink(str(image), d / "lower")
    (d / "upper").mkdir()
    assert L.container_layers(str(d), None) == L.Layers("overlay", lower=str(image), upper=str(d / "upper"))
    (d / "upper").rmdir()
    (d / "empty").mkdir()
    assert L.container_layers(str(d), None) == L.Layers("read-only", lower=str(image))
    d2 = tmp_path / "c2"
    (d2 / "copy").mkdir(parents=True)
    assert L.container_layers(str(d2), str(image)) == L.Layers("copy", lower=str(d2 / "copy"), image=str(image))
    d3 = tmp_path / "c3"
    (d3 / "merged").mkdir(parents=True)
    assert L.container_layers(str(d3), str(image)) == L.Layers("read-only", lower=str(image))
    with pytest.raises(ContainerError, match="missing"):
        L.container_layers(str(tmp_path / "nope"), str(image))


def test_output_inside_the_layers_is_refused(tmp_path, image):
    lay, up = overlay(tmp_path, image)
    with pytest.raises(ImageError, match="inside the container's layers"):
        L.check_output_outside(str(up / "etc/x.tar"), lay, str(tmp_path))
    with pytest.raises(ImageError, match="inside the container's layers"):
        L.check_output_outside(str(image / "x.tar"), lay, None)
    L.check_output_outside(str(tmp_path.parent / "x.tar"), lay, str(tmp_path / "layer"))


def test_commands_have_help():
    from click.testing import CliRunner

    from minicontainer.cli import cli

    for cmd, words in (("export", "FILE|-"), ("diff", "added (A)")):
        result = CliRunner().invoke(cli, [cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert words in result.output
