"""The ``mini`` image really works: chroot into it and run its programs.

Both variants are built (static busybox, if the host has one, and host
binaries with their libraries) and entered with chroot(8) - fine for this
test, which checks the files, not the isolation. The one test that needs
/proc mounts it inside a private mount namespace (unshare(1)), so nothing
reaches the host's mount table; the test checks that too.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from minicontainer.images import mini

pytestmark = pytest.mark.root

KINDS = ["busybox", "host"]
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C"}


@pytest.fixture(scope="module")
def images():
    base = Path(tempfile.mkdtemp(prefix="mc-mini-test-"))
    try:
        built = {}
        for kind in KINDS:
            if kind == "busybox" and mini.find_static_busybox() is None:
                continue
            rootfs = base / kind
            rootfs.mkdir()
            plan = mini.plan_mini(prefer_busybox=kind == "busybox")
            assert plan.kind == kind
            mini.write_mini(rootfs, plan)
            built[kind] = (rootfs, plan)
        yield built
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=KINDS)
def image(request, images):
    if request.param not in images:
        pytest.skip("no static busybox on this host (apt-get install busybox-static)")
    return images[request.param]


def in_chroot(rootfs: Path, script: str, *, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, "chroot", str(rootfs), "/bin/sh", "-c", script],
        capture_output=True, text=True, env=ENV, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_shell_echo_ls_id(image):
    rootfs, _ = image
    out = in_chroot(rootfs, "echo hi; ls /; id")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "hi"
    assert {"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp"} <= set(lines[1:-1])
    assert lines[-1].startswith("uid=0(root) gid=0(root)")


SCRIPT = r"""
set -e
cd /tmp
echo hello > f
cat f | grep hello | wc -l
head -n 1 /etc/passwd
tail -n 1 /etc/group
yes | head -n 3 | tr y Y
dd if=/etc/hostname of=/tmp/g 2>/dev/null
cat /tmp/g
touch t
mkdir d
chmod 0700 d
stat -c %a d
rm -r d t f g
seq 3 | tail -n 1
env | grep -c '^PATH='
sleep 0
kill -0 $$
timeout 5 true
chroot / true
id -un
id -u user
id -gn nobody
hostname > /dev/null
ls -ld /tmp | cut -c1-10 2>/dev/null || ls -ld /tmp
echo done
"""

EXPECTED = ["1", "root:x:0:0:root:/root:/bin/sh", "nogroup:x:65534:", "Y", "Y", "Y", "mini", "700", "3", "1",
            "root", "1000", "nogroup"]


def test_every_tool_works(image):
    rootfs, plan = image
    script = SCRIPT
    if plan.kind == "host":
        script = script.replace("| cut -c1-10 2>/dev/null || ls -ld /tmp", "")  # cut is not in the host set
    out = in_chroot(rootfs, script)
    assert out.returncode == 0, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    lines = out.stdout.splitlines()
    # root's login shell is mini's default shell: bash when it was copied in
    expected = [line.replace("/bin/sh", plan.shell) for line in EXPECTED]
    assert lines[: len(expected)] == expected
    assert lines[len(EXPECTED)].startswith("drwxrwxrwt")
    assert lines[-1] == "done"


def test_each_host_tool_starts(images):
    """Every copied program loads (all its libraries are there): run it with --version or --help."""
    if "host" not in images:
        pytest.skip("host image not built")
    rootfs, plan = images["host"]
    bad = []
    for tool in plan.tools:
        name = os.path.basename(tool)
        if name in ("sh", "true", "false", "yes", "sleep", "kill", "ps"):
            continue  # no --version (dash), or needs /proc (ps: see the next test)
        out = in_chroot(rootfs, f"{tool} --version")
        # a missing library makes the loader exit 127 with "error while loading shared libraries"
        if out.returncode != 0 or "shared libraries" in out.stderr:
            bad.append((tool, out.returncode, out.stderr.strip()))
    assert bad == []


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" ", 4)[4] for line in f)


def test_mount_proc_and_ps_in_a_private_namespace(image):
    rootfs, _ = image
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) from util-linux is needed")
    before = _mountinfo()
    out = in_chroot(
        rootfs,
        "mount -t proc proc /proc && ps && umount /proc && ls /proc",
        prefix=("unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"),
    )
    try:
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert "PID" in lines[0]
        pids = [line.split()[0] for line in lines[1:]]
        assert "1" in pids  # the shell is PID 1 of the new PID namespace
        assert len(pids) <= 3  # only sh and ps are visible, not the host's processes
    finally:
        assert _mountinfo() == before
    assert not list((rootfs / "proc").iterdir())


def test_ownership_and_modes(image):
    rootfs, _ = image
    st = os.stat(rootfs / "home/user")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert stat.S_IMODE(os.stat(rootfs / "root").st_mode) == 0o700
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), p
            if p != str(rootfs / "home/user"):
                assert st.st_uid == 0, p


def test_id_names_come_from_the_image_not_the_host(image):
    """The image's /etc/passwd is what its programs read (user 1000 is 'user' there)."""
    rootfs, _ = image
    out = in_chroot(rootfs, "id user; grep -c . /etc/passwd")
    assert out.returncode == 0, out.stderr
    first, count = out.stdout.splitlines()
    assert first.startswith("uid=1000(user) gid=1000(user)")
    assert count == "3"
