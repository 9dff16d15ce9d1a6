"""container/copy.py against plain directories: docker cp's destination rules,
and no symlink of the container's side ever followed (a tmp dir stands in for
the container's root, so no root is needed)."""

from __future__ import annotations

import os
import stat

import pytest

from minicontainer.commands.cp import split_endpoint
from minicontainer.container.copy import Options, copy_in, copy_out
from minicontainer.errors import ContainerError, UsageError

pytestmark = pytest.mark.unit

# -a keeps the owner: a non-root test user can chown only to itself.
KEEP = Options(archive=True)


@pytest.fixture
def box(tmp_path):
    """A container root with files, a directory and planted symlinks, a host
    directory, and a secret outside both that no copy may touch."""
    root = tmp_path / "root"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a").write_text("one\n")
    (root / "data" / "sub" / "b").write_text("two\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret\n")
    os.symlink(str(secret), root / "data" / "escape")  # an absolute link to a host directory
    os.symlink("../../secret/key", root / "data" / "keylink")  # a relative one climbing out
    host = tmp_path / "host"
    host.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield fd, root, host, secret
    os.close(fd)


def test_endpoints_follow_dockers_colon_rule():
    assert split_endpoint("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_endpoint("web:") == ("web", "/")
    assert split_endpoint("./a:b") == (None, "./a:b")
    assert split_endpoint("/tmp/x:y") == (None, "/tmp/x:y")
    assert split_endpoint("file") == (None, "file")


def test_a_file_out_to_a_new_name_and_into_a_directory(box):
    fd, root, host, _ = box
    assert copy_out(fd, "/data/a", str(host / "a.txt"), KEEP, "c:/data/a") == 4
    assert (host / "a.txt").read_text() == "one\n"
    copy_out(fd, "data/a", str(host), KEEP, "c:data/a")  # the leading / is optional, as in docker
    assert (host / "a").read_text() == "one\n"


def test_a_directory_out_keeps_symlinks_as_symlinks(box):
    fd, root, host, secret = box
    copy_out(fd, "/data", str(host / "out"), KEEP, "c:/data")
    assert (host / "out" / "sub" / "b").read_text() == "two\n"
    assert os.readlink(host / "out" / "escape") == str(secret)  # copied as a link, not followed
    assert not (host / "out" / "escape").is_dir() or (host / "out" / "escape").is_symlink()
    assert sorted(os.listdir(host / "out")) == ["a", "escape", "keylink", "sub"]


def test_dot_copies_the_contents_and_an_existing_directory_receives_the_source(box):
    fd, root, host, _ = box
    (host / "have").mkdir()
    copy_out(fd, "/data/.", str(host / "have"), KEEP, "c:/data/.")
    assert (host / "have" / "a").is_file()
    copy_out(fd, "/data", str(host / "have"), KEEP, "c:/data")
    assert (host / "have" / "data" / "a").is_file()


def test_a_symlink_on_the_way_is_refused_out_and_in(box):
    fd, root, host, secret = box
    with pytest.raises(ContainerError, match="symlink in the container: /data/escape"):
        copy_out(fd, "/data/escape/key", str(host / "k"), KEEP, "c:/data/escape/key")
    assert not (host / "k").exists()
    (host / "evil").write_text("evil\n")
    with pytest.raises(ContainerError, match="symlink"):
        copy_in(fd, str(host / "evil"), "/data/escape/key", KEEP, "c:/data/escape/key")
    with pytest.raises(ContainerError, match="symlink"):
        copy_in(fd, str(host / "evil"), "/data/escape/", KEEP, "c:/data/escape/")
    assert (secret / "key").read_text() == "host secret\n"
    assert os.listdir(secret) == ["key"]


def test_a_symlink_as_the_destination_is_refused_never_written_through(box):
    fd, root, host, secret = box
    (host / "evil").write_text("evil\n")
    with pytest.raises(ContainerError, match="it is a symlink"):
        copy_in(fd, str(host / "evil"), "/data/keylink", KEEP, "c:/data/keylink")
    assert (secret / "key").read_text() == "host secret\n"
    assert os.readlink(root / "data" / "keylink") == "../../secret/key"


def test_dotdot_is_refused(box):
    fd, _, host, _ = box
    with pytest.raises(UsageError, match=r"'\.\.'"):
        copy_out(fd, "/data/../../secret/key", str(host / "k"), KEEP, "c:...")


def test_a_file_in_replaces_the_old_one_and_keeps_the_mode(box):
    fd, root, host, _ = box
    src = host / "run.sh"
    src.write_text("#!/bin/sh\n")
    os.chmod(src, 0o750)
    copy_in(fd, str(src), "/data/a", KEEP, "c:/data/a")
    assert (root / "data" / "a").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE((root / "data" / "a").stat().st_mode) == 0o750
    assert not [n for n in os.listdir(root / "data") if n.startswith(".minicontainer-cp-")]


def test_a_directory_in_merges_into_an_existing_one(box):
    fd, root, host, _ = box
    (host / "tree" / "deep").mkdir(parents=True)
    (host / "tree" / "deep" / "f").write_text("f\n")
    copy_in(fd, str(host / "tree"), "/data/", KEEP, "c:/data/")
    assert (root / "data" / "tree" / "deep" / "f").read_text() == "f\n"
    copy_in(fd, str(host / "tree") + "/.", "/data/sub", KEEP, "c:/data/sub")
    assert sorted(os.listdir(root / "data" / "sub")) == ["b", "deep"]


def test_a_file_into_a_missing_directory_and_a_directory_onto_a_file_are_refused(box):
    fd, root, host, _ = box
    (host / "f").write_text("x")
    (host / "d").mkdir()
    with pytest.raises(ContainerError, match="no such directory"):
        copy_in(fd, str(host / "f"), "/nope/", KEEP, "c:/nope/")
    with pytest.raises(ContainerError, match="directory onto the file"):
        copy_in(fd, str(host / "d"), "/data/a", KEEP, "c:/data/a")


def test_setuid_bits_are_dropped_on_the_host(box, capsys):
    fd, root, host, _ = box
    os.chmod(root / "data" / "a", 0o4755)
    copy_out(fd, "/data/a", str(host / "a"), KEEP, "c:/data/a")
    assert stat.S_IMODE((host / "a").stat().st_mode) == 0o755
    assert "setuid" in capsys.readouterr().err


def test_fifos_are_skipped_not_opened(box, capsys):
    fd, root, host, _ = box
    os.mkfifo(root / "data" / "pipe")  # opening it for reading would block forever
    copy_out(fd, "/data", str(host / "out"), KEEP, "c:/data")
    assert not (host / "out" / "pipe").exists()
    assert "skipped c:/data/pipe" in capsys.readouterr().err
