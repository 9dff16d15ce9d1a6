"""spec.py: flags become a frozen, validated ContainerSpec (no syscalls)."""

from __future__ import annotations

import dataclasses

import pytest

from minicontainer.errors import UsageError
from minicontainer.container.spec import ALL_NAMESPACES, build_spec, parse_env, parse_tmpfs, parse_volume, validate_name
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["web", "a", "a.b-c_d", "X" * 64, "0abc"])
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "-rf", "_x", "x" * 65, "a b", "é", "a\nb"])
def test_bad_names_are_refused(name):
    with pytest.raises(UsageError) as exc:
        validate_name(name)
    assert "invalid container name" in exc.value.message
    assert exc.value.hint


def test_spec_is_frozen_and_has_docker_defaults():
    spec = build_spec("mini")
    assert spec.argv() == ("/bin/sh",)
    assert spec.namespaces == frozenset(ALL_NAMESPACES)
    assert spec.cwd() == "/"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]


def test_host_namespaces_are_dropped():
    spec = build_spec("mini", pid="host", network="host", uts="host", ipc="host", cgroupns="host")
    assert spec.namespaces == frozenset({"mnt"})


@pytest.mark.parametrize("flag", ["pid", "uts", "ipc", "network", "cgroupns"])
def test_bad_namespace_values(flag):
    # container:NAME is a value of the first four (a container's namespace), not of --cgroupns
    for value in ("container:../x", "container:", "no/such") + (("container:x",) if flag == "cgroupns" else ()):
        with pytest.raises(UsageError, match=f"--{flag}"):
            build_spec("mini", **{flag: value})


def test_env_parsing():
    env = parse_env(["A=1", "B=", "C=x=y", "HOSTVAR", "UNSET"], host_env={"HOSTVAR": "h"})
    assert env == (("A", "1"), ("B", ""), ("C", "x=y"), ("HOSTVAR", "h"))


@pytest.mark.parametrize("item", ["=x", "1A=x", "A B=x", "A=line\nbreak", "A=nul\0"])
def test_bad_env(item):
    with pytest.raises(UsageError):
        parse_env([item], host_env={})


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\n  B=2  \n")
    spec = build_spec("mini", env_files=[str(f)], env=["A=override"], host_env={})
    assert spec.env == (("A", "1"), ("B", "2"), ("A", "override"))
    assert spec.environment("h")["A"] == "override"


def test_env_file_missing_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read env file"):
        build_spec("mini", env_files=[str(tmp_path / "nope")])


def test_environment_defaults():
    env = build_spec("mini", tty=True).environment("box")
    assert env["HOSTNAME"] == "box" and env["HOME"] == "/root" and "TERM" in env
    assert env["PATH"].startswith("/usr/local/sbin")
    assert "TERM" not in build_spec("mini").environment("box")


def test_volumes(tmp_path):
    (tmp_path / "f").write_text("x")
    v = parse_volume(f"{tmp_path}:/data:ro")
    assert (v.source, v.target, v.readonly, v.is_dir) == (str(tmp_path), "/data", True, True)
    assert parse_volume(f"{tmp_path}/f:/etc/f").is_dir is False
    for bad in ("x", f"{tmp_path}:", f"{tmp_path}:rel", f"{tmp_path}:/a/../b", f"{tmp_path}:/", "./rel:/x",
                f"{tmp_path}:/x:rx", "/does/not/exist:/x"):
        with pytest.raises(UsageError):
            parse_volume(bad)


def test_tmpfs():
    assert parse_tmpfs("/cache:size=64m,mode=1777").options == "size=64m,mode=1777"
    with pytest.raises(UsageError):
        parse_tmpfs("/cache:evil=1")
    with pytest.raises(UsageError):
        parse_tmpfs("cache")


def test_tmpfs_mount_flags_and_tmpfs_data_are_split():
    # issue 11, item 5: Docker's --tmpfs /run:rw,noexec,nosuid,size=65536k; "noexec" given to tmpfs as data is EINVAL
    t = parse_tmpfs("/run:rw,noexec,nosuid,size=65536k")
    assert t.data == "size=65536k"
    assert t.flags == MS_NOEXEC | MS_NOSUID | MS_NODEV  # nosuid,nodev by default
    assert parse_tmpfs("/x").flags == MS_NOSUID | MS_NODEV and parse_tmpfs("/x").data == ""
    t = parse_tmpfs("/x:ro,exec,suid,dev,mode=700,uid=1,gid=2,nr_inodes=10")
    assert t.flags == MS_RDONLY and t.data == "mode=700,uid=1,gid=2,nr_inodes=10"
    for bad in ("/x:noexec=1", "/x:size", "/x:size=", "/x:remount", "/x:bind"):
        with pytest.raises(UsageError, match="unsupported tmpfs option"):
            parse_tmpfs(bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"workdir": "tmp"}, {"hostname": "a b"}, {"hostname": "x" * 70}, {"name": ".."},
     # issue 11, item 6: a final newline must not slip past a '$' anchor into sethostname(2) or the environment
     {"hostname": "box\n"}, {"name": "x\n"}, {"env": ["KEY\n=v"]}, {"env": ["KEY\n"]}],
)
def test_other_bad_input(kwargs):
    with pytest.raises(UsageError):
        build_spec("mini", **kwargs)


def test_empty_command_and_image():
    with pytest.raises(UsageError):
        build_spec("mini", [""])
    with pytest.raises(UsageError):
        build_spec("")


def test_restart_policies():
    from minicontainer.container.spec import parse_restart, should_restart

    assert parse_restart("no") == ("no", 0) and parse_restart("on-failure:3") == ("on-failure", 3)
    assert parse_restart("unless-stopped") == ("unless-stopped", 0)
    for bad in ("sometimes", "always:2", "on-failure:0", "on-failure:x"):
        with pytest.raises(UsageError):
            parse_restart(bad)
    assert should_restart("on-failure", 3, 1, 2, False) and not should_restart("on-failure", 3, 1, 3, False)
    assert not should_restart("on-failure", 0, 0, 0, False)  # success ends it
    assert should_restart("always", 0, 0, 10, False) and not should_restart("always", 0, 1, 0, True)
    assert not should_restart("no", 0, 1, 0, False)
