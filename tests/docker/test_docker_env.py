"""What the runtime faces inside ``docker run --privileged``, checked for real.

Runs in the docker tier (``scripts/docker-test``). The course this runtime
serves does its "containers by hand" chapter in such a container, so these
are the facts the runtime's code must handle there, each asserted:

- the root filesystem is docker's overlayfs, and overlayfs refuses an
  upper dir on it: container layers need a tmpfs (or a copy) instead;
- cgroups depend on the host. On a v1/hybrid host (this machine, CI) the
  v1 controllers are mounted read-write with the *container's own* cgroup
  as their root, while /proc/self/cgroup still shows the host's path
  (no cgroup namespace): a path must be translated through mountinfo's
  root field. On a unified host docker gives a cgroup namespace: our
  processes sit in its root, so enabling controllers for a child first
  needs a leaf for them (the no-internal-process rule);
- only loopback, no network;
- privileged: CAP_SYS_ADMIN, no seccomp filter, /sys writable, and user
  namespaces can still be created (we are not chrooted).

Every test removes the mounts and cgroups it makes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_MKNOD = 12, 21, 27


def mountinfo() -> list[dict[str, str]]:
    """/proc/self/mountinfo as dicts: root, point, options, fstype, source, super."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, source, super_opts = right.split()[:3]
            rows.append({"root": fields[3], "point": fields[4], "options": fields[5],
                         "fstype": fstype, "source": source, "super": super_opts})
    return rows


def mount_at(point: str) -> dict[str, str] | None:
    found = None
    for row in mountinfo():
        if row["point"] == point:
            found = row  # the last one on a point is the visible one
    return found


def status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def try_overlay(base: Path) -> int:
    """Mount an overlay with everything under ``base``; 0 or the errno. Unmounts it."""
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir()
    opts = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
    proc = subprocess.run(["mount", "-t", "overlay", "-o", opts, "overlay", str(base / "merged")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return errno.EINVAL if "wrong fs type" in proc.stderr or "Invalid argument" in proc.stderr else -1
    (base / "merged" / "f").write_text("x")
    subprocess.run(["umount", str(base / "merged")], check=True)
    assert (base / "upper" / "f").read_text() == "x"
    return 0


def test_we_are_in_the_container_docker_test_starts():
    assert os.environ.get("MINICONTAINER_IN_DOCKER") == "1"
    assert Path("/.dockerenv").exists()
    # The checkout is mounted read-only at its host path: tests cannot
    # dirty it, and must write to tmp_path.
    repo = Path(__file__).resolve().parents[2]
    mount = mount_at(str(repo))
    assert mount is not None, f"{repo} is not a mount point"
    assert "ro" in mount["options"].split(",")


def test_the_root_is_docker_overlayfs_which_refuses_an_upper_dir_on_it():
    assert mount_at("/")["fstype"] == "overlay"
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="ovl-on-root."))
    try:
        assert try_overlay(base) == errno.EINVAL
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_an_overlay_with_its_upper_dir_on_a_tmpfs_works():
    """The fallback the runtime needs here: put upper/work on a tmpfs."""
    before = Path("/proc/self/mountinfo").read_text()
    point = Path(tempfile.mkdtemp(prefix="tmpfs-for-layers."))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "layers", str(point)], check=True)
    try:
        assert try_overlay(point) == 0
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)
        point.rmdir()
    assert Path("/proc/self/mountinfo").read_text() == before


def test_only_loopback():
    links = sorted(os.listdir("/sys/class/net"))
    assert links == ["lo"]


def test_privileged_capabilities_no_seccomp_and_a_writable_sys():
    eff = int(status_field("CapEff"), 16)
    for cap in (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_MKNOD):
        assert eff >> cap & 1, f"capability {cap} missing from CapEff {eff:#x}"
    assert status_field("Seccomp") == "0"
    assert status_field("NoNewPrivs") == "0"
    assert "rw" in mount_at("/sys")["options"].split(",")


def test_user_namespaces_can_be_created():
    """Not a chroot: unshare(CLONE_NEWUSER) works, so rootless paths are testable."""
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "id", "-u"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def _v1_controller_mounts() -> dict[str, dict[str, str]]:
    return {row["point"].rsplit("/", 1)[1]: row for row in mountinfo()
            if row["fstype"] == "cgroup" and row["point"].startswith("/sys/fs/cgroup/")}


def test_cgroups_as_docker_gives_them():
    root = mount_at("/sys/fs/cgroup")
    assert root is not None
    own = Path("/proc/self/cgroup").read_text().splitlines()
    if root["fstype"] == "cgroup2":
        # Unified host: a private cgroup namespace, we are in its root.
        assert "0::/" in own
        assert "rw" in root["options"].split(",")
        return
    # v1 or hybrid host: a tmpfs with one mount per controller.
    assert root["fstype"] == "tmpfs"
    mounts = _v1_controller_mounts()
    assert {"memory", "pids", "cpuset"} <= set(mounts)
    memory = mounts["memory"]
    assert "rw" in memory["options"].split(",")
    host_path = next(line.split(":", 2)[2] for line in own if line.split(":", 2)[1] == "memory")
    # No cgroup namespace: /proc/self/cgroup shows the host's path...
    assert host_path.startswith("/docker/"), host_path
    # ...but the mount's root *is* that cgroup, so the path under the mount
    # is the host path minus the mount root, not the host path itself.
    assert memory["root"] == host_path
    assert not Path("/sys/fs/cgroup/memory" + host_path).exists()
    assert str(os.getpid()) in Path("/sys/fs/cgroup/memory/cgroup.procs").read_text().split()


def _move_all(src: Path, dst: Path) -> None:
    for pid in src.joinpath("cgroup.procs").read_text().split():
        try:
            dst.joinpath("cgroup.procs").write_text(pid)
        except ProcessLookupError:  # exited meanwhile
            pass


def test_a_child_cgroup_can_be_made_and_used():
    """Privileged: the runtime can make its own cgroups, below the container's."""
    root = mount_at("/sys/fs/cgroup")
    if root["fstype"] == "cgroup2":
        base = Path("/sys/fs/cgroup")
        leaf = base / f"mc-envtest-leaf-{uuid.uuid4().hex[:8]}"
        child = base / f"mc-envtest-{uuid.uuid4().hex[:8]}"
        leaf.mkdir()
        child.mkdir()
        wanted: list[str] = []
        try:
            controllers = (base / "cgroup.controllers").read_text().split()
            wanted = [c for c in ("memory", "pids") if c in controllers]
            # No-internal-process rule: with processes in the namespace
            # root, subtree_control writes fail with EBUSY...
            if (base / "cgroup.procs").read_text().split():
                with pytest.raises(OSError) as raised:
                    (base / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
                assert raised.value.errno == errno.EBUSY
            # ...until every process has moved to a leaf.
            _move_all(base, leaf)
            (base / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
            assert set(wanted) <= set((child / "cgroup.controllers").read_text().split())
        finally:
            # Undo in reverse: the child, the controllers (processes cannot
            # return to a cgroup that distributes them), then the processes.
            child.rmdir()
            enabled = set((base / "cgroup.subtree_control").read_text().split())
            if enabled & set(wanted):
                (base / "cgroup.subtree_control").write_text(" ".join("-" + c for c in enabled & set(wanted)))
            _move_all(leaf, base)
            leaf.rmdir()
        return
    memory = Path("/sys/fs/cgroup/memory")
    child = memory / f"mc-envtest-{uuid.uuid4().hex[:8]}"
    child.mkdir()
    proc = subprocess.Popen(["sleep", "600"])
    try:
        (child / "memory.limit_in_bytes").write_text(str(64 << 20))
        assert int((child / "memory.limit_in_bytes").read_text()) == 64 << 20
        (child / "cgroup.procs").write_text(str(proc.pid))
        assert (child / "cgroup.procs").read_text().split() == [str(proc.pid)]
        # Seen from /proc, the child sits under the host path of our cgroup.
        line = next(x for x in Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
                    if x.split(":", 2)[1] == "memory")
        assert line.endswith("/" + child.name) and "/docker/" in line
    finally:
        proc.kill()
        proc.wait()
        child.rmdir()
    assert not child.exists()
