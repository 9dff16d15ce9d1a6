"""interpreter.py: every step of a plan, against the recording syscall layer (no root).

The central property, "what you read is what runs": a whole plan is run
against the Recorder, once playing the runtime's side of the fork and once
the child's, and the calls recorded after each explained step are exactly
the calls that step stands for, in the plan's order, with nothing in between.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat

import pytest

from minicontainer.container import plan as P
from minicontainer.container import steps as S
from minicontainer.container import userns
from minicontainer.cgroups import manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.devices import Device
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import parse_resources
from minicontainer.errors import CommandError, SyscallError
from minicontainer.container.interpreter import Interpreter, execvpe
from minicontainer.security import parse_security, security_steps
from minicontainer.security.users import ExecUser
from minicontainer.container.spec import HOOK_KINDS, Hook, build_spec
from minicontainer.syscalls.fake import FakeChannels, Recorder
from minicontainer.syscalls.flags import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)

pytestmark = pytest.mark.unit

ROOTFS = P.RootfsLayout(lower="/img", layer="/c/1")
ALL_CAPS = (1 << 41) - 1


def child_steps(spec):
    plan = P.build_plan(spec, hostname="box", rootfs=ROOTFS)
    steps = [s for s in plan.steps if s.phase in (S.CHILD, S.INSIDE)]
    return steps[:-1], steps[-1]  # all but Exec, and Exec


def child(sc=None, **kw) -> Interpreter:
    """An interpreter on the child's side of the fork."""
    sc = sc or Recorder(fork_returns=0)
    interp = Interpreter(sc, channels=FakeChannels(sc), **kw)
    interp.in_child, interp.phases = True, (S.CHILD, S.INSIDE)
    return interp


def run_all(spec, sc=None, **kw):
    sc = sc or Recorder(fork_returns=0)
    steps, _ = child_steps(spec)
    child(sc, **kw).run(steps)
    return sc


def test_network_host_leaves_lo_alone():
    assert "link_up" not in run_all(build_spec("mini", network="host")).names()


def test_calls_in_order():
    sc = run_all(build_spec("mini"))
    calls = [c for c in sc.calls if c[0] not in ("set_pdeathsig", "read")]  # DieWithRuntime, AwaitRelease
    names = [c[0] for c in calls]
    assert names[0] == "unshare" and calls[0][1] & CLONE_NEWNS and calls[0][1] & CLONE_NEWNET
    assert calls.pop(1) == ("link_up", "lo")  # the new namespace's loopback, up (--network none)
    names.pop(1)
    assert calls[1] == ("mount", None, "/", None, MS_REC | MS_PRIVATE, None)
    assert ("chdir", "/c/1") in calls
    assert ("mount", "overlay", "/c/1/merged", "overlay", 0, "lowerdir=lower,upperdir=upper,workdir=work") in calls
    assert names.index("pivot_root") > names.index("sethostname")
    pivot = names.index("fchdir")
    assert calls[pivot:pivot + 4] == [("fchdir", "/c/1/merged"), ("pivot_root", ".", "."), ("umount2", ".", 2),
                                      ("chdir", "/")]


def test_mounts_target_paths_inside_the_root_through_fds():
    sc = run_all(build_spec("mini"))
    mounts = {c[2]: c for c in sc.calls if c[0] == "mount"}
    assert mounts["/proc"][3] == "proc"
    assert mounts["/sys"][4] & MS_RDONLY
    # every mountpoint was opened beneath the root, never joined as a string
    opened = [c[1] for c in sc.calls if c[0] == "open_beneath"]
    for target in ("/proc", "/sys", "/tmp", "/dev", "/dev/pts", "/dev/shm"):
        assert target in opened
    # /proc and /sys are never created
    assert ("open_beneath", "/proc", False, False) in sc.calls


def test_devices_and_links():
    sc = run_all(build_spec("mini"))
    nodes = {c[1]: (c[3], c[4]) for c in sc.calls if c[0] == "mknod"}
    assert nodes["/dev/null"] == (1, 3) and nodes["/dev/tty"] == (5, 0)
    assert len(nodes) == 6
    links = {c[2]: c[1] for c in sc.calls if c[0] == "symlink"}
    assert links["/dev/ptmx"] == "pts/ptmx" and links["/dev/fd"] == "/proc/self/fd"


def test_a_block_device_is_made_with_its_parent_directories():
    sc = Recorder(fork_returns=0)
    interp = child(sc)
    interp.root_fd = 7
    interp.apply(S.MakeDevice(path="/dev/sub/disk0", kind="b", major=7, minor=0, mode=0o660, make_parent=True))
    assert sc.calls == [("open_beneath", "/dev/sub", True, False), ("mknod", "/dev/sub/disk0", stat.S_IFBLK | 0o660, 7, 0),
                        ("chmod", "/dev/sub/disk0", 0o660)]


def test_read_only_remounts_keep_flags():
    sc = run_all(build_spec("mini", read_only=True))
    remounts = [c for c in sc.calls if c[0] == "mount" and c[4] & MS_REMOUNT]
    assert remounts and all(c[4] & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY for c in remounts)


def test_read_only_volumes_are_read_only_with_everything_below(tmp_path):
    # issue 11, item 1: one mount_setattr(2) with AT_RECURSIVE on the bind, not a remount of its top
    sc = run_all(build_spec("mini", volumes=[f"{tmp_path}:/host:ro"]))
    (call,) = [c for c in sc.calls if c[0] == "mount_setattr"]
    assert call == ("mount_setattr", "/host", MOUNT_ATTR_RDONLY, 0, True)
    assert not [c for c in sc.calls if c[0] == "mount" and c[2] == "/host" and c[4] & MS_REMOUNT]


def _readonly_recursive(submounts):
    sc = Recorder(fail={"mount_setattr": errno.ENOSYS}, fork_returns=0, submounts=submounts)
    interp = child(sc)
    interp.root_fd = 7
    interp.run([S.ReadonlyRecursive(target="/host", reason="-v ...:ro")])
    return sc


def test_before_linux_5_12_a_tree_without_submounts_is_remounted():
    sc = _readonly_recursive({})
    assert [c[0] for c in sc.calls] == ["open_beneath", "mount_setattr", "mount"]
    assert sc.calls[-1][4] & (MS_BIND | MS_REMOUNT | MS_RDONLY) == MS_BIND | MS_REMOUNT | MS_RDONLY


def test_before_linux_5_12_a_tree_with_submounts_is_refused():
    with pytest.raises(SyscallError) as exc:
        _readonly_recursive({"/host": ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]})
    e = exc.value
    assert e.errno == errno.ENOSYS
    assert "/host/proc, /host/sys, /host/sys/fs/cgroup, ..." in e.message and "4 mount(s)" in e.message
    assert "5.12" in e.hint and "drop :ro" in e.hint


def test_submounts_are_read_from_the_mount_table():
    from minicontainer.syscalls.linux import submounts_of

    table = ["20 1 0:1 / / rw - ext4 /dev/vda rw",
             "30 20 0:2 / /data rw - ext4 /dev/vdb rw",
             "31 30 0:3 / /data/a\\040b rw - tmpfs tmpfs rw",
             "32 31 0:4 / /data/a\\040b/c rw - tmpfs tmpfs rw",
             "33 20 0:5 / /other rw - tmpfs tmpfs rw"]
    assert submounts_of(30, table) == ["/a b", "/a b/c"]
    assert submounts_of(20, table) == ["/data", "/other", "/data/a b", "/data/a b/c"]
    assert submounts_of(33, table) == []


def test_chroot_instead_of_pivot():
    sc = run_all(build_spec("mini", use_chroot=True))
    assert "pivot_root" not in sc.names() and ("chroot", ".") in sc.calls


def test_explain_is_called_before_each_step():
    seen = []
    sc = Recorder(fork_returns=0)
    steps, _ = child_steps(build_spec("mini"))

    def explain(i, step):
        seen.append((i, type(step).__name__, len(sc.calls)))

    child(sc, explain=explain).run(steps, start_index=3)
    assert seen[0][:2] == (3, "DieWithRuntime") and seen[0][2] == 0  # before its first call
    assert seen[1][1] == "Unshare"
    assert len(seen) == len(steps)


def test_an_injected_failure_stops_the_run_with_context():
    sc = Recorder(fail={"pivot_root": errno.EINVAL}, fork_returns=0)
    with pytest.raises(SyscallError) as exc:
        run_all(build_spec("mini"), sc=sc)
    assert exc.value.errno == errno.EINVAL
    assert "pivot_root" in str(exc.value)
    assert "umount2" not in sc.names()


@pytest.mark.parametrize("child_said", [None, "mounting overlay on /c/1/merged: Invalid argument"])
def test_a_runtime_step_that_fails_after_the_child_did_reports_the_childs_error(child_said):
    """The child makes its mounts while the runtime writes its cgroups: when the
    child fails there and exits, the runtime's release then fails (EPIPE), and
    the child's own error is the one reported; otherwise the runtime's."""
    from minicontainer.errors import MiniError

    plan = P.build_plan(build_spec("mini"), hostname="box", rootfs=ROOTFS)
    sc = Recorder(fork_returns=4242, fail={"write": errno.EPIPE})
    chan = FakeChannels(sc)
    chan.reported = MiniError(child_said) if child_said else None
    interp = Interpreter(sc, channels=chan)
    with pytest.raises(MiniError) as exc:
        interp.run(plan.steps)
    if child_said:
        assert str(exc.value).startswith(child_said)
    else:
        assert isinstance(exc.value, SyscallError) and exc.value.errno == errno.EPIPE


def test_workdir_signals_and_exec_search_path():
    sc = Recorder(fork_returns=0)
    plan = P.build_plan(build_spec("mini", ["ls", "-l"], workdir="/tmp"), hostname="box", rootfs=ROOTFS)
    inside = [s for s in plan.steps if s.phase == S.INSIDE]
    assert [type(s).__name__ for s in inside] == ["SetWorkdir", "ResetSignals", "Exec"]
    with pytest.raises(CommandError) as exc:
        child(sc).run(inside)
    assert exc.value.exit_code == 127 and "not found in $PATH" in exc.value.message
    assert sc.names()[:2] == ["chdir", "reset_signals"]
    tried = [c[1] for c in sc.calls if c[0] == "execve"]
    assert tried[0] == b"/usr/local/sbin/ls" and b"/bin/ls" in tried


def test_a_missing_workdir_is_created():
    sc = Recorder(fail={}, fork_returns=0)
    calls = []

    def chdir(path, _seen=[]):
        calls.append(path)
        if len(_seen) == 0:
            _seen.append(path)
            raise SyscallError("chdir", errno.ENOENT, path)

    sc.chdir = chdir
    child(sc).apply(S.SetWorkdir(workdir="/new/dir"))
    assert ("makedirs", "/new/dir") in sc.calls and calls == ["/new/dir", "/new/dir"]


# -- masked and read-only paths (security/paths.py decides, _mask does) ----------------


def _masks(config=None):
    return security_steps(config, last_cap=40, bounding=ALL_CAPS).masks


def _masked(steps, files=None, fail=None):
    sc = Recorder(fork_returns=0, files=files, fail=fail)
    interp = child(sc)
    interp.root_fd = 7
    interp.run(steps)
    return sc


def test_masks_mount_on_the_opened_paths():
    files = {"/proc/kcore": (0o100444, 0), "/proc/sysrq-trigger": (0o100200, 0),
             "/dev/null": (0o20666, os.makedev(1, 3))}
    sc = _masked(_masks(), files=files)
    calls = {c[2]: c for c in sc.calls if c[0] == "mount" and not c[4] & MS_REMOUNT}
    # mask_file: the host's /dev/null (the fd that was checked) bound over the file
    _, src, _, fstype, flags, _ = calls["/proc/kcore"]
    assert src == "/dev/null" and fstype is None and flags == MS_BIND
    # mask_dir: a read-only empty tmpfs, nosuid, nodev, noexec
    _, _, _, fstype, flags, data = calls["/proc/acpi"]
    assert fstype == "tmpfs" and flags & MS_RDONLY and data == "mode=0555"
    assert calls["/sys/firmware"][3] == "tmpfs"
    # readonly: bind onto itself, then remount read-only
    for path in ("/proc/sys", "/proc/sysrq-trigger"):
        seq = [c for c in sc.calls if c[0] == "mount" and c[2] == path]
        assert len(seq) == 2, seq
        assert seq[0][1] == path and seq[0][4] & MS_BIND
        assert seq[1][1] is None and seq[1][4] & (MS_BIND | MS_REMOUNT | MS_RDONLY) == MS_BIND | MS_REMOUNT | MS_RDONLY
        assert seq[1][4] & 0xE == 0xE  # nosuid, nodev, noexec


def test_what_the_kernel_lacks_is_skipped():
    sc = Recorder(fork_returns=0, fail={})
    real = sc.open_beneath

    def open_beneath(root_fd, path, **kw):
        if path == "/proc/timer_stats":
            sc.calls.append(("open_beneath", path, False, False))
            raise SyscallError("opening", errno.ENOENT, path)
        return real(root_fd, path, **kw)

    sc.open_beneath = open_beneath
    interp = child(sc)
    interp.root_fd = 7
    interp.run(_masks())
    assert not any(c[0] == "mount" and c[2] == "/proc/timer_stats" for c in sc.calls)


def test_real_type_wins_over_the_expected_kind():
    sc = _masked([S.MaskPath(path="/proc/kcore", kind="mask_file", reason="x")])  # a directory here
    assert [c[3] for c in sc.calls if c[0] == "mount"] == ["tmpfs"]


def test_a_fake_dev_null_is_refused():
    with pytest.raises(SyscallError, match="/dev/null"):
        _masked([S.MaskPath(path="/proc/kcore", kind="mask_file", reason="x")],
                files={"/proc/kcore": (0o100444, 0), "/dev/null": (0o100666, 0)})


def test_privileged_and_systempaths_unconfined_have_no_masks():
    assert _masks(parse_security(privileged=True)) == []
    assert _masks(parse_security(security_opt=["systempaths=unconfined"])) == []


# -- the whole plan against the recorder ---------------------------------------------------


def expected_calls(step, interp: Interpreter) -> list[str]:
    """The syscall-layer calls a step stands for, derived from its data: the
    interpreter's contract, written down a second time."""
    t = type(step).__name__
    if t == "UserNamespace":
        return ["pipe", "pipe", "fork", "unshare", "write", "read", "waitpid"]  # (close is not recorded)
    if t == "UnsharePid":
        return (["unshare"] if interp._in_userns else ["open_ns", "unshare"])
    if t == "Fork":  # the runtime goes back to its own PID namespace, if it made one and may
        return ["fork"] + (["close_inherited_fds"] if interp.in_child else ["setns"] if interp.restores_pidns else [])
    if t == "BecomeSubreaper":
        return ["set_child_subreaper"]
    if t == "WriteIdMaps":
        return ["read", "write_file", "write_file", "write"]  # "U" from the child, uid_map, gid_map, "M"
    if t == "AdoptInit":
        return ["read", "waitpid", "write"]  # PID 1's pid, the first child reaped, "A"
    if t == "UnshareUser":
        return ["unshare", "write", "read"]
    if t == "OpenHostPaths":
        return ["open_path"] * len(step.paths)
    if t == "BecomeRoot":
        return ["setgroups", "setresgid", "setresuid"]
    if t == "SendIdmappedLayers":
        return ["open_ns_path"] + ["open_tree", "mount_setattr"] * len(step.layers) + ["send_fds"]
    if t == "ReceiveIdmappedLayers":
        return ["recv_fds"]
    if t == "ForkInit":  # played as PID 1: the first child's side writes and exits
        return ["unshare", "fork", "read", "set_pdeathsig"]
    if t == "CgroupStep":
        return ["cgroup:" + step.write.action]
    if t == "ReleaseChild":
        return ["write"]
    if t == "AwaitExec":
        return ["read"]
    if t == "DieWithRuntime":
        return ["set_pdeathsig"]
    if t == "AwaitRelease":
        return ["read"]
    if t == "ReportMounted":
        return ["write"]
    if t == "AwaitMounted":
        return ["read"]
    if t == "ReadHostPid":
        return ["host_pid"]
    if t == "RunHooks":
        return ["run_hook"] * len(step.hooks)
    if t == "Unshare":
        return ["unshare"]
    if t == "LoopbackUp":
        return ["link_up"]
    if t == "LeaseAddress":
        return []  # files under the network store's lock (network/store.py), no system call of the setup
    if t == "EnsureVolume":
        return []  # files under the volume store's lock (volumes.py), no system call of the setup
    if t == "FillVolume":
        return ["fill_volume"]
    if t == "SetPropagation":
        return ["open_beneath", "mount"]
    if t == "EnsureBridge":
        return ["net_bridge"]
    if t == "CreateNetns":
        return ["new_netns"]
    if t == "AddVeth":
        return ["net_veth"]
    if t == "ConfigureEth":
        return ["net_configure"]
    if t == "BindPorts":
        return ["bind_port"] * len(step.ports)
    if t == "SetupNat":
        return ["nft"]
    if t == "EnableForwarding":
        return ["host_sysctl"]
    if t == "StartPortProxy":
        return ["spawn_proxy"]  # (closing the runtime's copies of the sockets is not recorded)
    if t == "JoinNamespace":
        if step.ns == "pid" and step.phase == S.BEFORE_FORK and not interp._in_userns:
            return ["open_ns", "setns"]  # our own PID namespace first, to come back to after the fork
        return ["setns"]
    if t == "OpenNamespaces":
        return ["open_namespaces"]
    if t == "WriteFile":
        return ["write_file"]
    if t == "ReleaseLease":
        return []  # files under the network store's lock
    if t == "DeleteLink":
        return ["net_delete_link"]
    if t == "MakeMountsPrivate":
        return ["mount"]
    if t == "MountRootfs":
        if step.idmapped:  # each layer attached where the overlay takes it
            return ["fchdir"] + ["move_mount"] * (1 + len(step.lower_stack)) + ["mount", "open_dir"]
        if step.opened:
            return ["fchdir", "mount", "open_dir"]
        return (["chdir", "mount"] if step.mode == "overlay" else ["mount"]) + ["open_dir"]
    if t == "Mount":
        opened = step.source in interp.host_fds  # by OpenHostPaths, before the user namespace
        return (["open_path"] if step.host_source and step.flags & MS_BIND and not opened else []) + \
            ["open_beneath", "mount"]
    if t == "RemountReadonly":
        return (["open_beneath"] if step.target else []) + ["mount"]
    if t == "ReadonlyRecursive":
        return (["open_beneath"] if step.target else []) + ["mount_setattr"]
    if t == "MakeDevice":
        return ["open_beneath", "mknod", "chmod"]
    if t == "Symlink":
        return ["open_beneath", "symlink"]
    if t == "MaskPath":
        if step.kind == "readonly":
            return ["open_beneath", "mount", "open_beneath", "mount"]
        return ["open_beneath", "mount"]  # every path is a directory in the fake
    if t == "SetHostname":
        return ["sethostname"]
    if t == "NewSession":
        return ["setsid", "attach_stdio"]
    if t == "ResolveUser":
        return []  # reads the image's files (users.py), no setup call
    if t == "MakeUndumpable":
        return ["set_dumpable"]
    if t == "PivotRoot":
        return ["fchdir", "pivot_root", "umount2", "chdir"]
    if t == "Chroot":
        return ["fchdir", "chroot", "chdir"]
    if t == "SetWorkdir":
        return ["chdir"]
    if t == "ResetSignals":
        return ["reset_signals"]
    if t == "SetRlimits":
        return ["setrlimit"] * len(step.limits)
    if t == "DropBoundingSet":
        return ["capbset_drop"] * sum(1 for c in range(step.last_cap + 1) if not step.keep >> c & 1) + ["clear_ambient"]
    if t == "SwitchUser":
        return ["setgroups", "setresgid", "setresuid"]
    if t == "SetCapabilities":
        return ["capset"]
    if t == "RearmParentDeath":
        return ["set_dumpable", "set_pdeathsig"]
    if t == "NoNewPrivs":
        return ["set_no_new_privs"]
    if t == "CloseOnExec":
        return ["cloexec_from"]
    if t == "InstallSeccomp":
        return ["install_seccomp"]
    if t == "Exec":
        return ["execve"]  # argv[0] has a slash: one try
    if t == "Note":
        return []
    raise AssertionError(f"no expectation for {t}")


class RecordingCgroup:
    """The real manager on a fake cgroupfs; each executed write is recorded in the syscall trace."""

    def __init__(self, manager, sc):
        self.manager, self.sc = manager, sc

    def execute(self, write, pid=None):
        self.sc.calls.append(("cgroup:" + write.action, write.file))
        self.manager.execute(write, pid=pid)


def _attachment(tmp_path, *, ports=(), nftables=False):
    from minicontainer.network.store import NetworkStore

    store = NetworkStore(tmp_path / "networks")
    net = store.define("app", subnet="10.89.0.0/24")
    return store, P.NetworkAttachment(network=net, container="c1", name="web", veth="vethc1", peer="mcpeerc1",
                                      hosts=str(tmp_path / "hosts"), ports=tuple(ports), nftables=nftables)


REMAP = userns.IdMapping(uid=0, gid=0, user="minicontainer", uids=(userns.IdRange(0, 300000, 65536),),
                         gids=(userns.IdRange(0, 300000, 65536),), writer="remap")


def _plan(tmp_path, spec, *, rootless=False, limits=None, v1=False, rootfs=ROOTFS, network=None, volume_root="",
          remap=None, **more):
    cgroup = None
    cgroup_steps = []
    if limits is not None:
        fake = FakeCgroupFs()
        if v1:
            mounts = {c: fake.add_v1(tmp_path / "cg" / c, (c,)) for c in ("freezer", "memory", "cpu", "pids", "devices")}
            host = HostCgroups(mode="v1", v1_mounts=mounts)
        else:
            mount = fake.add_v2(tmp_path / "cg", ("cpuset", "cpu", "io", "memory", "pids"))
            host = HostCgroups(mode="v2", v2_mount=mount,
                               v2_controllers=frozenset(("cpuset", "cpu", "io", "memory", "pids")))
        cgroup = manager_for("c1", parse_resources(**limits, cpus_available={0, 1}, mems_available={0}), host=host,
                             fs=fake)
        cgroup_steps = [S.CgroupStep(write=w) for w in cgroup.steps()]
    userns_steps = []
    if rootless:
        mapping = userns.IdMapping(uid=1000, gid=1000, user="u", uids=(userns.IdRange(0, 1000, 1),),
                                   gids=(userns.IdRange(0, 1000, 1),))
        userns_steps = [S.UserNamespace(mapping=mapping)]
    security = security_steps(spec.security, last_cap=40, bounding=ALL_CAPS)
    plan = P.build_plan(spec, hostname="box", rootfs=rootfs, cgroup_steps=cgroup_steps,
                        cgroup_view=cgroup.view() if cgroup is not None else None, security=security,
                        userns_steps=userns_steps, rootless=rootless or remap is not None, network=network,
                        volume_root=volume_root, container_id="c1", remap=remap, **more)
    return plan, cgroup


def _side(plan, cgroup, fork_returns, monkeypatch, networks=None):
    """Run the whole plan as one side of the fork; (explained steps, calls grouped by step)."""
    forks = [s for s in plan.steps if isinstance(s, (S.UserNamespace, S.Fork))]
    # The user namespace's map helper is a fork of its own: we stay the runtime there;
    # the child's fork of PID 1 (ForkInit): we go on as PID 1.
    inits = [0] * sum(isinstance(s, S.ForkInit) for s in plan.steps)
    sc = Recorder(fork_returns=[4243] * (len(forks) - 1) + [fork_returns] + inits)
    explained: list[tuple[int, object, int]] = []
    interp = Interpreter(sc, channels=FakeChannels(sc),
                         cgroup=RecordingCgroup(cgroup, sc) if cgroup is not None else None,
                         explain=lambda i, step: explained.append((i, step, len(sc.calls))), networks=networks)
    monkeypatch.setattr("minicontainer.container.interpreter.user_for_exec",
                        lambda root_fd, user, group_add: (ExecUser(0, 0, (), "/root"), True))
    try:
        interp.run(plan.steps)
    except CommandError:
        assert fork_returns == 0  # the fake execve fails: the child's run ends there
    bounds = [n for _, _, n in explained] + [len(sc.calls)]
    groups = [[c[0] for c in sc.calls[bounds[k]:bounds[k + 1]]] for k in range(len(explained))]
    return interp, explained, groups, sc.calls[:bounds[0]]


@pytest.mark.parametrize("case", ["default", "limits", "limits-v1", "rootless", "rootless-host-net", "privileged",
                                  "read-only", "bridge", "ports", "device", "volumes", "shared", "names",
                                  "add-host", "hooks", "remap", "remap-bind", "remap-idmap"])
def test_what_you_read_is_what_runs(tmp_path, monkeypatch, case):
    loop = Device(host="/dev/loop0", path="/dev/disk0", kind="b", major=7, minor=0, access="r")
    spec = {
        "default": build_spec("mini", ["/bin/true"]),
        "bridge": build_spec("mini", ["/bin/true"], network="app"),
        "ports": build_spec("mini", ["/bin/true"], network="app", publish=["127.0.0.1:18080:80", "53/udp"]),
        "shared": build_spec("mini", ["/bin/true"], network="container:db", pid="container:db", uts="container:db",
                             ipc="container:ipcbox"),
        "names": build_spec("mini", ["/bin/true"], network="app", ip="10.89.0.9", network_aliases=["www"],
                            add_hosts=["extra:10.1.1.1"], dns=["10.9.9.9"]),
        "add-host": build_spec("mini", ["/bin/true"], add_hosts=["extra:10.1.1.1"]),
        "limits": build_spec("mini", ["/bin/true"]),
        "limits-v1": build_spec("mini", ["/bin/true"]),
        "rootless": build_spec("mini", ["/bin/true"]),
        "rootless-host-net": build_spec("mini", ["/bin/true"], network="host"),
        "privileged": build_spec("mini", ["/bin/true"], security=parse_security(privileged=True)),
        "device": build_spec("mini", ["/bin/true"], devices=[loop]),
        "volumes": build_spec("mini", ["/bin/true"], volumes=["data:/data:ro", "/anon"],
                              mount=[f"type=bind,source={tmp_path},target=/src,bind-propagation=rslave",
                                     "type=tmpfs,target=/scratch,tmpfs-size=1m", "type=volume,src=data2,dst=/d2"]),
        "hooks": dataclasses.replace(build_spec("mini", ["/bin/true"]), hook_state='{"id": "c1"}', hooks=tuple(
            Hook(kind=k, path=f"/h/{k}", args=(k, "x"), env=("A=1",), timeout=5) for k in HOOK_KINDS) + (
            Hook(kind="createRuntime", path="/h/second"),)),
        "remap": build_spec("mini", ["/bin/true"], volumes=[f"{tmp_path}:/data"], devices=[loop]),
        "remap-bind": build_spec("mini", ["/bin/true"]),
        "remap-idmap": build_spec("mini", ["/bin/true"], volumes=[f"{tmp_path}:/data"]),
        "read-only": build_spec("mini", ["/bin/true"], read_only=True, volumes=[f"{tmp_path}:/data:ro"],
                                tmpfs=["/run:rw,noexec,nosuid,size=65536k"]),
    }[case]
    limits = {"memory": "32m", "pids_limit": 16} if case.startswith("limits") else \
        {"devices": [loop]} if case in ("device", "remap") else None
    rootfs = P.RootfsLayout(lower="/img", layer="/c/1", mode="bind", writable=False) if case == "read-only" else \
        P.RootfsLayout(lower="/c/1/copy", layer="/c/1", mode="bind") if case == "remap-bind" else \
        P.RootfsLayout(lower="/shifted/top", layer="/c/1", lower_stack=("/shifted/below",)) if case == "remap" else \
        P.RootfsLayout(lower="/img/top", layer="/c/1", lower_stack=("/img/below",), idmapped=True) \
        if case == "remap-idmap" else ROOTFS
    networks, network = (_attachment(tmp_path) if case in ("bridge", "names") else
                         _attachment(tmp_path, ports=spec.published_ports(), nftables=True) if case == "ports" else
                         (None, None))
    more = {}
    if case == "shared":
        more["shared"] = (P.SharedNamespaces(name="db", id="d" * 64, pid=777, pid_start=12, types=("pid", "net", "uts")),
                          P.SharedNamespaces(name="ipcbox", id="e" * 64, pid=888, pid_start=13, types=("ipc",)))
        more["etc"] = P.EtcFiles(hosts="/s/db/hosts", resolv="/s/db/resolv.conf", owner="db")
    if case == "names":
        more["etc"] = P.EtcFiles(hosts=network.hosts, resolv=str(tmp_path / "resolv.conf"),
                                 resolv_content="nameserver 10.9.9.9\n")
    if case == "add-host":
        more["etc"] = P.EtcFiles(hosts=str(tmp_path / "own-hosts"), hosts_content="127.0.0.1\tlocalhost\n10.1.1.1\textra\n")
    plan, cgroup = _plan(tmp_path, spec, rootless=case.startswith("rootless"), limits=limits, v1=case == "limits-v1",
                         rootfs=rootfs, network=network,
                         volume_root=str(tmp_path / "volumes") if case == "volumes" else "",
                         remap=REMAP if case.startswith("remap") else None, **more)
    printed = plan.render()
    for fork_returns, phases in ((4242, (S.BEFORE_FORK, S.PARENT)), (0, (S.BEFORE_FORK, S.CHILD, S.INSIDE))):
        if case == "names" and fork_returns == 0:
            networks.release("c1")  # --ip: the second side leases the same fixed address again
        interp, explained, groups, before_any = _side(plan, cgroup, fork_returns, monkeypatch, networks)
        assert before_any == []  # nothing happens before the first explained step
        mine = [(i, s) for i, s in enumerate(plan.steps, 1) if s.phase in phases]
        assert [(i, s) for i, s, _ in explained] == mine  # each of this side's steps, once, in order
        replay = Interpreter(Recorder(fork_returns=fork_returns), channels=None)
        replay._in_userns = case.startswith("rootless")
        replay.restores_pidns = not case.startswith(("rootless", "remap"))
        opened = [s for s in plan.steps if isinstance(s, S.OpenHostPaths)]
        replay.host_fds = dict.fromkeys(opened[0].paths if opened and fork_returns == 0 else ())
        for (i, step, _), got in zip(explained, groups):
            replay.in_child = fork_returns == 0 and step.phase != S.BEFORE_FORK or (
                fork_returns == 0 and isinstance(step, S.Fork))
            assert got == expected_calls(step, replay), f"step {i} ({type(step).__name__}) made {got}"
            assert f"{i:2}. [" in printed
    if case == "limits":
        files = {w.file.rsplit("/", 1)[-1]: w for w in cgroup.steps() if w.action == "write"}
        assert "memory.max" in files and "pids.max" in files
        assert cgroup.fs.read(files["pids.max"].file).strip() == "16"
        assert "mount -t cgroup2 cgroup2 $ROOTFS/sys/fs/cgroup -o ro,nosuid,nodev,noexec" in printed
    if case == "limits-v1":
        assert f"mount --bind {tmp_path}/cg/memory/minicontainer/c1 $ROOTFS/sys/fs/cgroup/memory" in printed
    if case in ("read-only", "rootless-host-net"):
        assert "and every mount below it read-only" in printed
    if case in ("limits", "device"):
        attach = [w for w in cgroup.steps() if w.action == "attach-device-filter"]
        assert len(attach) == 1 and attach[0].describe() in printed
        assert cgroup.fs.device_filters == {cgroup.path: [attach[0].program]}  # attached, on the fake
    if case == "limits-v1":
        assert "devices.deny" in printed and "echo 'c 1:3 rwm' > " in printed
    if case == "device":
        assert "create the block device /dev/disk0 (7:0)" in printed and attach[0].value.endswith("b 7:0 r")
    if case == "hooks":
        kinds = [(type(s).__name__, s.phase, getattr(s, "kind", "")) for s in plan.steps]
        at = kinds.index(("RunHooks", S.PARENT, "prestart"))
        assert kinds[at - 2:at + 6] == [
            ("ReportMounted", S.CHILD, ""), ("AwaitMounted", S.PARENT, ""), ("RunHooks", S.PARENT, "prestart"),
            ("RunHooks", S.PARENT, "createRuntime"), ("ReleaseChild", S.PARENT, ""), ("AwaitExec", S.PARENT, ""),
            ("AwaitRelease", S.CHILD, ""), ("RunHooks", S.CHILD, "createContainer")]
        assert kinds.index(("RunHooks", S.CHILD, "createContainer")) < kinds.index(("PivotRoot", S.CHILD, ""))
        assert kinds[-3:] == [("RunHooks", S.INSIDE, "startContainer"), ("Exec", S.INSIDE, ""),
                              ("RunHooks", S.PARENT, "poststart")]
        assert "poststop" not in printed  # `delete` runs those
        assert "run the createRuntime hooks in the runtime's namespaces: /h/createRuntime, /h/second" in printed
        assert "echo \"$STATE\" | env -i A=1 /h/prestart x" in printed
    if case == "privileged":
        assert "no seccomp filter (--privileged)" in printed and "mask " not in printed
    if case == "rootless":
        assert plan.steps[0].__class__ is S.UserNamespace
    if case == "volumes":
        kinds = [type(s).__name__ for s in plan.steps]
        assert kinds[:3] == ["EnsureVolume"] * 3  # before anything else, in the runtime
        assert "make every mount a slave of the host's (recursively)" in printed  # for the rslave bind
        assert f"bind-mount {tmp_path}/volumes/data/_data on /data" in printed
        assert "mount --make-rslave $ROOTFS/src" in printed
        assert sorted(os.listdir(tmp_path / "volumes")) == sorted([".lock", "data", "data2", spec.named_volumes[1].name])
    if case == "remap":
        # the child opens every host path its mounts come from, in its mount namespace, before it is the
        # range's root; the runtime writes the maps and keeps the device allow-list
        paths = next(s for s in plan.steps if isinstance(s, S.OpenHostPaths)).paths
        assert paths[:3] == ("/c/1", "/c/1/lower", "/c/1/lower-1") and str(tmp_path) in paths and "/dev/null" in paths
        assert "echo '0 300000 65536' > /proc/$CHILD/uid_map" in printed
        assert any(w.action == "attach-device-filter" for w in cgroup.steps())
    if case == "remap-idmap":
        # no copy: the runtime idmaps the image's own layers and the child attaches them on lower, lower-1
        send = next(s for s in plan.steps if isinstance(s, S.SendIdmappedLayers))
        assert send.layers == ("/img/top", "/img/below")
        assert next(s for s in plan.steps if isinstance(s, S.OpenHostPaths)).paths[0] == "/c/1"
        assert "/c/1/lower" not in next(s for s in plan.steps if isinstance(s, S.OpenHostPaths)).paths
        assert "lowerdir=idmapped/0:idmapped/1,upperdir=upper,workdir=work merged   # after move_mount" in printed
    if case == "remap-bind":
        assert next(s for s in plan.steps if isinstance(s, S.OpenHostPaths)).paths[:2] == ("/c/1", "/c/1/copy")
    if case == "bridge":
        # the namespace is made and configured before the PID namespace (no thread can start after it)
        kinds = [type(s).__name__ for s in plan.steps]
        assert kinds[:7] == ["LeaseAddress", "EnsureBridge", "Note", "CreateNetns", "AddVeth", "ConfigureEth",
                             "UnsharePid"]
        assert "no nftables on this host: network app gets no outbound NAT" in printed
        assert kinds.index("JoinNamespace") < kinds.index("Unshare")
        assert "net" not in next(s for s in plan.steps if isinstance(s, S.Unshare)).namespaces
        assert "ip link add vethc1 type veth peer name mcpeerc1" in printed
        assert "10.89.0.3\tweb" in (tmp_path / "hosts").read_text()  # the second side's lease, in its own hosts
    if case == "ports":
        # the ports are bound before anything else exists; NAT once the bridge is there; the proxy after the fork
        kinds = [type(s).__name__ for s in plan.steps]
        assert kinds[:5] == ["BindPorts", "LeaseAddress", "EnsureBridge", "SetupNat", "EnableForwarding"]
        assert kinds.index("Fork") < kinds.index("StartPortProxy") < kinds.index("ReleaseChild")
        assert "127.0.0.1:18080 -> 80/tcp, 0.0.0.0:(a free port) -> 53/udp" in printed
        assert 'ip saddr 10.89.0.0/24 oifname != "mcbr-' in printed and "sysctl -w net.ipv4.ip_forward=1" in printed
    if case == "shared":
        kinds = [(type(s).__name__, getattr(s, "ns", ""), s.phase) for s in plan.steps]
        # both containers' namespaces opened (pinned PID 1s) before anything else; the PID namespace joined
        # by the runtime (its next child is born there) instead of a new one
        assert kinds[:3] == [("OpenNamespaces", "", S.BEFORE_FORK), ("OpenNamespaces", "", S.BEFORE_FORK),
                             ("JoinNamespace", "pid", S.BEFORE_FORK)]
        assert not any(isinstance(s, (S.UnsharePid, S.LoopbackUp, S.SetHostname)) for s in plan.steps)
        joins = [(s.ns, s.container) for s in plan.steps if isinstance(s, S.JoinNamespace) and s.phase == S.CHILD]
        assert joins == [("ipc", "ipcbox"), ("uts", "db"), ("net", "db")]
        assert [s.namespaces for s in plan.steps if isinstance(s, S.Unshare)] == [("mnt",), ("cgroup",)]
        assert "open the namespaces of container db's PID 1 (777): pid, net, uts" in printed
        assert "join container db's net namespace" in printed and "--network container:db" in printed
        bound = {s.target: s.source for s in plan.steps if isinstance(s, S.Mount) and s.target.startswith("/etc/")}
        assert bound == {"/etc/hosts": "/s/db/hosts", "/etc/resolv.conf": "/s/db/resolv.conf"}
    if case == "names":
        hosts = (tmp_path / "hosts").read_text()
        assert "10.1.1.1\textra" in hosts and "10.89.0.9\tweb box www" in hosts
        assert "lease the address 10.89.0.9 of network app (10.89.0.0/24) (also known as www)" in printed
        assert [s.target for s in plan.steps if isinstance(s, S.WriteFile)] == ["/etc/resolv.conf"]
    if case == "add-host":
        assert [s.target for s in plan.steps if isinstance(s, S.WriteFile)] == ["/etc/hosts"]
        assert any(isinstance(s, S.Mount) and s.target == "/etc/hosts" and s.source == str(tmp_path / "own-hosts")
                   for s in plan.steps)


def test_remap_mounts_from_the_fds_opened_before_the_user_namespace(tmp_path, monkeypatch):
    from minicontainer.syscalls.flags import CLONE_NEWPID, CLONE_NEWUSER

    rootfs = P.RootfsLayout(lower="/shifted/top", layer="/c/1", lower_stack=("/shifted/below",))
    plan, _ = _plan(tmp_path, build_spec("mini", ["/bin/true"], volumes=[f"{tmp_path}:/data"]), rootfs=rootfs,
                    remap=REMAP)
    sc = Recorder(fork_returns=[0, 0])
    sc.close = lambda fd: None  # keep the fds' names for the checks below
    interp = Interpreter(sc, channels=FakeChannels(sc))
    monkeypatch.setattr("minicontainer.container.interpreter.user_for_exec",
                        lambda root_fd, user, group_add: (ExecUser(0, 0, (), "/root"), True))
    with pytest.raises(CommandError):
        interp.run(plan.steps)  # the fake execve fails
    calls = sc.calls
    at = {name: i for i, name in reversed(list(enumerate(c[0] for c in calls)))}  # first index of each call
    unshares = [c[1] for c in calls if c[0] == "unshare"]
    # the user namespace first, then the mount namespace the paths are opened in, then root of the range
    assert unshares[:3] == [CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID]
    assert not any(f & CLONE_NEWNS for f in unshares[3:])  # not a second time: the fds are of this one
    forks = [i for i, c in enumerate(calls) if c[0] == "fork"]  # the runtime's, then PID 1's
    assert at["open_path"] < at["setresuid"] < forks[1]
    overlay = next(c for c in calls if c[0] == "mount" and c[3] == "overlay")
    lowers = overlay[5].split(",")[0].removeprefix("lowerdir=").split(":")
    assert [sc._show(p) for p in lowers] == ["/c/1/lower", "/c/1/lower-1"]  # the fds, named by their paths
    assert overlay[5].endswith(",upperdir=upper,workdir=work") and overlay[2] == "/c/1/merged"
    assert ("fchdir", "/c/1") in calls
    bind = next(c for c in calls if c[0] == "mount" and c[2] == "/data")
    assert bind[1] == str(tmp_path)  # from its fd opened before: no open_path of it afterwards
    assert [c for c in calls if c[0] == "open_path" and c[1] == str(tmp_path)] == [("open_path", str(tmp_path))]


def test_bridge_steps_use_the_leased_address_and_close_the_namespace_in_the_runtime(tmp_path):
    networks, network = _attachment(tmp_path)
    plan, _ = _plan(tmp_path, build_spec("mini", ["/bin/true"], network="app"), network=network)
    sc = Recorder(fork_returns=4242)
    interp = Interpreter(sc, channels=FakeChannels(sc), networks=networks)
    interp.run(plan.phase(S.BEFORE_FORK))
    veth = next(c for c in sc.calls if c[0] == "net_veth")
    assert veth[1:4] == ("vethc1", "mcpeerc1", network.network.bridge)
    assert next(c for c in sc.calls if c[0] == "net_configure")[1:] == (veth[4], "mcpeerc1", "eth0", "10.89.0.2", 24,
                                                                         "10.89.0.1")
    assert "net" not in interp.ns_fds  # the runtime's fd is closed once the child has its own
    assert [lease.ip for lease in networks.leases("app")] == ["10.89.0.2"]


# -- exec ------------------------------------------------------------------------------


class _Exec:
    def __init__(self, errnos):
        self.errnos = errnos
        self.tried = []

    def execve(self, path, argv, env):
        self.tried.append(path)
        raise OSError(self.errnos.get(path, errno.ENOENT), "x")


def test_execvpe_permission_denied_is_126():
    sc = _Exec({b"/bin/tool": errno.EACCES})
    with pytest.raises(CommandError) as exc:
        execvpe(sc, [b"tool"], {}, b"/usr/bin:/bin")
    assert exc.value.exit_code == 126
    assert sc.tried == [b"/usr/bin/tool", b"/bin/tool"]


def test_execvpe_with_a_slash_does_not_search():
    sc = _Exec({})
    with pytest.raises(CommandError) as exc:
        execvpe(sc, [b"./x"], {}, b"/bin")
    assert exc.value.exit_code == 127 and sc.tried == [b"./x"]


def test_a_failing_hook_fails_its_step_or_warns():
    """The first hook that fails stops the rest; createRuntime's failure is an
    error naming the hook and its last line of output, poststart's a warning."""
    from minicontainer.errors import ContainerError

    hooks = (Hook(kind="createRuntime", path="/h/a"), Hook(kind="createRuntime", path="/h/b"))
    sc = Recorder()
    sc.hook_results = {"/h/a": (3, b"first\nlast words\n")}
    interp = Interpreter(sc, pid=77)
    step = S.RunHooks(kind="createRuntime", hooks=hooks, state='{"id": "c1"}', status="creating")
    with pytest.raises(ContainerError) as e:
        interp.apply(step)
    assert e.value.message == "createRuntime hook /h/a failed with exit code 3: last words"
    assert [c[1] for c in sc.calls] == ["/h/a"]
    assert sc.calls[0][4] == b'{"id": "c1", "status": "creating", "pid": 77}'
    warned = []
    sc.hook_results = {"/h/a": (None, b"")}
    Interpreter(sc, warn=warned.append).apply(S.RunHooks(kind="poststart", hooks=(Hook("poststart", "/h/a", timeout=2),),
                                                        fatal=False))
    assert warned == ["poststart hook /h/a ran past its timeout of 2s"]
