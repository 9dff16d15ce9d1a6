"""Rootless mode's pure parts (userns.py): subordinate ranges, the maps, the host
switches that forbid user namespaces (on a fake /proc), and the plan it changes."""

from __future__ import annotations

import errno
import os
import types

import pytest

from minicontainer import paths
from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container import userns
from minicontainer.errors import MiniError, NotRootError, SecurityError
from minicontainer.security.users import check_mapped
from minicontainer.security.users import ExecUser
from minicontainer.container.spec import build_spec

pytestmark = pytest.mark.unit

ROOTFS = P.RootfsLayout(lower="/img", layer="/layers/c1")


# --- /etc/subuid and the maps ------------------------------------------------------


def test_parse_subids_by_name_or_uid():
    text = "# comment\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\nbroken line\nalice:5:x\nalice:9:0\n"
    assert userns.parse_subids(text, "alice", 1000) == [(100000, 65536), (300000, 10)]
    assert userns.parse_subids(text, "bob", 1001) == [(165536, 65536)]
    assert userns.parse_subids(text, "carol", 1002) == []


def _files(tmp_path, subuid="", subgid=""):
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return dict(subuid=str(tmp_path / "subuid"), subgid=str(tmp_path / "subgid"))


def test_single_id_map_without_ranges(tmp_path):
    m = userns.plan_mapping(1000, 1000, name="alice", which=lambda t: "/usr/bin/" + t, **_files(tmp_path))
    assert m.writer == "self" and m.single
    assert [r.line() for r in m.uids] == ["0 1000 1"]
    assert [r.line() for r in m.gids] == ["0 1000 1"]
    assert "usermod --add-subuids" in m.note and "alice" in m.note
    assert "--map-root-user" in m.shell()


def test_full_range_through_newuidmap(tmp_path):
    files = _files(tmp_path, "alice:100000:65536\nalice:300000:1000\n", "alice:200000:65536\n")
    m = userns.plan_mapping(1000, 1001, name="alice", which=lambda t: "/usr/bin/" + t, **files)
    assert m.writer == "newidmap" and not m.single and not m.note
    # the caller at 0, then each range right after the previous one
    assert [r.line() for r in m.uids] == ["0 1000 1", "1 100000 65536", "65537 300000 1000"]
    assert [r.line() for r in m.gids] == ["0 1001 1", "1 200000 65536"]
    assert m.shell().startswith("unshare --user")
    assert "newuidmap $PID 0 1000 1 1 100000 65536 65537 300000 1000" in m.shell()
    assert "0 -> 1000" in m.describe() and "1-65536 -> 100000-165535" in m.describe()


def test_ranges_without_the_helpers_fall_back_to_one_id(tmp_path):
    files = _files(tmp_path, "alice:100000:65536\n", "alice:100000:65536\n")
    m = userns.plan_mapping(1000, 1000, name="alice", which=lambda t: None, **files)
    assert m.writer == "self" and m.single
    assert "apt-get install uidmap" in m.note


def test_root_writes_its_maps_itself_and_ranges_are_capped(tmp_path):
    many = "".join(f"root:{100000 * i}:10\n" for i in range(1, 9))
    m = userns.plan_mapping(0, 0, name="root", which=lambda t: None, **_files(tmp_path, many, many))
    assert m.writer == "root"
    assert len(m.uids) == userns.MAX_EXTENTS  # kernels before 4.15 take 5 lines
    assert userns.plan_mapping(0, 0, name="root", **_files(tmp_path)).writer == "root"


def test_the_plan_step_explains_itself(tmp_path):
    m = userns.plan_mapping(1000, 1000, name="alice", **_files(tmp_path))
    step = S.UserNamespace(mapping=m)
    assert step.phase == S.BEFORE_FORK
    text = "\n".join(S.render_step(1, step))
    assert "[runtime] create a user namespace" in text
    assert "user_namespaces(7)" in text and "setgroups" in text
    assert "shell: unshare --user --map-root-user" in text


# --- who are we, seen from a fake /proc ---------------------------------------------------


def _proc(tmp_path, uid_map="         0          0 4294967295\n", gid_map=None, knobs=None, userns_file=True):
    proc = tmp_path / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    if userns_file:
        (proc / "self" / "ns" / "user").write_text("")
    (proc / "self" / "uid_map").write_text(uid_map)
    (proc / "self" / "gid_map").write_text(gid_map if gid_map is not None else uid_map)
    for name, value in (knobs or {}).items():
        f = proc / "sys" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(value + "\n")
    return str(proc)


def test_map_id():
    extents = [(0, 1000, 1), (1, 100000, 65536)]
    assert userns.map_id(0, extents) == 1000
    assert userns.map_id(1, extents) == 100000
    assert userns.map_id(1000, extents) == 100999
    assert userns.map_id(65537, extents) is None


def test_host_uid_reads_the_map_inside_a_namespace(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 0)
    host = _proc(tmp_path / "a")
    assert userns.host_uid(host) == 0
    assert userns.in_initial_userns(host)
    inside = _proc(tmp_path / "b", "0 1000 1\n1 100000 65536\n")
    assert not userns.in_initial_userns(inside)
    assert userns.host_uid(inside) == 1000
    assert userns.is_mapped(1000, "uid", inside)
    assert not userns.is_mapped(70000, "uid", inside)


def test_setgroups_denied_and_unmapped_users_are_clear_errors(monkeypatch):
    monkeypatch.setattr(userns, "is_mapped", lambda id_, kind="uid", proc="/proc": id_ == 0)
    monkeypatch.setattr(userns, "read_map", lambda path: [(0, 1000, 1)])
    check_mapped(ExecUser(0, 0, (), "/root"))
    with pytest.raises(SecurityError) as e:
        check_mapped(ExecUser(1000, 1000, (), "/home/u"))
    assert "uid 1000 does not exist in this user namespace" in e.value.message
    assert "maps only 0" in e.value.message
    assert "/etc/subuid" in e.value.hint


# --- the host switches ---------------------------------------------------------------


def _never():
    return False


@pytest.mark.parametrize(
    "knob, value, words",
    [
        ("kernel/apparmor_restrict_unprivileged_userns", "1", ["apparmor_restrict_unprivileged_userns", "Ubuntu"]),
        ("kernel/unprivileged_userns_clone", "0", ["unprivileged_userns_clone", "Debian"]),
        ("user/max_user_namespaces", "0", ["max_user_namespaces is 0"]),
    ],
)
def test_each_switch_has_its_own_message(tmp_path, knob, value, words):
    proc = _proc(tmp_path, knobs={knob: value})
    with pytest.raises(SecurityError) as e:
        userns.check_allowed(euid=1000, proc=proc, try_it=_never)
    for w in words:
        assert w in e.value.message
    assert "sysctl -w " + knob.split("/")[1] in e.value.hint or "sysctl -w " + knob.replace("/", ".") in e.value.hint
    assert "\n" not in e.value.message  # one line
    # the same text when the unshare itself fails
    assert userns.diagnose(errno.EPERM, euid=1000, proc=proc).message == e.value.message


def test_switches_that_allow_say_nothing(tmp_path):
    proc = _proc(tmp_path, knobs={"kernel/apparmor_restrict_unprivileged_userns": "0",
                                  "kernel/unprivileged_userns_clone": "1", "user/max_user_namespaces": "100"})
    userns.check_allowed(euid=1000, proc=proc, try_it=_never)


def test_an_apparmor_profile_that_allows_us_is_respected(tmp_path):
    proc = _proc(tmp_path, knobs={"kernel/apparmor_restrict_unprivileged_userns": "1"})
    userns.check_allowed(euid=1000, proc=proc, try_it=lambda: True)


def test_root_is_not_bound_by_the_unprivileged_switches(tmp_path):
    proc = _proc(tmp_path, knobs={"kernel/apparmor_restrict_unprivileged_userns": "1",
                                  "kernel/unprivileged_userns_clone": "0"})
    userns.check_allowed(euid=0, proc=proc, try_it=_never)
    with pytest.raises(SecurityError):
        userns.check_allowed(euid=0, proc=_proc(tmp_path / "x", knobs={"user/max_user_namespaces": "0"}),
                             try_it=_never)


def test_a_kernel_without_user_namespaces(tmp_path):
    proc = _proc(tmp_path, userns_file=False)
    with pytest.raises(SecurityError, match="CONFIG_USER_NS"):
        userns.check_allowed(euid=1000, proc=proc, try_it=lambda: True)


def test_diagnose_other_errors(tmp_path):
    proc = _proc(tmp_path)
    assert "limit of user namespaces" in userns.diagnose(errno.ENOSPC, euid=1000, proc=proc).message
    assert "threads" in userns.diagnose(errno.EINVAL, euid=1000, proc=proc).message
    err = userns.diagnose(errno.EACCES, euid=1000, proc=proc)
    assert isinstance(err, MiniError) and err.hint


@pytest.mark.parametrize("release, ok", [("4.19.0-26-amd64", False), ("5.10.0", False), ("5.11.0", True),
                                         ("6.18.44-fc-v595", True), ("6", True)])
def test_overlay_in_a_user_namespace_needs_5_11(release, ok):
    assert userns.overlay_allowed(release) is ok


# --- writing the maps (a fake /proc/PID) ---------------------------------------------------


def test_write_maps_single_id_denies_setgroups_first(tmp_path):
    pid_dir = tmp_path / "42"
    pid_dir.mkdir()
    for name in ("setgroups", "uid_map", "gid_map"):
        (pid_dir / name).write_text("")
    m = userns.IdMapping(1000, 1000, "alice", (userns.IdRange(0, 1000, 1),), (userns.IdRange(0, 1000, 1),))
    userns.write_maps(42, m, proc=str(tmp_path))
    assert (pid_dir / "setgroups").read_text() == "deny"
    assert (pid_dir / "uid_map").read_text() == "0 1000 1\n"
    assert (pid_dir / "gid_map").read_text() == "0 1000 1\n"


def test_write_maps_as_root_keeps_setgroups(tmp_path):
    pid_dir = tmp_path / "7"
    pid_dir.mkdir()
    for name in ("setgroups", "uid_map", "gid_map"):
        (pid_dir / name).write_text("")
    r = (userns.IdRange(0, 0, 1), userns.IdRange(1, 100000, 65536))
    userns.write_maps(7, userns.IdMapping(0, 0, "root", r, r, "root"), proc=str(tmp_path))
    assert (pid_dir / "setgroups").read_text() == ""
    assert (pid_dir / "uid_map").read_text() == "0 0 1\n1 100000 65536\n"


def test_write_maps_through_newuidmap():
    calls = []

    def run(args, **kw):
        calls.append(args)
        return types.SimpleNamespace(returncode=0, stderr="")

    r = (userns.IdRange(0, 1000, 1), userns.IdRange(1, 100000, 65536))
    userns.write_maps(42, userns.IdMapping(1000, 1000, "alice", r, r, "newidmap"), run=run)
    assert calls == [["newuidmap", "42", "0", "1000", "1", "1", "100000", "65536"],
                     ["newgidmap", "42", "0", "1000", "1", "1", "100000", "65536"]]

    def failing(args, **kw):
        return types.SimpleNamespace(returncode=1, stderr="newuidmap: uid range [1-65537) -> [100000-165536) not allowed\n")

    with pytest.raises(SecurityError) as e:
        userns.write_maps(42, userns.IdMapping(1000, 1000, "alice", r, r, "newidmap"), run=failing)
    assert "not allowed" in e.value.message and "alice" in e.value.hint


def test_write_maps_missing_process_is_a_syscall_error(tmp_path):
    m = userns.IdMapping(1000, 1000, "alice", (userns.IdRange(0, 1000, 1),), (userns.IdRange(0, 1000, 1),))
    with pytest.raises(MiniError, match="writing the user namespace maps of process 99"):
        userns.write_maps(99, m, proc=str(tmp_path))


# --- what rootless changes in the plan, the paths and the runtime -----------------------------


def test_rootless_plan_starts_in_the_user_namespace_and_binds_devices(tmp_path):
    m = userns.plan_mapping(1000, 1000, name="alice", **_files(tmp_path))
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS,
                        userns_steps=[S.UserNamespace(mapping=m)], rootless=True)
    kinds = [type(s).__name__ for s in plan.steps]
    assert kinds[:3] == ["UserNamespace", "UnsharePid", "Fork"]
    assert "MakeDevice" not in kinds
    devices = {s.target: s for s in plan.steps if isinstance(s, P.Mount) and s.target in
               {d for d, _, _ in P.STANDARD_DEVICES}}
    assert set(devices) == {d for d, _, _ in P.STANDARD_DEVICES}
    for path, s in devices.items():
        assert s.source == path and s.host_source and s.create == "file"
        assert "mount --bind /dev/" in s.shell()
    # the root plan is unchanged
    root_kinds = [type(s).__name__ for s in P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS).steps]
    assert root_kinds.count("MakeDevice") == len(P.STANDARD_DEVICES) and "UserNamespace" not in root_kinds


def test_rootless_paths_follow_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("MINICONTAINER_HOME", raising=False)
    monkeypatch.delenv("MINICONTAINER_ROOT", raising=False)
    monkeypatch.setattr(paths, "_host_uid", lambda: 1000)
    monkeypatch.setenv("HOME", "/home/alice")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert str(paths.home()) == "/home/alice/.local/share/minicontainer"
    assert str(paths.state_root()) == "/tmp/minicontainer-1000"
    monkeypatch.setenv("XDG_DATA_HOME", "/data/alice")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert str(paths.home()) == "/data/alice/minicontainer"
    assert str(paths.state_root()) == "/run/user/1000/minicontainer"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/ignored")
    assert str(paths.state_root()) == "/tmp/minicontainer-1000"
    monkeypatch.setattr(paths, "_host_uid", lambda: 0)
    assert str(paths.home()) == paths.DEFAULT_HOME and str(paths.state_root()) == paths.DEFAULT_ROOT
    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path))
    assert paths.home() == tmp_path


def test_a_private_dir_someone_else_made_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "minicontainer-1000"
    d.mkdir()
    paths.ensure_private_dir(d)
    assert (d.stat().st_mode & 0o777) == 0o700
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    with pytest.raises(MiniError, match="belongs to uid"):
        paths.ensure_private_dir(d)


def test_rootless_runs_without_a_cgroup_and_refuses_limits():
    from minicontainer.container.runtime import Runner

    runner = Runner(build_spec("mini"))
    runner.unprivileged = True
    steps = runner._cgroup_steps("c" * 64)
    assert len(steps) == 1 and isinstance(steps[0], S.Note) and "no cgroup" in steps[0].what()
    assert runner.cgroup is None
    limited = types.SimpleNamespace(is_empty=lambda: False)
    with pytest.raises(NotRootError) as e:
        runner._rootless_cgroup_steps(limited)
    assert "need a cgroup" in e.value.message and "run as root" in e.value.hint


# --- root's containers in a subordinate range (--userns as root) -------------------------------


def test_remap_takes_the_first_range_of_the_user(tmp_path):
    files = _files(tmp_path, "minicontainer:300000:65536\nminicontainer:500000:10\n", "minicontainer:400000:70000\n")
    m = userns.remap_mapping("minicontainer", **files)
    assert m.uids == (userns.IdRange(0, 300000, 65536),) and m.gids == (userns.IdRange(0, 400000, 65536),)
    assert m.writer == "remap" and m.user == "minicontainer"
    step = S.WriteIdMaps(mapping=m)
    assert "0 300000 65536" in step.shell() and "0 400000 65536" in step.shell()


def test_remap_without_a_range_is_a_refusal_naming_the_fix(tmp_path):
    with pytest.raises(SecurityError) as e:
        userns.remap_mapping("minicontainer", **_files(tmp_path, "alice:100000:65536\n"))
    assert "subordinate range of user minicontainer" in e.value.message
    assert "scripts/setup" in e.value.hint and "usermod --add-subuids" in e.value.hint


def test_the_remap_setting_names_the_user():
    assert userns.remap_setting({}) is None
    assert userns.remap_setting({"MINICONTAINER_USERNS_REMAP": "default"}) == "minicontainer"
    assert userns.remap_setting({"MINICONTAINER_USERNS_REMAP": "dockremap"}) == "dockremap"
