"""plan.py: the ordered steps behind run, --dry-run and --explain."""

from __future__ import annotations

import pytest

from minicontainer.cgroups.devices import Device
from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.spec import build_spec
from minicontainer.syscalls.flags import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC

pytestmark = pytest.mark.unit

ROOTFS = P.RootfsLayout(lower="/images/x/rootfs", layer="/c/123")


def kinds(plan):
    return [type(s).__name__ for s in plan.steps]


def test_order_of_a_default_run():
    plan = P.build_plan(build_spec("mini", ["echo", "hi"]), hostname="box", rootfs=ROOTFS)
    k = kinds(plan)
    assert k[:9] == ["UnsharePid", "Fork", "ReleaseChild", "AwaitExec", "DieWithRuntime", "Unshare", "LoopbackUp",
                     "MakeMountsPrivate", "MountRootfs"]
    assert k[-7:] == ["NewSession", "AwaitRelease", "Unshare", "PivotRoot", "SetWorkdir", "ResetSignals", "Exec"]
    assert plan.steps[-6].after_setup and plan.steps[-5].namespaces == ("cgroup",)
    # proc before sys, /dev before its devices, devices before pivot_root
    order = [getattr(s, "target", None) for s in plan.steps if isinstance(s, P.Mount)]
    assert order == ["/proc", "/sys", "/tmp", "/dev", "/dev/pts", "/dev/shm"]
    assert k.index("MakeDevice") > k.index("Mount")
    assert plan.steps[-1].argv == ("echo", "hi")


def test_the_child_makes_what_needs_no_cgroup_before_its_release():
    """While the runtime writes the cgroups, the child unshares every namespace
    but the cgroup one and makes its mounts; after the release, the cgroup
    namespace (whose root is then its own cgroup) and /sys/fs/cgroup in it."""
    plan = P.build_plan(build_spec("mini", ["true"]), hostname="box", rootfs=ROOTFS, cgroup_view=_view("v2"))
    child = [s for s in plan.steps if s.phase == S.CHILD]
    k = [type(s).__name__ for s in child]
    assert k[0] == "DieWithRuntime"
    first, second = [s for s in child if isinstance(s, P.Unshare)]
    assert "cgroup" not in first.namespaces and second.namespaces == ("cgroup",)
    release = k.index("AwaitRelease")
    assert child[release].after_setup
    assert k.index("MountRootfs") < k.index("SetHostname") < release < child.index(second)
    targets = [getattr(s, "target", None) for s in child]
    assert targets.index("/sys/fs/cgroup") > child.index(second)  # cgroup2, mounted inside the cgroup namespace
    assert targets.index("/dev") < release and targets.index("/proc") < release


@pytest.mark.parametrize("change", [
    dict(tmpfs=["/sys/fs/cgroup/extra"]),  # a user's mount there must lie on top of ours
    dict(cgroupns="host"),
])
def test_the_early_setup_keeps_the_old_order_where_it_must(change):
    spec = build_spec("mini", ["true"], **change)
    plan = P.build_plan(spec, hostname="box", rootfs=ROOTFS, cgroup_view=_view("v1"))
    child = [type(s).__name__ for s in plan.steps if s.phase == S.CHILD]
    unshares = [s for s in plan.steps if isinstance(s, P.Unshare)]
    assert len(unshares) == 1
    if "tmpfs" in change:  # the old order: the release first, one unshare with the cgroup namespace
        assert child[:2] == ["DieWithRuntime", "AwaitRelease"] and "cgroup" in unshares[0].namespaces
    else:  # no cgroup namespace to make: only the /sys/fs/cgroup mounts wait for the release
        assert child.index("AwaitRelease") > child.index("MountRootfs") and "cgroup" not in unshares[0].namespaces


def test_parent_and_child_phases():
    plan = P.build_plan(build_spec("mini"), hostname="box", rootfs=ROOTFS)
    assert [type(s).__name__ for s in plan.phase(S.BEFORE_FORK)] == ["UnsharePid", "Fork"]
    assert [type(s).__name__ for s in plan.phase(S.PARENT)] == ["ReleaseChild", "AwaitExec"]
    assert all(s.phase == S.CHILD for s in plan.steps[4:-3])
    assert all(s.phase == S.INSIDE for s in plan.steps[-3:])


def test_namespaces_follow_the_spec():
    plan = P.build_plan(build_spec("mini", pid="host", network="host"), hostname="h", rootfs=ROOTFS)
    assert "UnsharePid" not in kinds(plan)
    unshare, later = [s for s in plan.steps if isinstance(s, P.Unshare)]
    assert unshare.namespaces == ("mnt", "uts", "ipc") and later.namespaces == ("cgroup",)
    assert "--net" not in unshare.shell()



def test_sysfs_with_the_host_network():
    # As root, a fresh sysfs even with --network host: binding the host's
    # would bring its cgroup hierarchies along, writable (issue 11, item 1).
    plan = P.build_plan(build_spec("mini", network="host"), hostname="h", rootfs=ROOTFS)
    sys_mount = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/sys")
    assert sys_mount.fstype == "sysfs" and not sys_mount.host_source and sys_mount.flags & MS_RDONLY
    # In a user namespace the kernel refuses a fresh one (the host's network
    # namespace is not ours): the host's is bound, then made read-only whole.
    plan = P.build_plan(build_spec("mini", network="host"), hostname="h", rootfs=ROOTFS, rootless=True)
    sys_mount = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/sys")
    assert sys_mount.host_source and sys_mount.flags & MS_BIND | MS_REC == MS_BIND | MS_REC
    after = plan.steps[plan.steps.index(sys_mount) + 1]
    assert isinstance(after, S.ReadonlyRecursive) and after.target == "/sys"
    assert "RemountReadonly" not in kinds(plan)


def test_uts_host_sets_no_hostname():
    assert "SetHostname" not in kinds(P.build_plan(build_spec("mini", uts="host"), hostname="h", rootfs=ROOTFS))


def test_mount_flags():
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS)
    by_target = {s.target: s for s in plan.steps if isinstance(s, P.Mount)}
    assert by_target["/proc"].flags == MS_NOSUID | MS_NODEV | MS_NOEXEC
    assert by_target["/sys"].flags & MS_RDONLY
    assert by_target["/tmp"].data == "mode=1777"
    assert "newinstance" in by_target["/dev/pts"].data
    # /proc and /sys must already exist in the image: never created (a symlink there is an error)
    assert by_target["/proc"].create == "no" and by_target["/sys"].create == "no"


def test_chroot_and_read_only():
    layout = P.RootfsLayout(lower="/images/x/rootfs", layer="/c/123", writable=False)
    plan = P.build_plan(build_spec("mini", use_chroot=True, read_only=True), hostname="h", rootfs=layout)
    k = kinds(plan)
    assert "Chroot" in k and "PivotRoot" not in k
    root = next(s for s in plan.steps if isinstance(s, P.MountRootfs))
    assert root.readonly and root.overlay_options == "lowerdir=lower:empty"
    assert k.index("RemountReadonly") < k.index("Chroot")


def test_overlay_options_are_relative():
    root = next(s for s in P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS).steps
                if isinstance(s, P.MountRootfs))
    assert root.overlay_options == "lowerdir=lower,upperdir=upper,workdir=work"
    assert root.target == "/c/123/merged" and root.layer == "/c/123"
    assert root.shell() == "cd /c/123 && mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work merged"


def test_volumes_and_tmpfs_become_mounts(tmp_path):
    spec = build_spec("mini", volumes=[f"{tmp_path}:/data:ro"], tmpfs=["/cache:size=1m"])
    plan = P.build_plan(spec, hostname="h", rootfs=ROOTFS)
    vol = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/data")
    assert vol.host_source and vol.source == str(tmp_path)
    # :ro covers what is mounted below the source too (issue 11, item 1)
    after = plan.steps[plan.steps.index(vol) + 1]
    assert isinstance(after, S.ReadonlyRecursive) and after.target == "/data"
    assert "findmnt -Rlno TARGET $ROOTFS/data" in after.shell() and "AT_RECURSIVE" in after.why()
    cache = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/cache")
    assert cache.fstype == "tmpfs" and cache.data == "size=1m"


def test_tmpfs_mount_flags_are_split_from_tmpfs_data():
    # Docker's common form: noexec and nosuid are mount(2) flags, size is tmpfs data (issue 11, item 5)
    plan = P.build_plan(build_spec("mini", tmpfs=["/run:rw,noexec,nosuid,size=65536k", "/x:exec,dev,ro"]),
                        hostname="h", rootfs=ROOTFS)
    run = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/run")
    assert run.data == "size=65536k" and run.flags == MS_NOEXEC | MS_NOSUID | MS_NODEV
    assert run.shell() == "mount -t tmpfs tmpfs $ROOTFS/run -o nosuid,nodev,noexec,size=65536k"
    x = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/x")
    assert x.flags == MS_RDONLY | MS_NOSUID and x.data == "mode=1777"


def test_read_only_bind_storage_is_read_only_with_what_is_below():
    # --read-only straight on an image directory (copy storage, no layer
    # needed): the directory is bound with its submounts, all made read-only
    layout = P.RootfsLayout(lower="/images/x/rootfs", layer="/c/123", mode="bind", writable=False)
    plan = P.build_plan(build_spec("mini", read_only=True), hostname="h", rootfs=layout)
    k = kinds(plan)
    assert k[k.index("MountRootfs") + 1] == "ReadonlyRecursive"
    assert plan.steps[k.index("MountRootfs") + 1].target == ""
    root = plan.steps[k.index("MountRootfs")]
    assert root.shell() == "mount --rbind /images/x/rootfs /c/123/merged"
    assert "RemountReadonly" not in k  # nothing left to do for --read-only later


def _view(version):
    from minicontainer.cgroups.base import CgroupView

    if version == "v2":
        return CgroupView("v2", (("", "/sys/fs/cgroup/minicontainer/c1", ()),))
    return CgroupView("v1", (("memory", "/sys/fs/cgroup/memory/minicontainer/c1", ("memory",)),
                             ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/minicontainer/c1", ("cpu", "cpuacct"))))


def _cgroup_part(plan):
    """The steps that make /sys/fs/cgroup (one run of them, after the child's release)."""
    steps = plan.steps
    part = [i for i, s in enumerate(steps)
            if (s.path if isinstance(s, S.Symlink) else getattr(s, "target", "") or "").startswith("/sys/fs/cgroup")]
    assert part == list(range(part[0], part[-1] + 1)) if part else True  # together
    return [steps[i] for i in part]


def test_v2_cgroup_namespace_gets_cgroup2_read_only():
    # issue 11, item 3: the container sees its own limits at /sys/fs/cgroup
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS, cgroup_view=_view("v2"))
    (m,) = _cgroup_part(plan)
    assert (m.target, m.fstype, m.create) == ("/sys/fs/cgroup", "cgroup2", "no")
    assert m.flags == MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    assert m.shell() == "mount -t cgroup2 cgroup2 $ROOTFS/sys/fs/cgroup -o ro,nosuid,nodev,noexec"
    # --cgroupns host: a fresh cgroup2 would be the host's whole tree; the container's own directory is bound
    plan = P.build_plan(build_spec("mini", cgroupns="host"), hostname="h", rootfs=ROOTFS, cgroup_view=_view("v2"))
    bind, ro = _cgroup_part(plan)
    assert bind.host_source and bind.source == "/sys/fs/cgroup/minicontainer/c1" and bind.flags == MS_BIND
    assert isinstance(ro, S.RemountReadonly) and ro.target == "/sys/fs/cgroup"


def test_v1_cgroups_are_bound_read_only_on_a_tmpfs():
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS, cgroup_view=_view("v1"))
    part = _cgroup_part(plan)
    assert [type(s).__name__ for s in part] == ["Mount", "Mount", "RemountReadonly", "Mount", "RemountReadonly",
                                                "Symlink", "Symlink", "RemountReadonly"]
    assert part[0].fstype == "tmpfs" and part[0].target == "/sys/fs/cgroup"
    assert part[1].source == "/sys/fs/cgroup/memory/minicontainer/c1" and part[1].target == "/sys/fs/cgroup/memory"
    assert part[1].host_source and part[1].create == "dir"
    assert part[2].flags == MS_NOSUID | MS_NODEV | MS_NOEXEC and part[2].target == "/sys/fs/cgroup/memory"
    assert [(s.path, s.target) for s in part[5:7]] == [("/sys/fs/cgroup/cpu", "cpu,cpuacct"),
                                                       ("/sys/fs/cgroup/cpuacct", "cpu,cpuacct")]
    assert part[-1].target == "/sys/fs/cgroup"
    assert "mount -o remount,bind,ro,nosuid,nodev,noexec $ROOTFS/sys/fs/cgroup/memory" in plan.render()


def test_cgroup_mounts_stay_writable_only_with_privileged_and_are_absent_without_a_cgroup():
    from minicontainer.security import parse_security

    spec = build_spec("mini", security=parse_security(privileged=True))
    (m,) = _cgroup_part(P.build_plan(spec, hostname="h", rootfs=ROOTFS, cgroup_view=_view("v2")))
    assert not m.flags & MS_RDONLY
    assert not any(isinstance(s, S.RemountReadonly)
                   for s in _cgroup_part(P.build_plan(spec, hostname="h", rootfs=ROOTFS, cgroup_view=_view("v1"))))
    assert _cgroup_part(P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS)) == []


def test_render_has_what_why_and_shell_for_every_step():
    plan = P.build_plan(build_spec("mini", ["true"]), hostname="box", rootfs=ROOTFS)
    text = plan.render()
    assert text.count("why:") >= len(plan.steps) - 1  # Fork has a why too; Exec as well
    for needle in ("unshare --mount --uts --ipc --net", "unshare --cgroup", "mount --make-rprivate /",
                   "mount -t proc proc $ROOTFS/proc -o nosuid,nodev,noexec", "mknod -m 666 $ROOTFS/dev/null c 1 3",
                   "hostname box", "pivot_root . .", "exec env -i", "mount_namespaces(7)"):
        assert needle in text, needle
    assert text.splitlines()[0].startswith(" 1. [runtime]")


def test_cgroup_and_security_steps_are_placed():
    from minicontainer.cgroups.base import CgroupWrite

    from minicontainer.security import SecuritySteps

    cg = [S.CgroupStep(write=CgroupWrite(file="/sys/fs/cgroup/x/memory.max", value="1", why="cgroups(7)"))]
    sec = SecuritySteps(masks=[S.MaskPath(path="/proc/kcore")], before_pivot=[S.MakeUndumpable()],
                        inside=[S.NoNewPrivs()])
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=ROOTFS, cgroup_steps=cg, security=sec)
    k = kinds(plan)
    assert k.index("CgroupStep") == k.index("Fork") + 1 and k.index("ReleaseChild") == k.index("CgroupStep") + 1
    assert k.index("MaskPath") > k.index("Symlink")
    assert k.index("NewSession") < k.index("MakeUndumpable") < k.index("PivotRoot")
    assert k.index("NoNewPrivs") > k.index("PivotRoot") and k.index("NoNewPrivs") == k.index("Exec") - 1
    assert "echo '1' > /sys/fs/cgroup/x/memory.max" in plan.render()


def test_legend_shortens_long_values():
    plan = P.build_plan(build_spec("mini"), hostname="h", rootfs=P.RootfsLayout(lower="/img", layer="/c/" + "a" * 64))
    plan.legend = {"ID": "a" * 64}
    text = plan.render()
    assert text.splitlines()[0] == "ID=" + "a" * 64
    assert "a" * 64 not in "\n".join(text.splitlines()[1:])
    assert "cd /c/$ID && mount -t overlay" in text


def test_init_is_bound_read_only_and_runs_the_command(monkeypatch):
    plan = P.build_plan(build_spec("mini", ["sleep", "1"], init=True), hostname="h", rootfs=ROOTFS,
                        init="/usr/bin/tini-static")
    mounts = [s for s in plan.steps if isinstance(s, P.Mount) and s.target == P.INIT_PATH]
    assert mounts and mounts[0].source == "/usr/bin/tini-static" and mounts[0].create == "file"
    assert any(isinstance(s, P.RemountReadonly) and s.target == P.INIT_PATH for s in plan.steps)
    assert plan.steps[-1].argv == (P.INIT_PATH, "--", "sleep", "1")


def test_init_without_tini_is_a_clear_refusal(monkeypatch):
    from minicontainer.container import hostcheck
    from minicontainer.errors import MiniError

    monkeypatch.setattr(hostcheck, "INIT_CANDIDATES", ("/nonexistent/tini",))
    with pytest.raises(MiniError) as e:
        hostcheck.find_init()
    assert "--init needs tini" in e.value.message and "apt-get install tini" in e.value.hint


# -- --device: a node inside (its rule is the device cgroup's, cgroups/devices.py) ---------------

LOOP = Device(host="/dev/loop0", path="/dev/sub/disk0", kind="b", major=7, minor=0, access="r", mode=0o660)
MYNULL = Device(host="/dev/null", path="/dev/null", kind="c", major=1, minor=3, access="rw", mode=0o666)


def test_a_device_is_made_after_every_mount_with_the_host_numbers():
    plan = P.build_plan(build_spec("mini", devices=[LOOP], tmpfs=["/dev/sub"]), hostname="h", rootfs=ROOTFS)
    made = [s for s in plan.steps if isinstance(s, P.MakeDevice)]
    mine = made[-1]
    assert (mine.path, mine.kind, mine.major, mine.minor, mine.mode, mine.make_parent) == \
        ("/dev/sub/disk0", "b", 7, 0, 0o660, True)
    assert plan.steps.index(mine) > max(i for i, s in enumerate(plan.steps) if isinstance(s, P.Mount))
    assert mine.what() == "create the block device /dev/sub/disk0 (7:0)"
    assert mine.shell() == "mkdir -p $ROOTFS/dev/sub && mknod -m 660 $ROOTFS/dev/sub/disk0 b 7 0"
    assert "--device /dev/loop0" in mine.why() and "'r'" in mine.why()
    assert len(made) == len(P.STANDARD_DEVICES) + 1


def test_a_device_on_a_standard_path_replaces_the_standard_node():
    plan = P.build_plan(build_spec("mini", devices=[MYNULL]), hostname="h", rootfs=ROOTFS)
    nulls = [s for s in plan.steps if isinstance(s, P.MakeDevice) and s.path == "/dev/null"]
    assert len(nulls) == 1 and nulls[0].make_parent and "--device" in nulls[0].why()


def test_rootless_binds_the_host_device():
    plan = P.build_plan(build_spec("mini", devices=[LOOP]), hostname="h", rootfs=ROOTFS, rootless=True)
    assert not [s for s in plan.steps if isinstance(s, P.MakeDevice)]
    bind = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/dev/sub/disk0")
    assert bind.source == "/dev/loop0" and bind.host_source and bind.create == "file"


def test_build_spec_parses_device_strings():
    spec = build_spec("mini", devices=["/dev/null:/dev/mynull:rw"])
    assert [(d.path, d.kind, d.major, d.minor, d.access) for d in spec.devices] == [("/dev/mynull", "c", 1, 3, "rw")]


# --- --userns as root: the container in a subordinate range ---------------------------------


def _remap_plan(spec):
    from minicontainer.container import userns

    remap = userns.IdMapping(0, 0, "minicontainer", (userns.IdRange(0, 300000, 65536),),
                             (userns.IdRange(0, 300000, 65536),), "remap")
    return P.build_plan(spec, hostname="box", rootfs=ROOTFS, rootless=True, remap=remap)


def test_remap_the_child_makes_the_user_namespace_and_the_runtime_maps_it():
    plan = _remap_plan(build_spec("mini", ["id"], volumes=["/tmp:/data"]))
    assert [type(s).__name__ for s in plan.phase(S.BEFORE_FORK)] == ["BecomeSubreaper", "Fork"]
    assert [type(s).__name__ for s in plan.phase(S.PARENT)] == ["ReleaseChild", "WriteIdMaps", "AdoptInit",
                                                                 "AwaitExec"]
    k = kinds(plan)
    child = k[k.index("AwaitRelease"):]
    assert child[:7] == ["AwaitRelease", "UnshareUser", "Unshare", "OpenHostPaths", "BecomeRoot", "ForkInit",
                         "Unshare"]
    unshares = [s.namespaces for s in plan.steps if isinstance(s, S.Unshare)]
    assert unshares == [("mnt",), ("uts", "ipc", "net", "cgroup")]  # the PID namespace is ForkInit's
    assert "UnsharePid" not in k
    rootfs = next(s for s in plan.steps if isinstance(s, S.MountRootfs))
    assert rootfs.opened
    opened = next(s for s in plan.steps if isinstance(s, S.OpenHostPaths)).paths
    assert opened[:2] == ("/c/123", "/c/123/lower") and "/tmp" in opened
    # nothing can make a device node in a user namespace: the host's are bound
    assert "MakeDevice" not in k
    assert any(isinstance(s, P.Mount) and s.target == "/dev/null" and s.source == "/dev/null" for s in plan.steps)
    shown = plan.render()
    assert "echo '0 300000 65536' > /proc/$CHILD/uid_map; echo '0 300000 65536' > /proc/$CHILD/gid_map" in shown
    assert "become root of the user namespace: uid and gid 0 inside, 300000 and 300000 on the host" in shown


def test_remap_with_a_device_binds_the_node_and_says_the_cgroup_allows_it():
    loop = Device(host="/dev/loop0", path="/dev/loop0", kind="b", major=7, minor=0, access="r")
    plan = _remap_plan(build_spec("mini", ["id"], devices=[loop]))
    bind = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/dev/loop0")
    assert bind.source == "/dev/loop0" and "the device cgroup allows it 'r'" in bind.why()
