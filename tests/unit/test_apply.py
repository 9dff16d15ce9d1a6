"""apply.py: the interpreter, against a recording syscall layer (no root)."""

from __future__ import annotations

import errno

import pytest

from minicontainer import plan as P
from minicontainer.apply import Applier, execvpe
from minicontainer.errors import CommandError, SyscallError
from minicontainer.spec import build_spec
from minicontainer.syscalls.fake import Recorder
from minicontainer.syscalls.flags import CLONE_NEWNS, CLONE_NEWNET, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT

pytestmark = pytest.mark.unit


def child_steps(spec):
    plan = P.build_plan(spec, hostname="box", rootfs=P.RootfsLayout(lower="/img", layer="/c/1"))
    steps = [s for s in plan.steps if s.phase == "child"]
    return steps[:-1], steps[-1]  # all but Exec, and Exec


def run_all(spec, sc=None, **kw):
    sc = sc or Recorder()
    steps, _ = child_steps(spec)
    Applier(sc, **kw).run(steps)
    return sc


def test_calls_in_order():
    sc = run_all(build_spec("mini"))
    names = sc.names()
    assert names[0] == "unshare" and sc.calls[0][1] & CLONE_NEWNS and sc.calls[0][1] & CLONE_NEWNET
    assert sc.calls[1] == ("mount", None, "/", None, MS_REC | MS_PRIVATE, None)
    assert ("chdir", "/c/1") in sc.calls
    assert ("mount", "overlay", "/c/1/merged", "overlay", 0, "lowerdir=lower,upperdir=upper,workdir=work") in sc.calls
    assert names.index("pivot_root") > names.index("sethostname")
    assert sc.calls[-4:] == [("fchdir", "/c/1/merged"), ("pivot_root", ".", "."), ("umount2", ".", 2), ("chdir", "/")]


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


def test_read_only_remounts_keep_flags():
    sc = run_all(build_spec("mini", read_only=True))
    remounts = [c for c in sc.calls if c[0] == "mount" and c[4] & MS_REMOUNT]
    assert remounts and all(c[4] & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY for c in remounts)


def test_chroot_instead_of_pivot():
    sc = run_all(build_spec("mini", use_chroot=True))
    assert "pivot_root" not in sc.names() and ("chroot", ".") in sc.calls


def test_explain_is_called_before_each_step():
    seen = []
    sc = Recorder()
    steps, _ = child_steps(build_spec("mini"))

    def explain(i, step):
        seen.append((i, type(step).__name__, len(sc.calls)))

    Applier(sc, explain=explain).run(steps, start_index=3)
    assert seen[0][:2] == (3, "Unshare") and seen[0][2] == 0  # before the unshare call
    assert len(seen) == len(steps)


def test_an_injected_failure_stops_the_run_with_context():
    sc = Recorder(fail={"pivot_root": errno.EINVAL})
    with pytest.raises(SyscallError) as exc:
        run_all(build_spec("mini"), sc=sc)
    assert exc.value.errno == errno.EINVAL
    assert "pivot_root" in str(exc.value)
    assert "umount2" not in sc.names()


def test_exec_resets_closes_and_searches_path(monkeypatch):
    sc = Recorder()
    _, exec_step = child_steps(build_spec("mini", ["ls", "-l"], workdir="/tmp"))
    app = Applier(sc)
    monkeypatch.setattr("minicontainer.apply.reset_signals", lambda: sc.calls.append(("reset_signals",)))
    with pytest.raises(CommandError) as exc:
        app.apply(exec_step)
    assert exc.value.exit_code == 127 and "not found in $PATH" in exc.value.message
    names = sc.names()
    assert names[:3] == ["chdir", "reset_signals", "cloexec_from"]
    tried = [c[1] for c in sc.calls if c[0] == "execve"]
    assert tried[0] == b"/usr/local/sbin/ls" and b"/bin/ls" in tried


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
