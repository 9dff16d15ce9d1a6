"""--user / --group-add resolution from the container's own /etc, including hostile files (case B16)."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from minicontainer.errors import SecurityError, UsageError
from minicontainer.security import users
from minicontainer.security.users import ExecUser, HostileFile, read_container_file, resolve_user

pytestmark = pytest.mark.unit

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon_in_image:x:2:2::/sbin:/bin/false
bob:x:1000:1000:Bob:/home/bob:/bin/sh
broken line without colons
neg:x:-1:5::/:/bin/sh
nohome:x:1001:1001:::/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:root,bob
audio:x:29:bob
staff:x:50:
bob:x:1000:
"""


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, fd
    os.close(fd)


@pytest.fixture
def no_host_nss(monkeypatch):
    """Make any use of the host's user database fail loudly."""
    import grp
    import pwd

    def boom(*a, **k):
        raise AssertionError("the host's NSS must never be consulted")

    for mod, names in ((pwd, ("getpwnam", "getpwuid", "getpwall")), (grp, ("getgrnam", "getgrgid", "getgrall"))):
        for n in names:
            monkeypatch.setattr(mod, n, boom)
    monkeypatch.setattr(os, "getgrouplist", boom, raising=False)


@pytest.fixture
def deadline():
    """Fail instead of hanging forever (a FIFO must never block us)."""

    def on_alarm(signum, frame):
        raise AssertionError("blocked: the reader waited on the file")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# -- parsing -----------------------------------------------------------------------


def test_parse_passwd_skips_bad_lines():
    entries = users.parse_passwd(PASSWD)
    assert [e.name for e in entries] == ["root", "daemon_in_image", "bob", "nohome"]
    assert entries[2] == users.PasswdEntry("bob", 1000, 1000, "/home/bob")
    assert entries[3].home == "/"


def test_parse_group_members():
    groups = {g.name: g for g in users.parse_group(GROUP)}
    assert groups["wheel"].members == ("root", "bob")
    assert groups["staff"].members == ()


# -- resolution rules (runc's) ------------------------------------------------------------


def test_default_user_is_root_with_groups_from_the_image(rootfs, no_host_nss):
    _, fd = rootfs
    assert resolve_user(fd, None) == ExecUser(0, 0, (10,), "/root", "root")


def test_named_user(rootfs, no_host_nss):
    _, fd = rootfs
    assert resolve_user(fd, "bob") == ExecUser(1000, 1000, (10, 29), "/home/bob", "bob")


def test_explicit_group_drops_membership_groups(rootfs):
    _, fd = rootfs
    u = resolve_user(fd, "bob:staff")
    assert (u.uid, u.gid, u.groups) == (1000, 50, ())
    assert resolve_user(fd, "bob:77").gid == 77


def test_numeric_user_found_and_not_found(rootfs):
    _, fd = rootfs
    assert resolve_user(fd, "1000") == ExecUser(1000, 1000, (10, 29), "/home/bob", "bob")
    assert resolve_user(fd, "4242") == ExecUser(4242, 0, (), "/", None)
    assert resolve_user(fd, "4242:4343") == ExecUser(4242, 4343, (), "/", None)


def test_group_add_names_and_numbers(rootfs):
    _, fd = rootfs
    u = resolve_user(fd, "bob", ("staff", "4000", "wheel"))
    assert u.groups == (10, 29, 50, 4000)


def test_unknown_names_are_clear_errors(rootfs, no_host_nss):
    _, fd = rootfs
    # 'daemon' exists on any Debian host, but not in this image: the host must not answer.
    with pytest.raises(SecurityError, match="unable to find user daemon") as exc:
        resolve_user(fd, "daemon")
    assert "numeric" in exc.value.hint
    with pytest.raises(SecurityError, match="unable to find group nogroup"):
        resolve_user(fd, "bob:nogroup")
    with pytest.raises(SecurityError, match="group-add"):
        resolve_user(fd, "bob", ("video",))


def test_bad_shapes_are_usage_errors(rootfs):
    _, fd = rootfs
    for spec in ("bob:", ":1", "a:b:c"):
        with pytest.raises(UsageError):
            resolve_user(fd, spec)


def test_image_without_etc(tmp_path):
    fd = os.open(tmp_path, os.O_PATH)
    try:
        assert resolve_user(fd, "1000:1000") == ExecUser(1000, 1000, (), "/", None, ("/etc/passwd not found", "/etc/group not found"))
        assert resolve_user(fd, None).uid == 0
        with pytest.raises(SecurityError, match="could not be used"):
            resolve_user(fd, "bob")
    finally:
        os.close(fd)


# -- hostile files (B16) ---------------------------------------------------------------------


@pytest.fixture
def host_secret(tmp_path):
    secret = tmp_path / "host-shadow"
    secret.write_text("secret:x:4242:4242::/secret:/bin/sh\n")
    os.chmod(secret, 0o600)
    return secret


def test_passwd_symlink_to_host_file_is_never_read(rootfs, host_secret):
    root, fd = rootfs
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(host_secret)
    atime = os.stat(host_secret).st_atime_ns
    with pytest.raises(SecurityError, match="symlink") as exc:
        resolve_user(fd, "secret")
    assert "4242" not in str(exc.value)
    # A numeric user does not need the file: it is skipped, with a note.
    u = resolve_user(fd, "4242")
    assert (u.uid, u.gid, u.home) == (4242, 0, "/")
    assert any("symlink" in n for n in u.notes)
    assert os.stat(host_secret).st_atime_ns == atime


def test_relative_symlink_escaping_root_refused(rootfs, host_secret):
    root, fd = rootfs
    (root / "etc" / "passwd").unlink()
    rel = os.path.relpath(host_secret, root / "etc")
    (root / "etc" / "passwd").symlink_to(rel)
    with pytest.raises(HostileFile, match="symlink"):
        read_container_file(fd, "etc/passwd")


def test_etc_itself_a_symlink_refused(tmp_path, host_secret):
    root = tmp_path / "r"
    root.mkdir()
    (tmp_path / "hostetc").mkdir()
    (tmp_path / "hostetc" / "passwd").write_text(host_secret.read_text())
    (root / "etc").symlink_to(tmp_path / "hostetc")
    fd = os.open(root, os.O_PATH)
    try:
        with pytest.raises(SecurityError, match="/etc is a symlink"):
            resolve_user(fd, "secret")
    finally:
        os.close(fd)


def test_fifo_does_not_hang(rootfs, deadline):
    root, fd = rootfs
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(SecurityError, match="not a regular file"):
        resolve_user(fd, "bob")
    assert resolve_user(fd, "1000").uid == 1000


def test_device_node_is_not_opened(rootfs, deadline):
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root (CAP_MKNOD)")
    root, fd = rootfs
    (root / "etc" / "passwd").unlink()
    try:
        os.mknod(root / "etc" / "passwd", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("mknod not permitted here")
    with pytest.raises(SecurityError, match="not a regular file"):
        resolve_user(fd, "bob")


def test_huge_file_refused_without_reading_it(rootfs):
    root, fd = rootfs
    with open(root / "etc" / "passwd", "ab") as f:
        f.truncate(users.MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SecurityError, match="larger than"):
        resolve_user(fd, "bob")


def test_directory_in_place_of_file(rootfs):
    root, fd = rootfs
    (root / "etc" / "group").unlink()
    (root / "etc" / "group").mkdir()
    with pytest.raises(SecurityError, match="not a regular file"):
        resolve_user(fd, "bob:staff")
    # A named user without named groups does not need /etc/group.
    assert resolve_user(fd, "bob").groups == ()


def test_read_container_file_rejects_dotdot(rootfs):
    _, fd = rootfs
    with pytest.raises(ValueError):
        read_container_file(fd, "etc/../../x")
    assert read_container_file(fd, "etc/missing") is None
    assert read_container_file(fd, "etc/passwd/x") is None
    assert read_container_file(fd, "etc/passwd").startswith(b"root:")


@pytest.mark.parametrize("text", ["²", "٣", "1²"])
def test_non_ascii_digits_are_not_ids(text):
    # str.isdigit() accepts these; int() rejects "²" and reads "٣" as 3
    from minicontainer.security.users import _id, parse_passwd

    assert _id(text) is None
    assert parse_passwd(f"evil:x:{text}:0::/:/bin/sh\nroot:x:0:0::/root:/bin/sh\n")[-1].name == "root"
