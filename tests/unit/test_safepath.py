"""safepath.py: paths inside a root, never through a symlink (cases B11-B14)."""

from __future__ import annotations

import errno
import os

import pytest

from minicontainer.errors import SyscallError
from minicontainer.safepath import (
    O_PATH,
    open_beneath,
    open_dir_nofollow,
    open_dir_strict,
    read_file_beneath,
    resolve_in_root,
    walk_dirs_nofollow,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "outside").mkdir()
    os.symlink(str(tmp_path / "outside"), r / "jump")
    os.symlink("/etc", r / "etclink")
    fd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
    yield r, fd, tmp_path / "outside"
    os.close(fd)


def test_opens_a_real_path(root):
    r, fd, _ = root
    got = open_beneath(fd, "/etc/passwd", os.O_RDONLY)
    try:
        assert os.read(got, 4) == b"root"
    finally:
        os.close(got)


@pytest.mark.parametrize("path", ["/jump", "/jump/x", "/etclink/passwd"])
def test_refuses_symlinks_anywhere(root, path):
    _, fd, _ = root
    with pytest.raises(SyscallError) as exc:
        open_beneath(fd, path, O_PATH)
    assert exc.value.errno == errno.ELOOP and "symlink" in exc.value.message


def test_create_dirs_never_creates_outside(root):
    r, fd, outside = root
    with pytest.raises(SyscallError):
        open_beneath(fd, "/jump/new/dir", O_PATH, create_dirs=True)
    assert os.listdir(outside) == []
    new = open_beneath(fd, "/a/b/c", O_PATH | os.O_DIRECTORY, create_dirs=True)
    os.close(new)
    assert (r / "a" / "b" / "c").is_dir()


def test_dotdot_and_not_a_directory(root):
    _, fd, _ = root
    with pytest.raises(SyscallError, match="'..'"):
        open_beneath(fd, "/etc/../../x", O_PATH)
    with pytest.raises(SyscallError) as exc:
        open_beneath(fd, "/etc/passwd/x", O_PATH)
    assert exc.value.errno == errno.ENOTDIR


def _fd_is(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    finally:
        os.close(fd)


def test_open_dir_nofollow_only_opens_real_directories(root):
    r, fd, _ = root
    assert _fd_is(open_dir_nofollow(fd, "etc"), r / "etc")
    assert open_dir_nofollow(fd, "jump") is None  # a symlink to a directory
    assert open_dir_nofollow(fd, "missing") is None
    etc = open_dir_nofollow(fd, "etc")
    try:
        assert open_dir_nofollow(etc, "passwd") is None  # a file
    finally:
        os.close(etc)


def test_walk_dirs_nofollow_stops_at_the_first_non_directory(root):
    r, fd, _ = root
    os.makedirs(r / "a" / "b")
    assert _fd_is(walk_dirs_nofollow(fd, ("a", "b")), r / "a" / "b")
    assert _fd_is(walk_dirs_nofollow(fd, ()), r)
    assert walk_dirs_nofollow(fd, ("jump", "x")) is None
    assert walk_dirs_nofollow(fd, ("etc", "passwd")) is None


def test_open_dir_strict_creates_or_says_why_not(root):
    r, fd, outside = root
    with pytest.raises(FileNotFoundError):
        open_dir_strict(fd, "new")
    got, made = open_dir_strict(fd, "new", mkdir_mode=0o700)
    assert made and _fd_is(got, r / "new")
    got, made = open_dir_strict(fd, "new", mkdir_mode=0o700)
    assert not made and _fd_is(got, r / "new")
    with pytest.raises(OSError) as exc:
        open_dir_strict(fd, "jump", mkdir_mode=0o700)
    assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert os.listdir(outside) == []


def test_read_file_beneath_refuses_fifos_links_and_big_files(root):
    r, fd, outside = root
    assert read_file_beneath(fd, "/etc/passwd").startswith(b"root")
    assert read_file_beneath(fd, "/etc/group") is None
    os.mkfifo(r / "etc" / "fifo")
    with pytest.raises(SyscallError, match="regular file"):
        read_file_beneath(fd, "/etc/fifo")  # no hang
    (outside / "secret").write_text("s")
    os.symlink(str(outside / "secret"), r / "etc" / "shadow")
    with pytest.raises(SyscallError):
        read_file_beneath(fd, "/etc/shadow")
    (r / "etc" / "big").write_bytes(b"x" * 100)
    with pytest.raises(SyscallError):
        read_file_beneath(fd, "/etc/big", limit=10)


def test_resolve_in_root_clamps_to_the_root(root):
    r, _, _ = root
    os.makedirs(r / "usr" / "bin")
    (r / "usr" / "bin" / "sh").write_text("")
    os.symlink("usr/bin", r / "bin")
    os.symlink("/../../../usr/bin/sh", r / "abs")
    assert resolve_in_root(str(r), "/bin/sh") == str(r / "usr" / "bin" / "sh")
    assert resolve_in_root(str(r), "/abs") == str(r / "usr" / "bin" / "sh")
    assert resolve_in_root(str(r), "/jump") is None  # the absolute target is looked up inside r
    os.symlink("loop", r / "loop")
    assert resolve_in_root(str(r), "/loop") is None
