"""Rootless mode for real: minicontainer run by an unprivileged user (issue 6).

The tests run as root (the tier) and start the CLI as uid 65534 (nobody,
present on every Debian/Ubuntu) through subprocess's user=/group=/
extra_groups=, a forked child that calls setgroups, setgid and setuid
before exec. The project's venv python lives under /root (0700 here), so
the user runs the system python3 on a private copy of the package and of
click (the only non-standard module on the run path), in a temp dir it can
read. It gets its own HOME and XDG_RUNTIME_DIR, so the default rootless
paths are what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import mc, run_in_pty

pytestmark = pytest.mark.root

UID = 65534
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


def _system_python() -> str | None:
    for py in SYSTEM_PYTHONS:
        if os.access(py, os.X_OK):
            proc = subprocess.run([py, "-c", "import sys; print(sys.version_info >= (3, 10))"],
                                  capture_output=True, text=True, user=UID, group=UID, extra_groups=[])
            if proc.stdout.strip() == "True":
                return py
    return None


class User:
    """Runs commands as the unprivileged user, in its own dirs under ``base``."""

    def __init__(self, base: Path, python: str):
        self.base = base
        self.python = python
        self.home = base / "home"
        self.run_dir = base / "xdg-run"
        self.env = {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.run_dir),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(base / "pylib"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        }

    @property
    def data(self) -> Path:
        return self.home / ".local" / "share" / "minicontainer"

    @property
    def state(self) -> Path:
        return self.run_dir / "minicontainer"

    def popen_args(self, *args: str) -> dict:
        return dict(args=[self.python, "-m", "minicontainer", *args], env=self.env, cwd=str(self.base),
                    user=UID, group=UID, extra_groups=[])

    def mc(self, *args: str, check=None, timeout=120, env=None) -> subprocess.CompletedProcess:
        run = self.popen_args(*args)
        run["env"] = {**run["env"], **(env or {})}
        proc = subprocess.run(**run, capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}, stdout={proc.stdout!r}, stderr={proc.stderr!r}"
        return proc

    def python_c(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-c", code], env=self.env, cwd=str(self.base), user=UID, group=UID,
                              extra_groups=[], capture_output=True, text=True, timeout=60)


def _copy_package(module, dest: Path) -> None:
    src = Path(module.__file__).parent
    shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="module")
def plain_user():
    """The unprivileged user with its python and dirs, nothing more (no user namespace needed)."""
    python = _system_python()
    if python is None:
        pytest.skip(f"no system python3 >= 3.10 the user can run ({', '.join(SYSTEM_PYTHONS)}); apt-get install python3")
    import click

    import minicontainer

    base = Path(tempfile.mkdtemp(prefix="mc-rootless-"))
    try:
        os.chmod(base, 0o755)
        (base / "pylib").mkdir()
        _copy_package(minicontainer, base / "pylib")
        _copy_package(click, base / "pylib")
        u = User(base, python)
        for d, mode in ((u.home, 0o755), (u.run_dir, 0o700)):
            d.mkdir(mode=mode)
            os.chown(d, UID, UID)
        yield u
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def user(plain_user):
    u = plain_user
    probe = u.python_c("from minicontainer.container.userns import check_allowed; check_allowed()")
    if probe.returncode != 0:
        pytest.skip("this host does not let an unprivileged user create user namespaces: "
                    + (probe.stderr.strip().splitlines() or ["?"])[-1])
    u.mc("run", "--rm", "mini", "true", check=0)  # builds the user's own 'mini'
    return u


def sh(user: User, script: str, *flags: str, check=0):
    return user.mc("run", "--rm", *flags, "mini", "/bin/sh", "-c", script, check=check)


def fields(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            found[k.strip()] = v.strip()
    return found


# --- a shell works, root inside, the caller outside ------------------------------------------


def test_a_shell_is_root_inside_and_the_caller_outside(user):
    out = sh(user, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; cat /proc/self/setgroups; echo $$").stdout
    lines = out.split("\n")
    assert lines[0] == "0" and lines[1] == "0"
    assert lines[2].split() == ["0", str(UID), "1"]
    assert lines[3].split() == ["0", str(UID), "1"]
    assert lines[4] == "deny"  # the single-id map needs setgroups off (user_namespaces(7))
    assert lines[5] == "1"  # PID 1 of a PID namespace owned by the user namespace


def test_a_file_made_in_a_volume_belongs_to_the_caller(user):
    vol = user.base / "vol"
    vol.mkdir()
    os.chown(vol, UID, UID)
    out = sh(user, "echo hi > /data/made; stat -c '%u %g' /data/made", "-v", f"{vol}:/data").stdout
    assert out.split() == ["0", "0"]
    st = os.stat(vol / "made")
    assert (st.st_uid, st.st_gid) == (UID, UID)
    assert (vol / "made").read_text() == "hi\n"


def test_the_default_security_applies(user):
    f = fields(sh(user, "grep -E 'Cap|NoNewPrivs|Seccomp' /proc/self/status").stdout)
    assert f["CapBnd"] == f["CapEff"] == "00000000a80425fb"
    assert f["CapAmb"] == f["CapInh"] == "0000000000000000"
    assert f["NoNewPrivs"] == "1" and f["Seccomp"] == "2"
    out = sh(user, "mkdir -p /tmp/m; mount -t tmpfs x /tmp/m && echo mounted; unshare -U true && echo nested; "
                   "cat /proc/kcore | head -c1 | wc -c; echo done").stdout.split()
    assert "mounted" not in out and "nested" not in out
    assert out[-2:] == ["0", "done"]


def test_devices_are_the_hosts_bound_in(user):
    out = sh(user, "echo x > /dev/null && head -c 3 /dev/zero | wc -c; ls -l /dev/null; "
                   "mknod /tmp/n c 1 3 && echo made; grep ' /dev/null ' /proc/self/mountinfo").stdout
    lines = out.split("\n")
    assert lines[0].strip() == "3"
    assert lines[1].startswith("c") and "1,   3" in lines[1]
    assert "made" not in out  # mknod needs CAP_MKNOD in the host's user namespace
    # the host's node, bind-mounted: /dev/null is a mount point of its own, from
    # the host's /dev filesystem (devtmpfs on a host, a tmpfs inside docker)
    host_dev = next(ln.split(" - ")[1].split()[0] for ln in open("/proc/self/mountinfo") if ln.split()[4] == "/dev")
    assert " /null /dev/null " in out and f" - {host_dev} " in out


def test_state_and_images_live_in_the_users_xdg_dirs(user):
    user.mc("run", "--name", "kept", "mini", "touch", "/made-here", check=0)
    try:
        assert any((user.data / "images").iterdir())
        names = os.listdir(user.state / "names")
        assert names == ["kept"]
        st = os.stat(user.state)
        assert st.st_uid == UID and (st.st_mode & 0o777) == 0o700
        assert "kept" in user.mc("ps", "-a", check=0).stdout
    finally:
        user.mc("rm", "kept", check=0)
    assert os.listdir(user.state / "names") == []


def test_no_extra_process_stays_and_the_container_dies_with_the_runtime(user):
    proc = subprocess.Popen(**user.popen_args("run", "--rm", "mini", "sleep", "60"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        children: list[str] = []
        while time.monotonic() < deadline:
            try:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if len(children) == 1 and Path(f"/proc/{children[0]}/comm").read_text().strip() == "sleep":
                    break
            except OSError:
                pass
            time.sleep(0.05)
        # the runtime's only child is the container's PID 1: the map helper is gone
        assert len(children) == 1, children
        assert Path(f"/proc/{children[0]}/comm").read_text().strip() == "sleep"
        # and the runtime itself lives in the user namespace it made
        assert os.readlink(f"/proc/{proc.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert Path(f"/proc/{proc.pid}/uid_map").read_text().split() == ["0", str(UID), "1"]
        container = int(children[0])
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{container}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{container}"), "the container outlived its rootless runtime"


# --- what cannot work rootless says why --------------------------------------------------------


def test_limits_need_root(user):
    proc = user.mc("run", "--rm", "-m", "64m", "mini", "true", check=125)
    assert "need a cgroup" in proc.stderr and "run as root" in proc.stderr


def test_dry_run_with_limits_needs_no_root(plain_user):
    # nothing is created, so nothing needs root: the plan is root's, and says so
    containers = set(plain_user.data.glob("containers/*"))
    proc = plain_user.mc("run", "--dry-run", "-m", "64m", "--pids-limit", "20", "mini", "true", check=0)
    out = proc.stdout + proc.stderr
    assert "you are not root: this is the plan of a run as root" in out
    assert "67108864" in out and "pids.max" in out
    assert set(plain_user.data.glob("containers/*")) == containers  # nothing was made


def test_an_unmapped_user_is_a_clear_error(user):
    proc = user.mc("run", "--rm", "-u", "1000", "mini", "id", check=125)
    assert "uid 1000 does not exist in this user namespace" in proc.stderr
    assert "/etc/subuid" in proc.stderr


def test_the_plan_shows_the_user_namespace_and_no_cgroup(user):
    proc = user.mc("run", "--dry-run", "mini", "true", check=0)
    out = proc.stdout + proc.stderr
    assert f"create a user namespace and enter it: uids 0 -> {UID}" in out
    assert "no cgroup for this container (rootless mode)" in out
    assert "mount --bind /dev/null $ROOTFS/dev/null" in out
    assert "mknod -m" not in out
    assert out.index("create a user namespace") < out.index("create a new PID namespace")


# --- a full range from /etc/subuid through newuidmap ----------------------------------------------


SUB_START = 2_000_000_000  # far from any range an administrator would hand out
SUB_COUNT = 65536


@pytest.fixture
def subids():
    """A subordinate range for the user in /etc/subuid and /etc/subgid, removed afterwards."""
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        pytest.skip("newuidmap/newgidmap missing: apt-get install uidmap")
    line = f"{UID}:{SUB_START}:{SUB_COUNT}\n"
    added = []
    try:
        for path in ("/etc/subuid", "/etc/subgid"):
            with open(path, "a") as f:
                f.write(line)
            added.append(path)
        yield
    finally:
        for path in added:
            text = Path(path).read_text()
            Path(path).write_text(text.replace(line, "", 1))


def test_a_full_range_maps_other_users_too(user, subids):
    vol = user.base / "vol-range"
    vol.mkdir(mode=0o777)
    os.chmod(vol, 0o777)
    out = sh(user, "cat /proc/self/uid_map; cat /proc/self/setgroups").stdout.split("\n")
    assert out[0].split() == ["0", str(UID), "1"]
    assert out[1].split() == ["1", str(SUB_START), str(SUB_COUNT)]
    assert out[2] == "allow"
    # uid 1000 inside exists now: it is SUB_START + 999 on the host
    out = user.mc("run", "--rm", "-u", "1000:1000", "--group-add", "5", "-v", f"{vol}:/data", "mini", "/bin/sh", "-c",
                  "id -u; id -G; touch /data/by-1000", check=0).stdout.split("\n")
    assert out[0] == "1000" and out[1].split() == ["1000", "5"]
    st = os.stat(vol / "by-1000")
    assert (st.st_uid, st.st_gid) == (SUB_START + 999, SUB_START + 999)


def test_files_of_subordinate_ids_are_removed_from_inside(user, subids):
    user.mc("run", "--name", "subfiles", "mini", "/bin/sh", "-c",
            "mkdir -p /home/user/d && touch /home/user/d/f && chown -R 1000:1000 /home/user", check=0)
    try:
        cid = os.readlink(user.state / "names" / "subfiles")
        st_dir = Path(json.loads((user.state / "containers" / cid / "state.json").read_text())["layer_dir"])
        made = st_dir / "upper" / "home" / "user" / "d" / "f"
        assert os.stat(made).st_uid == SUB_START + 999
        # From outside the caller cannot delete it; inside a user namespace with the same map it can.
        proc = user.python_c(f"from minicontainer.container.userns import remove_tree; print(remove_tree({str(st_dir)!r}))")
        assert proc.stdout.strip() == "True", proc.stderr
        assert not st_dir.exists()
    finally:
        user.mc("rm", "subfiles")


# (root's --userns, a subordinate range of its own: tests/root/test_userns_remap.py)


def test_pid_host_is_refused_rootless(user):
    proc = user.mc("run", "--rm", "--pid", "host", "mini", "true", check=125)
    assert "--pid host cannot be combined with a user namespace" in proc.stderr


def test_a_terminal_works_rootless(user):
    args = user.popen_args("run", "--rm", "-it", "mini", "/bin/sh", "-c", "test -t 0 && echo is-a-tty; stty size")

    def as_the_user():
        os.chdir(args["cwd"])
        os.setgroups([])
        os.setgid(UID)
        os.setuid(UID)
        os.execve(args["args"][0], args["args"], args["env"])

    code, out = run_in_pty(as_the_user, rows=30, cols=90)
    assert code == 0, out
    assert b"is-a-tty" in out and b"30 90" in out


# --- someone else's store: one line, no traceback --------------------------------------------


@pytest.fixture
def roots_stores(plain_user):
    """A store and a state root made by root (0700), and a root-only home, in a dir the user can reach."""
    from minicontainer.images.store import ImageStore
    from minicontainer.container.state import StateStore

    base = Path(tempfile.mkdtemp(prefix="roots-", dir=plain_user.base))
    os.chmod(base, 0o755)
    images, state = ImageStore(base / "store"), StateStore(base / "state")
    images.ensure()
    (images.refs_dir / "mini").write_text("0" * 64 + "\n")
    state.ensure()
    home = base / "roothome"  # what HOME=/root kept by a plain `su` points at
    home.mkdir(mode=0o700)
    yield images.home, state.root, home
    shutil.rmtree(base, ignore_errors=True)


def _one_line_error(proc, code: int, path: Path, hint: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("minicontainer: error: using the ") and f" at {path}" in lines[0], proc.stderr
    assert "Permission denied" in lines[0] and f"(hint: {hint}" in lines[0], proc.stderr


@pytest.mark.parametrize("args, code", [(("image", "ls"), 1), (("image", "inspect", "mini"), 1),
                                        (("run", "--rm", "mini", "true"), 125)])
def test_roots_image_store_through_minicontainer_home(plain_user, roots_stores, args, code):
    store, _, _ = roots_stores
    proc = plain_user.mc(*args, env={"MINICONTAINER_HOME": str(store)})
    _one_line_error(proc, code, store, "run as root, or unset MINICONTAINER_HOME")


@pytest.mark.parametrize("args", [("ps", "-a"), ("rm", "x")])
def test_roots_state_through_minicontainer_root(plain_user, roots_stores, args):
    _, state, _ = roots_stores
    proc = plain_user.mc(*args, env={"MINICONTAINER_ROOT": str(state)})
    _one_line_error(proc, 125, state, "run as root, or unset MINICONTAINER_ROOT")


def test_roots_home_kept_by_su(plain_user, roots_stores):
    _, _, home = roots_stores
    proc = plain_user.mc("image", "ls", env={"HOME": str(home)})
    _one_line_error(proc, 1, home, "run as root, or as yourself with your own HOME")
    assert "'su -'" in proc.stderr


def test_with_the_host_network_sys_is_read_only_with_everything_below(user):
    # issue 11, item 1: in a user namespace the kernel refuses a fresh sysfs for the
    # host's network namespace, so the host's /sys is bound; mount_setattr(2)
    # makes it and every mount below it (the cgroup hierarchies) read-only at once
    out = sh(user, "awk '$5 ~ /^\\/sys/ && $6 !~ /^ro/ {print $5}' /proc/self/mountinfo; echo end; "
                   "grep -c ' /sys/fs/cgroup' /proc/self/mountinfo", "--network", "host").stdout.split()
    assert out[0] == "end", out
    assert int(out[1]) >= 1  # the host's cgroup mounts came along, read-only


def test_a_named_volume_rootless_is_the_users_and_filled_from_the_image(user):
    # volumes: the user's own store (~/.local/share/minicontainer/volumes), the
    # image's files copied in from inside the user namespace (root there is the user)
    out = sh(user, "ls /etc; echo x > /etc/new", "-v", "rlvol:/etc").stdout.split()
    assert "passwd" in out
    assert sh(user, "cat /etc/new", "-v", "rlvol:/etc").stdout == "x\n"
    data = user.data / "volumes" / "rlvol" / "_data"
    assert os.stat(data / "passwd").st_uid == UID and (data / "new").read_text() == "x\n"
    user.mc("run", "--rm", "-v", "/anon", "mini", "true", check=0)
    assert user.mc("volume", "ls", "-q", check=0).stdout.split() == ["rlvol"]  # --rm took the anonymous one
    user.mc("volume", "rm", "rlvol", check=0)
