"""doctor: each check against a fake /proc, /sys and /etc in a temp dir."""

from __future__ import annotations

import json

import pytest

from minicontainer.commands import doctor as D

pytestmark = pytest.mark.unit

HYBRID_MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
37 30 0:33 / /sys/fs/cgroup/blkio rw,nosuid - cgroup cgroup rw,blkio
38 30 0:34 / /sys/fs/cgroup/freezer rw,nosuid - cgroup cgroup rw,freezer
"""

V2_MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
"""


def fake_tree(root, *, mountinfo=HYBRID_MOUNTINFO, namespaces=tuple(D.NAMESPACES), filesystems="nodev\toverlay\n",
              knobs=None, subuid="alice:100000:65536\nminicontainer:300000:65536\n", seccomp=True):
    (root / "proc/self/ns").mkdir(parents=True)
    for ns in namespaces:
        (root / "proc/self/ns" / ns).write_text("")
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/filesystems").write_text(filesystems)
    (root / "proc/self/status").write_text("Name:\tpython\nSeccomp:\t0\n" if seccomp else "Name:\tpython\n")
    (root / "proc/sys/kernel/seccomp").mkdir(parents=True)
    (root / "proc/sys/kernel/seccomp/actions_avail").write_text("kill_process kill_thread trap errno log allow\n")
    for name, value in (knobs or {}).items():
        p = root / "proc/sys" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    (root / "etc").mkdir()
    (root / "etc/subuid").write_text(subuid)
    (root / "etc/subgid").write_text(subuid)
    return root


def host(root, **kw):
    defaults = dict(root=str(root), euid=0, release="6.1.0-18-amd64", user="alice", store="/var/lib/minicontainer",
                    which=lambda name: f"/usr/bin/{name}", try_unshare=lambda flag: True,
                    syscall_errno=lambda name: 9, importable=lambda module: None, free_bytes=lambda path: 10 << 30)
    defaults.update(kw)
    return D.Host(**defaults)


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_complete_hybrid_host_runs_and_lists_every_feature(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path)))
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert D.run_works(checks)
    c = by_name(checks)
    assert "hybrid" in c["cgroups"].detail and "memory" in c["cgroups"].detail
    line = D.format_text(checks).splitlines()[-1]
    assert line == "features on this host: run, limits, rootless, rootless uid ranges, overlay, --init, networks"
    # every check the issue names is there
    for name in ("root", "kernel", "namespace user", "cgroups", "overlayfs", "idmapped mounts", "mount_setattr",
                 "pivot_root", "newuidmap/newgidmap", "/etc/subuid", "--userns range", "tini", "seccomp", "python pyroute2",
                 "python psutil", "store disk space"):
        assert name in c


def test_a_missing_namespace_stops_run_and_names_the_opt_out(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path, namespaces=("mnt", "uts", "ipc", "pid", "cgroup", "user"))))
    net = by_name(checks)["namespace net"]
    assert not net.ok and net.needed and "--network host" in net.fix
    assert not D.run_works(checks)


def test_an_unshare_refused_is_reported(tmp_path):
    refused = {D.NAMESPACES["ipc"][0]}
    checks = D.run_checks(host(fake_tree(tmp_path), try_unshare=lambda flag: flag not in refused))
    ipc = by_name(checks)["namespace ipc"]
    assert not ipc.ok and "refused" in ipc.detail
    assert by_name(checks)["namespace pid"].ok


@pytest.mark.parametrize("knob,value,named", [
    ("kernel/apparmor_restrict_unprivileged_userns", "1", "apparmor_restrict_unprivileged_userns"),
    ("kernel/unprivileged_userns_clone", "0", "unprivileged_userns_clone"),
    ("user/max_user_namespaces", "0", "max_user_namespaces"),
])
def test_user_namespace_switches_are_named_with_their_fix(tmp_path, knob, value, named):
    root = fake_tree(tmp_path, knobs={knob: value})
    as_root = by_name(D.run_checks(host(root)))
    assert not as_root["namespace user"].ok and named in as_root["namespace user"].detail
    assert "sysctl" in as_root["namespace user"].fix
    # root does not need it; an unprivileged caller does (run goes rootless)
    assert D.run_works(list(as_root.values()))
    as_user = D.run_checks(host(root, euid=1000))
    assert not D.run_works(as_user)


def test_unprivileged_with_user_namespaces_runs_rootless_without_limits(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path), euid=1000))
    assert not by_name(checks)["root"].ok
    assert D.run_works(checks)
    f = D.features(checks)
    assert f["rootless"] and not f["limits"]


def test_a_v2_host_in_a_cgroup_namespace_explains_the_no_internal_process_rule(tmp_path):
    root = fake_tree(tmp_path, mountinfo=V2_MOUNTINFO)
    cg = root / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (cg / "cgroup.subtree_control").write_text("")
    (cg / "cgroup.procs").write_text("1\n57\n")
    (cg / "cgroup.type").write_text("domain\n")  # not the real root: a namespace's root
    # mount points from mountinfo are read under the fake root
    c = by_name(D.run_checks(host(root)))
    assert c["cgroups"].ok and "v2" in c["cgroups"].detail and "memory" in c["cgroups"].detail
    rule = c["cgroup v2 internal processes"]
    assert "no-internal-processes" in rule.detail and "init/" in rule.detail and "1, 57" in rule.detail


def test_v2_without_memory_controller_is_missing(tmp_path):
    root = fake_tree(tmp_path, mountinfo=V2_MOUNTINFO)
    cg = root / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu pids\n")
    c = by_name(D.run_checks(host(root)))
    assert not c["cgroup controllers"].ok and "memory" in c["cgroup controllers"].detail
    assert c["cgroup v2 delegation"].ok


def test_no_cgroups_at_all_is_not_fatal(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path, mountinfo="22 1 8:1 / / rw - ext4 /dev/vda1 rw\n")))
    assert not by_name(checks)["cgroups"].ok
    assert D.run_works(checks) and not D.features(checks)["limits"]


def test_an_initramfs_root_cannot_pivot(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path, mountinfo="1 0 0:1 / / rw - rootfs rootfs rw\n")))
    pivot = by_name(checks)["pivot_root"]
    assert not pivot.ok and "initramfs" in pivot.detail and "--chroot" in pivot.fix
    assert not D.run_works(checks)


def test_old_kernel_missing_overlay_and_mount_setattr(tmp_path):
    checks = by_name(D.run_checks(host(fake_tree(tmp_path, filesystems="nodev\tproc\n"), release="5.4.0",
                                       syscall_errno=lambda name: 38)))
    assert checks["kernel"].ok and "cgroup.kill" in checks["kernel"].detail
    assert not checks["overlayfs"].ok and "modprobe overlay" in checks["overlayfs"].fix
    assert not checks["mount_setattr"].ok and not checks["idmapped mounts"].ok


def test_seccomp_blocked_mount_setattr_says_so(tmp_path):
    c = by_name(D.run_checks(host(fake_tree(tmp_path), syscall_errno=lambda name: 1)))
    assert not c["mount_setattr"].ok and "seccomp" in c["mount_setattr"].detail


def test_missing_tools_and_ranges_have_their_fixes(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path, subuid="bob:100000:65536\n"), which=lambda name: None))
    c = by_name(checks)
    assert c["tini"].fix == "apt-get install tini"
    assert c["newuidmap/newgidmap"].fix == "apt-get install uidmap"
    assert "usermod --add-subuids" in c["/etc/subuid"].fix and "alice" in c["/etc/subuid"].fix
    assert D.run_works(checks)  # none of these stops run
    assert "not: rootless uid ranges, --init" in D.feature_line(checks)


def test_no_seccomp_or_prctl_stops_run(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path, seccomp=False)))
    assert not by_name(checks)["seccomp"].ok and not D.run_works(checks)
    checks = D.run_checks(host(fake_tree(tmp_path / "b"),
                               importable=lambda m: "ModuleNotFoundError: no prctl" if m == "prctl" else None))
    assert not by_name(checks)["python prctl"].ok and not D.run_works(checks)


def test_a_full_disk_stops_run(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path), free_bytes=lambda path: 1 << 20))
    assert not by_name(checks)["store disk space"].ok and not D.run_works(checks)


def test_text_and_json_output(tmp_path):
    checks = D.run_checks(host(fake_tree(tmp_path), which=lambda name: None))
    text = D.format_text(checks)
    assert any(line.startswith("missing  tini") for line in text.splitlines())
    assert "fix: apt-get install tini" in text
    data = json.loads(D.to_json(checks))
    assert data["run_works"] is True and data["features"]["--init"] is False
    assert {"name", "ok", "detail", "fix", "needed"} <= set(data["checks"][0])


def test_roots_userns_range_is_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICONTAINER_USERNS_REMAP", raising=False)
    c = by_name(D.run_checks(host(fake_tree(tmp_path, subuid="alice:100000:65536\n"))))
    assert not c["--userns range"].ok and "minicontainer" in c["--userns range"].detail
    assert c["--userns range"].fix == "./scripts/setup"
    c = by_name(D.run_checks(host(fake_tree(tmp_path / "x"))))
    assert c["--userns range"].ok and "300000" in c["--userns range"].detail
