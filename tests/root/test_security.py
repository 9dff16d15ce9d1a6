"""The security steps for real, run by the interpreter in a forked child, then exec or probe.

Each test forks; the child sets up like the runtime does (before pivot_root),
runs the security layer's steps through the interpreter (``prepare``: the
steps before pivot_root; ``enter``: the privilege drop), and then either execs a host program whose output we
read, or makes raw system calls and reports their errno as JSON. The child
always ends with os._exit; mounts it makes live in its own mount namespace
and vanish with it (the root conftest checks the host's mount table).

Cases: D25 (capability sets), D26 (mount, unshare -U, keyctl, reboot,
mknod, open_by_handle_at), D27 (setuid binary under no_new_privs), D28
(TIOCSTI), D25 file capabilities, B18 (masked and read-only /proc, /sys), C20 (leaked fds),
C21 (non-dumpable), C22 (nothing imported or opened in enter), F37
(parent-death signal after the uid change), F39 (signal state).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import shutil
import signal
import stat
import struct
import sys
import tempfile
import termios
import time

import pytest

import prctl

from minicontainer.container import steps as S
from minicontainer.errors import SecurityError, SyscallError
from minicontainer.container.interpreter import Interpreter
from minicontainer.container.process import RuntimeProbe
from minicontainer.security import caps, masked_path_ops, parse_security, security_steps
from minicontainer.syscalls import linux

from helpers import apply_masks
from minicontainer.security.seccomp import native_arch
from minicontainer.security.syscall_tables import TABLES

pytestmark = pytest.mark.root

NR = TABLES.get(native_arch(), {})
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

if not NR:
    pytest.skip(f"no syscall table for {native_arch()}", allow_module_level=True)


class _Alone:
    """The channels of a child whose runtime is this test: only the probe is used."""

    def __init__(self, parent_fd=None):
        self._probe = RuntimeProbe(parent_fd) if parent_fd is not None else None

    def runtime_alive(self) -> bool:
        return self._probe is None or self._probe.alive()


def prepare(cfg, rootfs_fd: int, *, parent_fd=None):
    """The security steps before pivot_root, through the interpreter (as a run does)."""
    plan = security_steps(cfg)
    interp = Interpreter(linux.Linux(), channels=_Alone(parent_fd))
    interp.phases = (S.CHILD, S.INSIDE)
    interp.root_fd = rootfs_fd
    interp.parent_pid = os.getppid()
    interp.run(plan.before_pivot)
    return interp, plan.inside


def enter(prepared) -> None:
    """The privilege drop: what a run does after pivot_root, up to exec."""
    interp, inside = prepared
    interp.run([S.ResetSignals()] + inside)


def _oserror(fn, *args):
    try:
        return fn(*args)
    except SyscallError as e:
        raise OSError(e.errno, e.message) from None


class _sys:
    """The raw calls the probes make, through the project's syscall layer, failing with OSError."""

    unshare = staticmethod(lambda flags: _oserror(linux.Linux().unshare, flags))
    mount = staticmethod(lambda *a: _oserror(linux.Linux().mount, *a))
    umount2 = staticmethod(lambda target, flags: _oserror(linux.Linux().umount2, target, flags))
    raw_syscall = staticmethod(linux.raw_syscall)


def _status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _host_bounding() -> int:
    return int(_status_fields(open("/proc/self/status").read())["CapBnd"], 16)


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ntester:x:1000:\nusers:x:100:tester\n")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _collect(pid: int, r: int, timeout: float) -> tuple[int, bytes]:
    """Read the child's pipe to EOF and reap it; SIGKILL it if it takes too long."""
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child did not finish in time")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                data = os.read(r, 65536)
                if not data:
                    break
                chunks.append(data)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)


def run_exec(rootfs_fd: int, argv: list[str], setup=None, timeout: float = 20, **flags) -> tuple[int, str]:
    """Fork; in the child: setup(), prepare(parse_security(**flags)), enter(), execv(argv).

    Returns (exit status, stdout+stderr). Exit 99 means the child failed
    before exec; the traceback is in the output.
    """
    cfg = parse_security(**flags)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            if setup:
                setup()
            p = prepare(cfg, rootfs_fd)
            enter(p)
            os.execv(argv[0], argv)
        except BaseException as e:  # noqa: BLE001 - report anything, never return into pytest
            os.write(2, f"child failed: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(99)
    os.close(w)
    status, out = _collect(pid, r, timeout)
    return status, out.decode(errors="replace")


def run_probe(fn, timeout: float = 20):
    """Fork; the child runs fn() and sends back its JSON-able result (or the error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                msg = {"ok": fn()}
            except BaseException as e:  # noqa: BLE001
                msg = {"error": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(msg).encode())
        finally:
            os._exit(0)
    os.close(w)
    status, out = _collect(pid, r, timeout)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
    msg = json.loads(out)
    assert "error" not in msg, msg["error"]
    return msg["ok"]


def _private_mount_ns() -> None:
    _sys.unshare(CLONE_NEWNS)
    _sys.mount(None, "/", None, MS_REC | MS_PRIVATE)


# -- D25: capability sets ------------------------------------------------------------


def test_default_capabilities_no_new_privs_and_seccomp(rootfs):
    status, out = run_exec(rootfs, ["/bin/sh", "-c", 'grep -E "Cap|NoNewPrivs|Seccomp" /proc/self/status'])
    assert status == 0, out
    f = _status_fields(out)
    want = caps.caps_to_mask(caps.DEFAULT_CAPS) & _host_bounding()
    assert int(f["CapBnd"], 16) == want
    assert int(f["CapEff"], 16) == want
    assert int(f["CapPrm"], 16) == want
    assert int(f["CapInh"], 16) == 0
    assert int(f["CapAmb"], 16) == 0
    assert f["NoNewPrivs"] == "1"
    assert f["Seccomp"] == "2"
    # None of the capabilities that make escapes easy.
    for bad in ("CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH"):
        assert not int(f["CapBnd"], 16) >> caps.CAP_NUMBERS[bad] & 1, bad


def test_cap_drop_all_leaves_nothing(rootfs):
    status, out = run_exec(rootfs, ["/bin/grep", "^Cap", "/proc/self/status"], cap_drop=["ALL"])
    assert status == 0, out
    f = _status_fields(out)
    assert {f[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}


def test_cap_add_shows_up(rootfs):
    status, out = run_exec(rootfs, ["/bin/grep", "^CapEff", "/proc/self/status"], cap_add=["NET_ADMIN"])
    assert status == 0, out
    assert int(_status_fields(out)["CapEff"], 16) >> caps.CAP_NUMBERS["CAP_NET_ADMIN"] & 1


def test_non_root_user_has_only_a_bounding_set(rootfs):
    status, out = run_exec(rootfs, ["/bin/grep", "-E", "^(Cap|Uid|Gid|Groups)", "/proc/self/status"], user="tester")
    assert status == 0, out
    f = _status_fields(out)
    assert f["Uid"].split() == ["1000"] * 4
    assert f["Gid"].split() == ["1000"] * 4
    assert f["Groups"].split() == ["100"]
    assert int(f["CapEff"], 16) == int(f["CapPrm"], 16) == int(f["CapInh"], 16) == int(f["CapAmb"], 16) == 0
    assert int(f["CapBnd"], 16) == caps.caps_to_mask(caps.DEFAULT_CAPS) & _host_bounding()


def test_cap_add_of_a_capability_the_host_lacks_is_refused(rootfs):
    missing = [c for c in caps.CAP_NAMES if not _host_bounding() >> caps.CAP_NUMBERS[c] & 1]
    if not missing:
        pytest.skip("this host's bounding set has every capability")
    status, out = run_exec(rootfs, ["/bin/true"], cap_add=[missing[0]])
    assert status >> 8 == 99
    assert "the runtime itself does not have it" in out


# -- D26: dangerous calls ----------------------------------------------------------------


def _probe_calls(mnt: str, devdir: str) -> dict[str, int]:
    """errno of each dangerous call (0 = it worked)."""

    def err(fn):
        try:
            fn()
            return 0
        except OSError as e:
            return e.errno

    def raw(name, *args):
        ret = _sys.raw_syscall(NR[name], *args)
        return -ret if ret < 0 else 0

    return {
        "mount": err(lambda: _sys.mount("tmpfs", mnt, "tmpfs", 0)),
        "keyctl": raw("keyctl", 0, 2**64 - 3, 0),  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
        "add_key": raw("add_key", 0, 0, 0, 0, 0),
        # Bad magic numbers: EINVAL once past the permission checks, so the host never reboots.
        "reboot": raw("reboot", 0, 0, 0, 0),
        "finit_module": raw("finit_module", 2**64 - 1, 0, 0),
        "open_by_handle_at": raw("open_by_handle_at", 2**64 - 1, 0, 0),
        "setns": raw("setns", 2**64 - 1, 0),
        "mknod_block": err(lambda: os.mknod(os.path.join(devdir, "sda"), stat.S_IFBLK | 0o600, os.makedev(8, 0))),
        "mkfifo": err(lambda: os.mkfifo(os.path.join(devdir, "fifo"))),
        # Last: on success the child is in a new user namespace.
        "unshare_user": raw("unshare", CLONE_NEWUSER),
    }


def _probe_after_enter(rootfs_fd: int, mnt: str, devdir: str, **flags) -> dict[str, int]:
    cfg = parse_security(**flags)

    def fn():
        _private_mount_ns()
        enter(prepare(cfg, rootfs_fd))
        return _probe_calls(mnt, devdir)

    return run_probe(fn)


def test_dangerous_calls_fail_with_eperm(rootfs, tmp_path):
    (tmp_path / "mnt").mkdir()
    got = _probe_after_enter(rootfs, str(tmp_path / "mnt"), str(tmp_path))
    eperm = {k: v for k, v in got.items() if k != "mkfifo"}
    assert eperm == {k: errno.EPERM for k in eperm}, got
    assert got["mkfifo"] == 0  # not every mknod is refused
    assert not (tmp_path / "sda").exists()


def test_privileged_turns_them_back_on(rootfs, tmp_path):
    (tmp_path / "mnt").mkdir()
    got = _probe_after_enter(rootfs, str(tmp_path / "mnt"), str(tmp_path), privileged=True)
    assert got["mount"] == 0  # in the child's private mount namespace
    assert got["keyctl"] == 0
    assert got["reboot"] == errno.EINVAL  # past the permission check, stopped by the bad magic
    # Past the filter and the capability checks; which argument the kernel
    # rejects first varies (ENOSYS for finit_module: a kernel without modules).
    for name in ("finit_module", "open_by_handle_at", "setns"):
        assert got[name] not in (0, errno.EPERM), (name, got[name])
    assert got["unshare_user"] == 0
    assert got["mknod_block"] == 0
    os.unlink(tmp_path / "sda")


def test_cap_add_sys_admin_reenables_mount_only(rootfs, tmp_path):
    (tmp_path / "mnt").mkdir()
    got = _probe_after_enter(rootfs, str(tmp_path / "mnt"), str(tmp_path), cap_add=["SYS_ADMIN"])
    assert got["mount"] == 0
    assert got["keyctl"] == errno.EPERM  # the keyring stays closed, as in Docker
    assert got["reboot"] == errno.EPERM


def test_docker_format_allow_list_profile_is_enforced(rootfs, tmp_path):
    allowed = sorted(set(NR) - {"uname"})
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    status, out = run_exec(rootfs, ["/bin/uname", "-s"], security_opt=[f"seccomp={path}"])
    assert os.WEXITSTATUS(status) == 1, out
    assert "Operation not permitted" in out
    status, out = run_exec(rootfs, ["/bin/sh", "-c", "echo ok"], security_opt=[f"seccomp={path}"])
    assert (status, out.strip()) == (0, "ok")


def test_seccomp_unconfined_and_no_new_privs_off(rootfs):
    status, out = run_exec(rootfs, ["/bin/grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"],
                           security_opt=["seccomp=unconfined", "no-new-privileges=false"])
    assert status == 0, out
    assert _status_fields(out) == {"NoNewPrivs": "0", "Seccomp": "0"}
    # Without no_new_privs the filter is installed before privileges are dropped.
    status, out = run_exec(rootfs, ["/bin/grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"],
                           user="1000", security_opt=["no-new-privileges=false"])
    assert status == 0, out
    assert _status_fields(out) == {"NoNewPrivs": "0", "Seccomp": "2"}


# -- D27: setuid binaries under no_new_privs ------------------------------------------------


@pytest.fixture
def setuid_id():
    """A setuid-root copy of id(1) in a directory uid 1000 can reach."""
    d = tempfile.mkdtemp(prefix="mc-suid-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, "id")
        shutil.copy("/usr/bin/id", path)
        os.chown(path, 0, 0)
        os.chmod(path, 0o4755)
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_setuid_root_binary_gains_nothing(rootfs, setuid_id):
    status, out = run_exec(rootfs, [setuid_id], user="1000")
    assert status == 0, out
    # (no name in parentheses when the image has no passwd entry for 1000)
    assert out.startswith(("uid=1000(", "uid=1000 ")) and "euid=" not in out, out
    # Control: without no_new_privs the very same binary does become root,
    # so the line above really tested no_new_privs.
    status, out = run_exec(rootfs, [setuid_id], user="1000", security_opt=["no-new-privileges=false"])
    assert status == 0, out
    assert "euid=0(" in out, out


@pytest.fixture
def filecap_cat():
    """A copy of cat(1) with CAP_DAC_OVERRIDE as a file capability, and a root-only secret."""
    d = tempfile.mkdtemp(prefix="mc-fcap-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        cat = os.path.join(d, "cat")
        shutil.copy("/bin/cat", cat)
        # security.capability, VFS_CAP_REVISION_2 with the effective bit: what
        # `setcap cap_dac_override+ep` writes (capabilities(7), "File capabilities").
        value = struct.pack("<IIIII", 0x02000000 | 0x1, 1 << caps.CAP_NUMBERS["CAP_DAC_OVERRIDE"], 0, 0, 0)
        os.setxattr(cat, "security.capability", value)
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write("TOP-SECRET\n")
        os.chmod(secret, 0o600)
        yield cat, secret
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_file_capabilities_gain_nothing(rootfs, filecap_cat):
    cat, secret = filecap_cat
    status, out = run_exec(rootfs, [cat, secret], user="1000")
    assert os.WEXITSTATUS(status) == 1 and "Permission denied" in out, out
    # Control: without no_new_privs the file capability works (it is in the bounding set).
    status, out = run_exec(rootfs, [cat, secret], user="1000", security_opt=["no-new-privileges=false"])
    assert (status, out) == (0, "TOP-SECRET\n")


# -- D28: TIOCSTI ------------------------------------------------------------------------------


def _tiocsti_errno(rootfs_fd: int, **flags) -> int:
    cfg = parse_security(**flags)

    def fn():
        master, slave = os.openpty()
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.dup2(slave, 0)
        enter(prepare(cfg, rootfs_fd))
        try:
            fcntl.ioctl(0, termios.TIOCSTI, b"x")
            return 0
        except OSError as e:
            return e.errno

    return run_probe(fn)


def test_tiocsti_is_refused(rootfs):
    assert _tiocsti_errno(rootfs) == errno.EPERM
    assert _tiocsti_errno(rootfs, privileged=True) != errno.EPERM


# -- ulimits -------------------------------------------------------------------------------------


def test_ulimits_visible_in_proc_limits(rootfs):
    status, out = run_exec(rootfs, ["/bin/cat", "/proc/self/limits"],
                           ulimit=["nofile=1000:1000", "nproc=500:600", "core=0"], user="1000")
    assert status == 0, out
    rows = {line[:26].strip(): line[26:].split() for line in out.splitlines()[1:]}
    assert rows["Max open files"][:2] == ["1000", "1000"]
    assert rows["Max processes"][:2] == ["500", "600"]
    assert rows["Max core file size"][:2] == ["0", "0"]


# -- C20, C21, F39: process state --------------------------------------------------------------


def test_no_inherited_fds_reach_the_container(rootfs):
    def leak():
        fd = os.open("/", os.O_RDONLY)  # like `exec 7</` before a run
        os.dup2(fd, 7)
        os.dup2(fd, 42)
        os.set_inheritable(7, True)
        os.set_inheritable(42, True)

    status, out = run_exec(rootfs, ["/bin/sh", "-c", "ls /proc/$$/fd"], setup=leak)
    assert status == 0, out
    assert sorted(out.split()) == ["0", "1", "2"]


def test_runtime_is_non_dumpable_until_exec(rootfs):
    cfg = parse_security(user="1000")

    def fn():
        p = prepare(cfg, rootfs)
        after_prepare = linux.get_dumpable()
        enter(p)
        return [after_prepare, linux.get_dumpable()]

    assert run_probe(fn) == [0, 0]
    # execve makes the container's own program dumpable again: its /proc dir belongs to it.
    status, out = run_exec(rootfs, ["/bin/sh", "-c", "ls -ldn /proc/$$"], user="1000")
    assert status == 0, out
    assert out.split()[2] == "1000", out


def test_signal_state_is_reset(rootfs):
    def dirty():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTERM})

    status, out = run_exec(rootfs, ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], setup=dirty)
    assert status == 0, out
    assert _status_fields(out) == {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}


# -- C22: enter() imports nothing and opens nothing ------------------------------------------------


def test_enter_imports_and_opens_nothing(rootfs):
    cfg = parse_security(user="tester", ulimit=["nofile=1000"], group_add=["users"])

    def fn():
        p = prepare(cfg, rootfs)
        events = []

        def hook(event, args):
            if event in ("import", "open", "os.listdir", "os.scandir", "ctypes.dlopen", "ctypes.dlsym",
                         "subprocess.Popen", "os.exec", "os.system"):
                events.append(event)

        modules = set(sys.modules)
        sys.addaudithook(hook)
        enter(p)
        return [events, sorted(set(sys.modules) - modules)]

    assert run_probe(fn) == [[], []]


# -- F37: the parent-death signal survives the uid change --------------------------------------------


def test_parent_death_signal_rearmed_after_setuid(rootfs):
    cfg = parse_security(user="1000")
    r, w = os.pipe()
    supervisor = os.fork()
    if supervisor == 0:
        # S: a subreaper, so the orphaned "container" is reparented to us and we can reap it.
        result = "error"
        try:
            os.close(r)
            prctl.set_child_subreaper(1)
            ready_r, ready_w = os.pipe()
            pid_r, pid_w = os.pipe()
            runtime = os.fork()
            if runtime == 0:
                # A: plays the runtime.
                container = os.fork()
                if container == 0:
                    # B: armed right after fork, like the runtime does; setuid clears it.
                    prctl.set_pdeathsig(signal.SIGKILL)
                    try:
                        enter(prepare(cfg, rootfs))
                        os.write(ready_w, b"x")
                        time.sleep(20)
                    finally:
                        os._exit(0)
                select.select([ready_r], [], [], 10)
                os.write(pid_w, f"{container}\n".encode())
                os._exit(0)  # the runtime dies
            os.waitpid(runtime, 0)
            container = int(os.read(pid_r, 100).decode())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                done, status = os.waitpid(container, os.WNOHANG)
                if done:
                    result = "killed" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL else f"status {status:#x}"
                    break
                time.sleep(0.05)
            else:
                os.kill(container, signal.SIGKILL)
                os.waitpid(container, 0)
                result = "survived its runtime"
        except BaseException as e:  # noqa: BLE001
            result = f"{type(e).__name__}: {e}"
        finally:
            os.write(w, result.encode())
            os._exit(0)
    os.close(w)
    status, out = _collect(supervisor, r, 30)
    assert out.decode() == "killed"


def test_enter_refuses_when_the_runtime_is_gone(rootfs):
    cfg = parse_security()

    def fn():
        r, w = os.pipe()
        p = prepare(cfg, rootfs, parent_fd=r)
        os.close(w)  # only "the runtime" held the write end: now it is gone
        try:
            enter(p)
        except SecurityError as e:
            return str(e)
        return "entered"

    assert "runtime exited" in run_probe(fn)


# -- B18: masked and read-only paths on a real procfs and sysfs ----------------------------------------


def test_masked_and_readonly_paths(rootfs, tmp_path):
    root = tmp_path / "newroot"
    for d in ("proc", "sys", "dev"):
        (root / d).mkdir(parents=True)
    cfg = parse_security()
    R = str(root)

    def fn():
        _private_mount_ns()
        _sys.mount("proc", f"{R}/proc", "proc", 0x2 | 0x4 | 0x8)
        _sys.mount("sysfs", f"{R}/sys", "sysfs", 0x2 | 0x4 | 0x8)
        apply_masks(R, masked_path_ops(cfg), linux.Linux())
        res = {}

        def err(fn):
            try:
                fn()
                return 0
            except OSError as e:
                return e.errno

        # Every masked file this kernel has now reads as /dev/null.
        res["masked_files"] = {}
        for op in masked_path_ops(cfg):
            if op.kind == "mask_file" and os.path.exists(op.path):
                with open(f"{R}{op.path}", "rb") as f:
                    res["masked_files"][op.path] = [len(f.read(4096)), os.stat(f"{R}{op.path}").st_rdev == os.makedev(1, 3)]
        res["firmware"] = os.listdir(f"{R}/sys/firmware")
        res["firmware_write"] = err(lambda: os.open(f"{R}/sys/firmware/x", os.O_CREAT | os.O_WRONLY))
        # Opening for writing is refused before anything could be written.
        res["core_pattern"] = err(lambda: os.open(f"{R}/proc/sys/kernel/core_pattern", os.O_WRONLY))
        res["sysrq"] = err(lambda: os.open(f"{R}/proc/sysrq-trigger", os.O_WRONLY))
        res["proc_sys_ro"] = bool(os.statvfs(f"{R}/proc/sys").f_flag & os.ST_RDONLY)
        res["proc_ro_flags"] = bool(os.statvfs(f"{R}/proc/sys").f_flag & os.ST_NOSUID)
        # The rest of /proc stays writable (e.g. the container's own oom_score_adj).
        res["proc_rw"] = not os.statvfs(f"{R}/proc").f_flag & os.ST_RDONLY
        # After enter, the container cannot take the masks off.
        enter(prepare(cfg, rootfs))
        res["umount"] = err(lambda: _sys.umount2(f"{R}/proc/keys", 2))  # MNT_DETACH
        res["remount"] = err(lambda: _sys.mount(None, f"{R}/proc/sys", None, 0x20 | 0x1000))  # rw again
        return res

    got = run_probe(fn)
    assert "/proc/keys" in got["masked_files"], got
    assert all(v == [0, True] for v in got["masked_files"].values()), got["masked_files"]
    assert got["firmware"] == []
    assert got["firmware_write"] == errno.EROFS
    assert got["core_pattern"] == errno.EROFS
    assert got["sysrq"] == (errno.EROFS if os.path.exists("/proc/sysrq-trigger") else errno.ENOENT)
    assert got["proc_sys_ro"] and got["proc_ro_flags"] and got["proc_rw"]
    assert got["umount"] == errno.EPERM
    assert got["remount"] == errno.EPERM
