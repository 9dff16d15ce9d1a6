"""config.json -> ContainerSpec (oci/config.py), and minicontainer-runc's own parser (oci/cli.py)."""

from __future__ import annotations

import copy
import json

import pytest

from minicontainer.errors import UsageError
from minicontainer.oci import cli
from minicontainer.oci.config import convert
from minicontainer.oci.features import default_spec, features, write_default_spec
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

pytestmark = pytest.mark.unit


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def _convert(bundle, doc):
    return convert(doc, bundle=str(bundle), name="c1")


def _refused(bundle, doc, *words):
    with pytest.raises(UsageError) as e:
        _convert(bundle, doc)
    for w in words:
        assert w in e.value.message, e.value.message
    return e.value


def test_default_spec_converts(bundle):
    b = _convert(bundle, default_spec())
    spec = b.spec
    assert spec.image == str(bundle / "rootfs")
    assert spec.argv() == ("sh",)
    assert spec.tty and spec.interactive
    assert spec.read_only
    assert spec.hostname == "minicontainer"
    assert spec.namespaces == frozenset({"pid", "net", "ipc", "uts", "mnt", "cgroup"})
    sec = spec.security
    assert sec.cap_drop == ("ALL",) and "CAP_KILL" in sec.cap_add and "CAP_MKNOD" in sec.cap_add
    assert sec.seccomp == "unconfined"  # no linux.seccomp: no filter, as runc
    assert sec.no_new_privs and sec.user == "0:0"
    assert [(u.name, u.soft, u.hard) for u in sec.ulimits] == [("nofile", 1024, 1024)]
    assert "/proc/kcore" in sec.masked_paths and "/proc/sys" in sec.readonly_paths
    # /proc, /sys, /dev and /dev/pts are our plan's own; shm and mqueue come from the bundle
    assert [(m.target, m.fstype, m.flags) for m in spec.mounts] == [
        ("/dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV),
        ("/dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV),
    ]
    assert spec.mounts[0].data == "mode=1777,size=65536k"


def test_process_env_cwd_user_and_bind_mounts(bundle):
    doc = default_spec()
    doc["process"].update(args=["/bin/app", "-x"], env=["A=1", "B=x=y"], cwd="/srv", terminal=False,
                          user={"uid": 1000, "gid": 1000, "additionalGids": [5, 6]})
    for s in ("effective", "permitted"):
        doc["process"]["capabilities"][s] = []
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": str(bundle / "data"),
                          "options": ["rbind", "ro", "nosuid", "rprivate"]})
    doc["mounts"].append({"destination": "/etc/x", "source": str(bundle / "rootfs"), "options": ["bind"]})
    spec = _convert(bundle, doc).spec
    assert spec.argv() == ("/bin/app", "-x")
    assert dict(spec.env) == {"A": "1", "B": "x=y"}
    assert spec.cwd() == "/srv" and not spec.tty
    assert spec.security.user == "1000:1000" and spec.security.group_add == ("5", "6")
    data, other = spec.mounts[-2:]
    assert data.fstype is None and data.recursive and data.flags == MS_RDONLY | MS_NOSUID and data.is_dir
    assert not other.recursive and other.flags == 0


def test_resources_and_sysctl(bundle):
    doc = default_spec()
    doc["linux"]["resources"].update(memory={"limit": 64 << 20}, pids={"limit": 50},
                                     cpu={"quota": 50000, "period": 100000, "shares": 512})
    doc["linux"]["sysctl"] = {"net.ipv4.ping_group_range": "0 0", "kernel.shmmax": "1000000"}
    spec = _convert(bundle, doc).spec
    r = spec.resources
    assert (r.memory, r.pids_limit, r.cpu_shares, r.cpu_quota_us) == (64 << 20, 50, 512, 50000)
    assert spec.sysctls == (("net.ipv4.ping_group_range", "0 0"), ("kernel.shmmax", "1000000"))


def test_seccomp_in_the_oci_shape(bundle):
    doc = default_spec()
    doc["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    sec = _convert(bundle, doc).spec.security
    assert sec.seccomp_profile is not None and sec.seccomp_profile.rules[0].names == ("mkdir",)
    assert sec.seccomp.endswith("config.json:linux.seccomp")


@pytest.mark.parametrize("change, words", [
    (lambda d: d["linux"]["namespaces"][0].update(path="/proc/1/ns/pid"), ("path", "pid namespace")),
    (lambda d: d["linux"]["namespaces"].append({"type": "network"}), ("twice",)),
    (lambda d: d["linux"]["namespaces"].append({"type": "user"}), ("linux.uidMappings", "is missing")),
    (lambda d: d["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
     ("linux.uidMappings", "needs a user namespace")),
    (lambda d: d["linux"]["namespaces"].append({"type": "time"}), ("time namespace",)),
    (lambda d: d["linux"].update(namespaces=[{"type": "pid"}]), ("mount namespace",)),
    (lambda d: d["process"]["capabilities"].update(effective=["CAP_KILL"]), ("capabilities.effective",)),
    (lambda d: d["process"]["capabilities"].update(bounding=["CAP_KILL"]), ("bounding set lacks",)),
    (lambda d: d["process"]["capabilities"].update(bounding=["CAP_NOPE"]), ("capabilities.bounding",)),
    (lambda d: d["linux"]["resources"].update(blockIO={"weight": 10}), ("blockIO",)),
    (lambda d: d["linux"]["resources"].update(unified={"memory.high": "1"}), ("unified",)),
    (lambda d: d["linux"]["resources"].update(memory={"limit": 1000}), ("linux.resources",)),
    (lambda d: d["linux"].update(sysctl={"kernel.panic": "1"}), ("kernel.panic", "not namespaced")),
    (lambda d: d["linux"].update(devices=[{"path": "/etc/sda", "type": "b", "major": 8, "minor": 0}]),
     ("linux.devices[0].path",)),
    (lambda d: d["linux"].update(devices=[{"path": "/dev/f", "type": "p", "major": 0, "minor": 0}]),
     ("FIFOs",)),
    (lambda d: d["linux"].update(devices=[{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "uid": 5}]),
     ("another user",)),
    (lambda d: d["linux"]["resources"].update(devices=[{"allow": True, "type": "c", "access": "rwm"},
                                                       {"allow": False, "type": "c", "major": 1, "minor": 3}]),
     ("linux.resources.devices[1]", "narrows")),
    (lambda d: d["linux"]["resources"].update(devices=[{"allow": True, "access": "r"}]),
     ("linux.resources.devices[0]", "every device")),
    (lambda d: d["linux"]["resources"].update(devices=[{"allow": True, "type": "c", "access": "rwx"}]),
     ("linux.resources.devices[0].access",)),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "bind", "source": "/dev", "options": ["rbind"]}),
     ("/dev",)),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "t", "options": ["rro"]}),
     ("'rro'",)),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "t", "options": ["rshared"]}),
     ("propagation",)),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "nfs", "source": "h:/e"}), ("'nfs'",)),
    (lambda d: d["mounts"].append({"destination": "/x/../..", "type": "tmpfs", "source": "t"}), ("destination",)),
    (lambda d: d.update(ociVersion="2.0.0"), ("ociVersion",)),
    (lambda d: d["root"].update(path="missing"), ("root.path",)),
    (lambda d: d["process"].update(args=[]), ("process.args",)),
    (lambda d: d["process"].update(oomScoreAdj=500), ("oomScoreAdj",)),
    (lambda d: d["linux"].update(rootfsPropagation="shared"), ("rootfsPropagation",)),
])
def test_what_cannot_be_expressed_is_refused(bundle, change, words):
    doc = copy.deepcopy(default_spec())
    change(doc)
    e = _refused(bundle, doc, *words)
    assert e.message.startswith("config.json: ")


def test_runc_default_spec_is_accepted_with_notes(bundle):
    """runc 1.1's `runc spec`: ambient capabilities for root and a cgroup mount, accepted and noted."""
    doc = default_spec()
    caps = doc["process"]["capabilities"]
    caps["ambient"] = list(caps["bounding"])
    doc["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
    b = _convert(bundle, doc)
    assert any("ambient" in n for n in b.notes) and any("cgroup not mounted" in n for n in b.notes)


def test_ambient_for_a_non_root_user_is_refused(bundle):
    doc = default_spec()
    doc["process"]["user"] = {"uid": 1000, "gid": 1000}
    doc["process"]["capabilities"] = {"bounding": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    _refused(bundle, doc, "ambient")


def test_features_and_spec_file(tmp_path):
    f = features()
    assert f["ociVersionMax"] == "1.2.0" and "mount" in f["linux"]["namespaces"]
    assert f["linux"]["cgroup"]["systemd"] is False
    write_default_spec(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["root"]["path"] == "rootfs"
    with pytest.raises(UsageError, match="exists"):
        write_default_spec(str(tmp_path))


def test_parser_flags_and_positionals():
    opts, rest = cli.parse_flags(["--bundle", "/b", "--pid-file=/p", "-no-pivot", "id1"], cli.COMMANDS["create"],
                                 "create")
    assert opts == {"bundle": "/b", "pid_file": "/p", "no-pivot": True} and rest == ["id1"]
    opts, rest = cli.parse_flags(["-e", "A=1", "--env", "B=2", "-t", "id", "sh", "-c", "x"], cli.COMMANDS["exec"],
                                 "exec")
    assert opts == {"env": ["A=1", "B=2"], "t": True} and rest == ["id", "sh", "-c", "x"]
    gopts, rest = cli.parse_flags(["--root", "/r", "--log-format", "json", "kill", "--all", "x", "9"], cli.GLOBAL,
                                  "global")
    assert gopts == {"root": "/r", "log_format": "json"} and rest == ["kill", "--all", "x", "9"]


def test_unknown_flag_is_one_line_naming_it(capsys):
    assert cli.main(["create", "--bundle", "/b", "--frobnicate", "x"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "flag provided but not defined: --frobnicate (create)"


def test_systemd_cgroup_is_refused_and_logged_as_json(tmp_path, capsys):
    log = tmp_path / "log.json"
    assert cli.main(["--log", str(log), "--log-format", "json", "--systemd-cgroup", "state", "x"]) == 1
    assert "cgroupfs" in capsys.readouterr().err
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"]


def test_version_in_runcs_shape(capsys):
    assert cli.main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("minicontainer-runc version ") and lines[1].startswith("spec: 1.")


def test_pid_file_is_written_whole(tmp_path):
    from minicontainer.oci.runtime import write_pid_file

    path = tmp_path / "pid"
    write_pid_file(str(path), 4242)
    assert path.read_text() == "4242"
    assert [p.name for p in tmp_path.iterdir()] == ["pid"]


def test_plan_of_a_bundle_mounts_in_order_and_sets_sysctls(bundle):
    from minicontainer.container import plan as P
    from minicontainer.container import steps as S

    doc = default_spec()
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": str(bundle / "data"),
                          "options": ["rbind", "ro", "nodev"]})
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec = _convert(bundle, doc).spec
    from minicontainer.security import security_steps

    plan = P.build_plan(spec, hostname="h", rootfs=P.RootfsLayout(lower=spec.image, layer=str(bundle / "l"),
                                                                   mode="bind"),
                        security=security_steps(spec.security, last_cap=40, bounding=(1 << 41) - 1))
    steps = plan.steps
    targets = [s.target for s in steps if isinstance(s, S.Mount)]
    assert targets.index("/dev/shm", targets.index("/dev/pts") + 1) < targets.index("/dev/mqueue") < \
        targets.index("/data")
    remount = next(s for s in steps if isinstance(s, S.RemountFlags))
    assert remount.target == "/data" and remount.flags == MS_RDONLY | MS_NODEV
    assert "remount,bind,ro,nodev" in remount.shell()
    sysctl = next(s for s in steps if isinstance(s, S.SetSysctl))
    assert (sysctl.key, sysctl.value) == ("net.ipv4.ip_forward", "1")
    # before /proc/sys is made read-only by the readonlyPaths
    ro_sys = next(i for i, s in enumerate(steps) if isinstance(s, S.MaskPath) and s.path == "/proc/sys")
    assert steps.index(sysctl) < ro_sys


def test_a_namespace_path_is_joined_not_made(bundle):
    from minicontainer.container import plan as P
    from minicontainer.container import steps as S

    doc = default_spec()
    doc["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                  {"type": "network", "path": "/run/netns/n1"}]
    del doc["hostname"]
    spec = _convert(bundle, doc).spec
    assert spec.join_namespaces == (("net", "/run/netns/n1"),) and "net" in spec.namespaces
    steps = P.build_plan(spec, hostname="h", rootfs=P.RootfsLayout(lower=spec.image, layer="/l", mode="bind")).steps
    opened = next(i for i, s in enumerate(steps) if isinstance(s, S.OpenNamespacePath))
    fork = next(i for i, s in enumerate(steps) if isinstance(s, S.Fork))
    join = next(s for s in steps if isinstance(s, S.JoinNamespace))
    unshare = next(s for s in steps if isinstance(s, S.Unshare))
    assert opened < fork and join.ns == "net" and join.path == "/run/netns/n1"
    assert "net" not in unshare.namespaces and "mnt" in unshare.namespaces
    assert steps.index(join) < steps.index(unshare)
    # a private network namespace still gets a fresh sysfs (not the host's bound in)
    assert any(isinstance(s, S.Mount) and s.target == "/sys" and s.fstype == "sysfs" for s in steps)


def test_empty_sections_engines_send_are_not_refusals(bundle):
    doc = default_spec()
    doc["linux"]["resources"].update(blockIO={"weight": 0}, hugepageLimits=[], unified={})
    assert _convert(bundle, doc).spec.resources.is_empty()
    doc["linux"]["resources"]["blockIO"] = {"weight": 100}
    _refused(bundle, doc, "blockIO")


def test_devices_and_their_rules(bundle):
    """linux.devices are made inside and allowed (runc's rule); linux.resources.devices
    are applied in order onto the allow-list, whose defaults are always there."""
    from minicontainer.cgroups.devices import DeviceRule, rules_for

    doc = default_spec()
    doc["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},  # one of ours: nothing extra
        {"path": "/dev/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o60640},
        {"path": "/dev/snd/x", "type": "u", "major": 116, "minor": 2},
    ]
    doc["linux"]["resources"]["devices"] = [
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},  # forgotten by the deny
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "minor": -1, "access": "r"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rwm"},
        {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "rwm"},  # exactly the allow above
        {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # a default: stays (as runc)
    ]
    spec = _convert(bundle, doc).spec
    assert [(d.path, d.kind, d.major, d.minor, d.mode) for d in spec.devices] == [
        ("/dev/loop7", "b", 7, 7, 0o640), ("/dev/snd/x", "c", 116, 2, 0o666)]
    assert spec.resources.devices == (DeviceRule("c", 4, None, "r"), DeviceRule("b", 7, 7, "rwm"),
                                      DeviceRule("c", 116, 2, "rwm"))
    assert DeviceRule("c", 1, 3, "rwm") in rules_for(spec.resources.devices)


def test_privileged_device_rule_allows_everything(bundle):
    doc = default_spec()
    doc["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]  # podman --privileged
    assert [str(r) for r in _convert(bundle, doc).spec.resources.devices] == ["a"]


def test_hooks_and_their_state(bundle):
    doc = default_spec()
    doc["annotations"] = {"a": "b"}
    doc["hooks"] = {"createRuntime": [{"path": "/bin/h", "args": ["h", "-x"], "env": ["A=1"], "timeout": 3}],
                    "poststop": [{"path": "/bin/p"}]}
    spec = _convert(bundle, doc).spec
    h = spec.hooks_of("createRuntime")[0]
    assert (h.path, h.args, h.env, h.timeout) == ("/bin/h", ("h", "-x"), ("A=1",), 3)
    assert spec.hooks_of("poststop")[0].args == ()
    assert json.loads(spec.hook_state) == {"ociVersion": "1.2.0", "id": "c1", "bundle": str(bundle),
                                           "annotations": {"a": "b"}}


@pytest.mark.parametrize("hooks, words", [
    ({"preStart": []}, "hooks.preStart"),
    ({"prestart": [{"path": "rel"}]}, "hooks.prestart[0].path"),
    ({"poststart": [{"path": "/x", "timeout": 0}]}, "hooks.poststart[0].timeout"),
    ({"poststart": [{"path": "/x", "env": ["NOEQUALS"]}]}, "hooks.poststart[0].env"),
])
def test_bad_hooks_are_refused(bundle, hooks, words):
    doc = default_spec()
    doc["hooks"] = hooks
    _refused(bundle, doc, words)


@pytest.mark.parametrize("path, want", [
    ("/libpod_parent/libpod-abc", "libpod_parent/libpod-abc"),  # podman with cgroupfs
    ("/docker/abc", "docker/abc"),
    ("lab/c1", "minicontainer/lab/c1"),  # relative: below minicontainer/
])
def test_cgroups_path_is_the_containers_cgroup(bundle, path, want):
    from minicontainer.cgroups import manager_of
    from minicontainer.cgroups.fakefs import FakeCgroupFs
    from minicontainer.cgroups.v2 import V2Manager
    from minicontainer.container.runtime import saved_cgroup

    doc = default_spec()
    doc["linux"]["cgroupsPath"] = path
    r = _convert(bundle, doc).spec.resources
    assert r.cgroup_path == want
    m = V2Manager("a" * 64, r, mount="/sys/fs/cgroup", fs=FakeCgroupFs())
    assert m.leaves() == [f"/sys/fs/cgroup/{want}"]
    assert saved_cgroup(r) == "/" + want  # what the state keeps, read back by manager_of
    assert manager_of("a" * 64, saved_cgroup(r)).relative_path == want


@pytest.mark.parametrize("path", ["system.slice:docker:abc", "/a/../b", "/cgroup.procs", "/"])
def test_a_bad_cgroups_path_is_refused(bundle, path):
    doc = default_spec()
    doc["linux"]["cgroupsPath"] = path  # ("/": the root cgroup itself)
    _refused(bundle, doc, "linux.cgroupsPath")


@pytest.mark.parametrize("text, seconds", [("5s", 5), ("100ms", 0.1), ("1m30s", 90), ("1.5h", 5400)])
def test_events_interval_is_a_go_duration(text, seconds):
    from minicontainer.oci.runtime import parse_interval

    assert parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "0s", "5x", "-1s"])
def test_a_bad_interval_is_refused(text):
    from minicontainer.oci.runtime import parse_interval

    with pytest.raises(UsageError):
        parse_interval(text)
