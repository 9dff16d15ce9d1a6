"""The cgroup v2 environment the runtime relies on, checked for real.

Runs in the cgroup2 tier: inside the qemu VM of ``scripts/vm-test`` on this
machine and CI, or on any host with a unified hierarchy (the Vagrant box).
These tests pin down the kernel behaviour the cgroups code builds on, so a
failure here says "the environment is wrong", not "the runtime is wrong":

- /sys/fs/cgroup is cgroup2 and offers the controllers (cgroups(7));
- controllers reach a child only through the parent's cgroup.subtree_control,
  and the no-internal-process rule refuses that on a non-root cgroup that
  holds processes (cgroup-v2.rst, "No Internal Process Constraint");
- cgroup.kill empties a cgroup, and rmdir succeeds once cgroup.events says
  ``populated 0`` (right after the last exit it can still fail with EBUSY);
- overlayfs works with its upper dir on the fresh tmpfs of MINICONTAINER_HOME.

Every test leaves /sys/fs/cgroup, the mount table and the process list as it
found them (checked by the ``cgroup_root`` fixture).
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")

pytestmark = [
    pytest.mark.cgroup2,
    # The true root cgroup has no cgroup.type; a cgroup namespace's root (as
    # docker gives on a unified host) has one and holds our processes, so the
    # no-internal-process rule changes every step below. That case has its
    # own tests in tests/docker/test_docker_env.py.
    pytest.mark.skipif((CGROUP_ROOT / "cgroup.type").exists(),
                       reason="/sys/fs/cgroup is a cgroup namespace's root, not the host's (see test_docker_env.py)"),
]
IN_VM = os.environ.get("MINICONTAINER_IN_VM") == "1"
# The environment scripts/vm-test gave us, taken at collection time: other
# tests may point MINICONTAINER_HOME elsewhere while they run.
START_ENV = dict(os.environ)
# scripts/vm-test sets this: everything is 15-50x slower under TCG.
SCALE = float(os.environ.get("MINICONTAINER_TEST_TIMEOUT_SCALE", "1"))


def mount_of(path: str) -> tuple[str, str, str]:
    """(mount point, fs type, super options) of the mount holding ``path``."""
    path = os.path.realpath(path)
    best = ("", "", "")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = left.split()[4]
            fstype, _source, opts = right.split()[:3]
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            # Later lines win on a tie: the last mount on a point is on top.
            if inside and len(mnt) >= len(best[0]):
                best = (mnt, fstype, opts)
    return best


def read_kv(path: Path) -> dict[str, str]:
    """A flat-keyed cgroup file such as cgroup.events or memory.events."""
    return dict(line.split(None, 1) for line in path.read_text().splitlines() if line.strip())


def wait_until(predicate, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds * SCALE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def remove_cgroup(path: Path) -> None:
    """Kill everything in ``path`` and below, wait until empty, rmdir bottom-up."""
    if not path.exists():
        return
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        remove_cgroup(child)
    kill = path / "cgroup.kill"
    if kill.exists():
        kill.write_text("1")
    wait_until(lambda: read_kv(path / "cgroup.events")["populated"] == "0", f"{path} to be empty")
    path.rmdir()


@pytest.fixture
def cgroup_root():
    """A fresh test cgroup under the root; afterwards, the root as it was.

    Yields the new, empty cgroup. Controllers this fixture (or the test)
    enabled in the root's subtree_control are disabled again, so a test
    never changes what the next one sees.
    """
    before_dirs = {p.name for p in CGROUP_ROOT.iterdir() if p.is_dir()}
    before_ctrl = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
    cg = CGROUP_ROOT / f"mc-envtest-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        yield cg
    finally:
        remove_cgroup(cg)
        now = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
        for ctrl in sorted(now - before_ctrl):
            try:
                (CGROUP_ROOT / "cgroup.subtree_control").write_text(f"-{ctrl}")
            except OSError as e:  # another cgroup (not ours) uses it now
                if e.errno != errno.EBUSY:
                    raise
        after_dirs = {p.name for p in CGROUP_ROOT.iterdir() if p.is_dir()}
        assert after_dirs == before_dirs, f"left behind under {CGROUP_ROOT}: {after_dirs - before_dirs}"


def enable(parent: Path, *controllers: str) -> None:
    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))


def sleeper_in(cg: Path) -> subprocess.Popen:
    """A process that sleeps, moved into ``cg`` (cgroup.procs takes one pid per write)."""
    proc = subprocess.Popen(["sleep", "600"])
    (cg / "cgroup.procs").write_text(str(proc.pid))
    return proc


def test_sys_fs_cgroup_is_the_unified_hierarchy_with_the_controllers():
    _, fstype, _ = mount_of(str(CGROUP_ROOT))
    assert fstype == "cgroup2"
    controllers = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    # The controllers a runtime needs for docker run's resource flags.
    assert {"cpu", "cpuset", "io", "memory", "pids"} <= controllers
    # Our own process is in some cgroup of that hierarchy: one "0::" line.
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    assert any(line.startswith("0::/") for line in lines)


def test_no_cgroup_v1_hierarchy_is_mounted():
    """On a unified host, no controller is bound to a v1 hierarchy."""
    with open("/proc/self/mountinfo") as f:
        v1 = [line for line in f if line.partition(" - ")[2].split()[0] == "cgroup"]
    assert v1 == []


def test_subtree_control_hands_controllers_to_a_child(cgroup_root):
    enable(CGROUP_ROOT, "memory", "cpu", "pids")
    enable(cgroup_root, "memory", "cpu", "pids")
    child = cgroup_root / "c"
    child.mkdir()
    assert {"memory", "cpu", "pids"} <= set((child / "cgroup.controllers").read_text().split())
    # The controllers' interface files appear and take values.
    (child / "memory.max").write_text("67108864")
    (child / "pids.max").write_text("32")
    (child / "cpu.max").write_text("50000 100000")
    assert (child / "memory.max").read_text().strip() == "67108864"
    assert (child / "pids.max").read_text().strip() == "32"
    assert (child / "cpu.max").read_text().split() == ["50000", "100000"]
    assert "oom_kill" in read_kv(child / "memory.events")


def test_a_controller_not_enabled_in_the_parent_has_no_files(cgroup_root):
    enable(CGROUP_ROOT, "pids")
    child = cgroup_root / "c"
    child.mkdir()  # cgroup_root's own subtree_control stays empty
    assert (child / "cgroup.controllers").read_text().split() == []
    assert not (child / "pids.max").exists()


def test_no_internal_process_rule_on_a_non_root_cgroup(cgroup_root):
    """A cgroup with processes cannot give controllers to children (EBUSY).

    This is the case the runtime meets when it is started inside a
    non-root cgroup that holds processes (a docker container, a systemd
    service): it must first move itself into a leaf.
    """
    enable(CGROUP_ROOT, "memory")
    proc = sleeper_in(cgroup_root)
    try:
        with pytest.raises(OSError) as raised:
            enable(cgroup_root, "memory")
        assert raised.value.errno == errno.EBUSY
        # Moving the process to a leaf lifts the restriction.
        leaf = cgroup_root / "leaf"
        leaf.mkdir()
        (leaf / "cgroup.procs").write_text(str(proc.pid))
        enable(cgroup_root, "memory")
        assert "memory" in (cgroup_root / "cgroup.subtree_control").read_text().split()
    finally:
        proc.kill()
        proc.wait()


def test_cgroup_kill_empties_the_cgroup_and_rmdir_waits_for_populated_0(cgroup_root):
    cg = cgroup_root / "victim"
    cg.mkdir()
    procs = [sleeper_in(cg) for _ in range(3)]
    assert read_kv(cg / "cgroup.events")["populated"] == "1"
    assert len((cg / "cgroup.procs").read_text().split()) == 3
    (cg / "cgroup.kill").write_text("1")
    for p in procs:
        assert p.wait(timeout=10 * SCALE) == -9
    wait_until(lambda: read_kv(cg / "cgroup.events")["populated"] == "0", "populated 0")
    assert (cg / "cgroup.procs").read_text() == ""
    cg.rmdir()
    assert not cg.exists()


def test_freeze_and_thaw(cgroup_root):
    cg = cgroup_root / "frozen"
    cg.mkdir()
    proc = sleeper_in(cg)
    try:
        (cg / "cgroup.freeze").write_text("1")
        wait_until(lambda: read_kv(cg / "cgroup.events")["frozen"] == "1", "frozen 1")
        (cg / "cgroup.freeze").write_text("0")
        wait_until(lambda: read_kv(cg / "cgroup.events")["frozen"] == "0", "frozen 0")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def block_device() -> tuple[str, int, int] | None:
    """A whole disk (not a partition, not loop/ram/zram) with its major:minor."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        major, minor = (Path("/sys/block") / name / "dev").read_text().strip().split(":")
        return name, int(major), int(minor)
    return None


def test_io_max_takes_a_limit_on_a_real_block_device(cgroup_root):
    dev = block_device()
    if dev is None:
        pytest.skip("no block device here (scripts/vm-test gives the VM a virtio scratch disk)")
    name, major, minor = dev
    enable(CGROUP_ROOT, "io")
    enable(cgroup_root, "io")
    child = cgroup_root / "c"
    child.mkdir()
    (child / "io.max").write_text(f"{major}:{minor} wbps=1048576 riops=100")
    line = (child / "io.max").read_text().strip()
    assert line.startswith(f"{major}:{minor} ")
    assert "wbps=1048576" in line and "riops=100" in line, (name, line)


def test_overlay_with_its_upper_dir_on_the_minicontainer_home_tmpfs():
    """The runtime keeps container layers under MINICONTAINER_HOME.

    In the VM that is a fresh tmpfs: overlayfs refuses an upper dir that
    is itself on an overlay (the guest's root), so the layers must not
    live on /.
    """
    home = Path(os.environ.get("MINICONTAINER_HOME", "/var/lib/minicontainer"))
    home.mkdir(parents=True, exist_ok=True)
    mounts_before = Path("/proc/self/mountinfo").read_text()
    base = Path(tempfile.mkdtemp(dir=home, prefix="ovl-envtest."))
    merged = base / "merged"
    try:
        for d in ("lower", "upper", "work", "merged"):
            (base / d).mkdir()
        (base / "lower" / "from-lower").write_text("lower\n")
        opts = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "-o", opts, "overlay", str(merged)], check=True)
        try:
            assert (merged / "from-lower").read_text() == "lower\n"
            (merged / "new").write_text("upper\n")
            (merged / "from-lower").unlink()  # leaves a whiteout in upper
        finally:
            subprocess.run(["umount", str(merged)], check=True)
        assert (base / "upper" / "new").read_text() == "upper\n"
        assert (base / "lower" / "from-lower").exists()
        assert not (base / "merged" / "new").exists()
    finally:
        subprocess.run(["umount", str(merged)], capture_output=True)  # no-op unless a failure left it mounted
        subprocess.run(["rm", "-rf", str(base)], check=True)
    assert Path("/proc/self/mountinfo").read_text() == mounts_before


@pytest.mark.skipif(not IN_VM, reason="checks what scripts/vm-test promises its guest; not in the VM")
def test_the_vm_gives_fresh_tmpfs_for_the_runtime_and_a_scratch_disk():
    for var, default in (("MINICONTAINER_HOME", "/var/lib/minicontainer"),
                         ("MINICONTAINER_ROOT", "/run/minicontainer")):
        path = START_ENV.get(var)
        assert path == default
        mnt, fstype, _ = mount_of(path)
        assert (mnt, fstype) == (path, "tmpfs")
    for path in ("/tmp", "/dev/shm", "/run"):
        assert mount_of(path)[:2] == (path, "tmpfs")
    assert mount_of("/")[1] == "overlay"
    assert mount_of("/dev/pts")[1] == "devpts"
    assert Path("/dev/vda").exists() and Path("/dev/loop-control").exists()
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == "minicontainer-vm"
    # The checkout is visible at the same path as on the host.
    assert (Path(__file__).parent.parent / "conftest.py").exists()
