"""plan.py: the ordered steps behind run, --dry-run and --explain."""

from __future__ import annotations

import pytest

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container.spec import build_spec
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

pytestmark = pytest.mark.unit

ROOTFS = P.RootfsLayout(lower="/images/x/rootfs", layer="/c/123")


def kinds(plan):
    return [type(s).__name__ for s in plan.steps]


def test_order_of_a_default_run():
    plan = P.build_plan(build_spec("mini", ["echo", "hi"]), hostname="box", rootfs=ROOTFS)
    k = kinds(plan)
    assert k[:9] == ["UnsharePid", "Fork", "ReleaseChild", "AwaitExec", "AwaitRelease", "Unshare", "LoopbackUp",
                     "MakeMountsPrivate", "MountRootfs"]
    assert k[-5:] == ["NewSession", "PivotRoot", "SetWorkdir", "ResetSignals", "Exec"]
    # proc before sys, /dev before its devices, devices before pivot_root
    order = [getattr(s, "target", None) for s in plan.steps if isinstance(s, P.Mount)]
    assert order == ["/proc", "/sys", "/tmp", "/dev", "/dev/pts", "/dev/shm"]
    assert k.index("MakeDevice") > k.index("Mount")
    assert plan.steps[-1].argv == ("echo", "hi")


def test_parent_and_child_phases():
    plan = P.build_plan(build_spec("mini"), hostname="box", rootfs=ROOTFS)
    assert [type(s).__name__ for s in plan.phase(S.BEFORE_FORK)] == ["UnsharePid", "Fork"]
    assert [type(s).__name__ for s in plan.phase(S.PARENT)] == ["ReleaseChild", "AwaitExec"]
    assert all(s.phase == S.CHILD for s in plan.steps[4:-3])
    assert all(s.phase == S.INSIDE for s in plan.steps[-3:])


def test_namespaces_follow_the_spec():
    plan = P.build_plan(build_spec("mini", pid="host", network="host"), hostname="h", rootfs=ROOTFS)
    assert "UnsharePid" not in kinds(plan)
    unshare = next(s for s in plan.steps if isinstance(s, P.Unshare))
    assert unshare.namespaces == ("mnt", "uts", "ipc", "cgroup")
    assert "--net" not in unshare.shell()
    # with the host network, sysfs is bound from the host and made read-only
    sys_mount = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/sys")
    assert sys_mount.host_source and any(isinstance(s, P.RemountReadonly) and s.target == "/sys" for s in plan.steps)


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
    assert any(isinstance(s, P.RemountReadonly) and s.target == "/data" for s in plan.steps)
    cache = next(s for s in plan.steps if isinstance(s, P.Mount) and s.target == "/cache")
    assert cache.fstype == "tmpfs" and cache.data == "size=1m"


def test_render_has_what_why_and_shell_for_every_step():
    plan = P.build_plan(build_spec("mini", ["true"]), hostname="box", rootfs=ROOTFS)
    text = plan.render()
    assert text.count("why:") >= len(plan.steps) - 1  # Fork has a why too; Exec as well
    for needle in ("unshare --mount --uts --ipc --net --cgroup", "mount --make-rprivate /",
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
