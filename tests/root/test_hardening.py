"""Holes closed by issue 11 ("Hardening ..."), through the real CLI.

1. read-only binds are read-only with everything mounted below them;
   ``--network host`` gets a fresh sysfs, not the host's with its cgroups;
4. ``rm -f`` never signals pid 0 (its own process group);
5. ``--tmpfs PATH:rw,noexec,nosuid,size=65536k`` works;
6. a hostname with a final newline is refused;
9. the next run sweeps a killed runtime's container even without a cgroupfs.

Item 3 (the container sees its own limits) needs cgroups: tests/cgroup1 and
tests/cgroup2. Items 7 and 8 are unit tests (tarread, the cgroup managers).
The conftest checks after each test that the host's mounts, processes and
cgroups are as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from helpers import PY, mc

pytestmark = pytest.mark.root


def sh(script: str, *flags: str, image: str = "mini", **kw):
    return mc("run", "--rm", *flags, image, "/bin/sh", "-c", script, **kw)


# Each line of the container's mountinfo under PREFIX whose per-mount options say rw.
WRITABLE_UNDER = ("awk -v p={prefix} '($5 == p || index($5, p \"/\") == 1) && $6 !~ /^ro/ {{print $5}}' "
                  "/proc/self/mountinfo")


def _writable_mounts(prefix: str, *flags: str, image: str = "mini") -> list[str]:
    return sh(WRITABLE_UNDER.format(prefix=prefix), *flags, image=image, check=0).stdout.split()


@pytest.fixture
def mounted_tmpfs(tmp_path):
    """A host directory with a tmpfs mounted inside it, unmounted afterwards."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "top").write_text("top\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "mctest", str(src / "sub")], check=True)
    try:
        (src / "sub" / "inner").write_text("inner\n")
        yield src
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)


# -- 1. recursive read-only ---------------------------------------------------------------


def test_a_tmpfs_mounted_under_a_read_only_volume_is_read_only_inside(mounted_tmpfs):
    proc = sh("cat /data/sub/inner; touch /data/sub/new; echo sub=$?; touch /data/new; echo top=$?",
              "-v", f"{mounted_tmpfs}:/data:ro", check=0)
    assert proc.stdout.split() == ["inner", "sub=1", "top=1"], proc.stderr
    assert "Read-only file system" in proc.stderr
    assert _writable_mounts("/data", "-v", f"{mounted_tmpfs}:/data:ro") == []
    assert not (mounted_tmpfs / "sub" / "new").exists()
    # without :ro both stay writable (the bind is recursive, the read-only is what changed)
    proc = sh("touch /data/sub/rw && echo ok", "-v", f"{mounted_tmpfs}:/data", check=0)
    assert proc.stdout.split() == ["ok"] and (mounted_tmpfs / "sub" / "rw").exists()


def test_nothing_under_proc_of_a_read_only_bind_of_the_root_is_writable():
    # -v /:/host:ro used to leave /host/proc writable, and with it the host's
    # core_pattern: a program the host runs as root on any crash. Opened, never written.
    assert _writable_mounts("/host", "-v", "/:/host:ro") == []
    probe = "sh -c 'exec 3>>/host/proc/sys/kernel/core_pattern' 2>/dev/null && echo writable || echo refused"
    assert sh(probe, "-v", "/:/host:ro", check=0).stdout.split() == ["refused"]


def test_with_the_host_network_no_sys_mount_inside_is_writable():
    # a fresh sysfs (as root the kernel allows one in the host's network
    # namespace), so the host's cgroup hierarchies under /sys/fs/cgroup do not come along writable
    assert _writable_mounts("/sys", "--network", "host") == []
    out = sh("grep ' /sys ' /proc/self/mountinfo; ls /sys/class/net", "--network", "host", check=0).stdout
    assert " - sysfs " in out and "lo" in out.split()
    probe = ("for f in /sys/fs/cgroup/*/cgroup.procs; do "
             "[ -e \"$f\" ] && { echo $$ >> \"$f\" && echo joined $f; }; done; true")
    assert "joined" not in sh(probe, "--network", "host", check=0).stdout


def test_read_only_root_in_copy_storage_covers_mounts_inside_the_image_directory(mc_home, tmp_path):
    # bind storage, --read-only straight on a directory image that carries a mount of its own
    from minicontainer.images.store import ImageStore

    image = tmp_path / "image"
    shutil.copytree(ImageStore(mc_home).get("mini").rootfs, image, symlinks=True)
    (image / "mnt").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "mcimg", str(image / "mnt")], check=True)
    try:
        env = {"MINICONTAINER_STORAGE": "copy"}
        proc = mc("run", "--rm", "--read-only", str(image), "/bin/sh", "-c",
                  "touch /mnt/x; echo mnt=$?; touch /etc/x; echo etc=$?; " + WRITABLE_UNDER.format(prefix="/mnt"),
                  env=env, check=0)
        assert proc.stdout.split() == ["mnt=1", "etc=1"], proc.stderr
        assert not (image / "mnt" / "x").exists()
    finally:
        subprocess.run(["umount", str(image / "mnt")], check=True)


def test_explain_shows_the_recursive_step(mounted_tmpfs):
    proc = mc("run", "--rm", "--explain", "-v", f"{mounted_tmpfs}:/data:ro", "mini", "true", check=0)
    assert "make /data and every mount below it read-only" in proc.stderr
    assert "mount_setattr(2)" in proc.stderr and "findmnt -Rlno TARGET $ROOTFS/data" in proc.stderr


# -- 4. rm -f of a container being set up ---------------------------------------------------


def test_rm_force_of_a_created_container_never_kills_its_own_process_group(tmp_path):
    # "created": the runtime is setting the container up and state.json says pid 0;
    # kill(0, SIGKILL) would be rm's own process group (it used to die with -9)
    from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time

    fake_runtime = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        while not proc_start_time(fake_runtime.pid):
            time.sleep(0.01)
        store = StateStore()
        store.reserve(ContainerState(id=new_id(), name="settingup", image="mini", status="created", pid=0,
                                     runtime_pid=fake_runtime.pid, runtime_start=proc_start_time(fake_runtime.pid)))
        proc = mc("rm", "-f", "settingup", start_new_session=True, timeout=30)
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        assert fake_runtime.wait(timeout=10) == -15  # the runtime was asked to stop (SIGTERM), checked by start time
        assert json.loads(mc("ps", "-a", "--format", "json", check=0).stdout) == []
    finally:
        if fake_runtime.poll() is None:
            fake_runtime.kill()
        fake_runtime.wait()


# -- 5. --tmpfs with mount flags ------------------------------------------------------------


def test_tmpfs_with_docker_style_flags():
    script = ("grep ' /run ' /proc/self/mountinfo; printf '#!/bin/sh\\necho ran\\n' > /run/x; chmod +x /run/x; "
              "/run/x; echo exec=$?; df -k /run | tail -1")
    proc = sh(script, "--tmpfs", "/run:rw,noexec,nosuid,size=65536k", check=0)
    line = proc.stdout.splitlines()[0]
    opts = line.split()[5].split(",")
    assert "rw" in opts and "noexec" in opts and "nosuid" in opts, line
    assert "exec=126" in proc.stdout and "ran" not in proc.stdout.split()
    assert proc.stdout.splitlines()[-1].split()[1] == "65536"  # size=65536k, in 1K blocks


# -- 6. full matches -----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--hostname", "box\n"], ["--name", "x\n"], ["-e", "KEY\n=1"]],
                         ids=["hostname", "name", "env-key"])
def test_a_final_newline_is_refused_in_one_line(flags, mc_home, tmp_path):
    proc = mc("run", "--rm", *flags, "mini", "true")
    assert proc.returncode == 125
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


# -- 9. the sweep without a cgroupfs --------------------------------------------------------


def _without_cgroupfs(*args: str) -> list[str]:
    """``minicontainer ARGS`` in a mount namespace of its own where /sys/fs/cgroup is unmounted."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'umount -l /sys/fs/cgroup && exec "$@"', "sh", PY, "-m", "minicontainer", *args]


def test_a_killed_runtime_is_swept_by_the_next_run_where_there_is_no_cgroupfs(mc_home):
    from minicontainer.container.state import StateStore

    runtime = subprocess.Popen(_without_cgroupfs("run", "--rm", "--name", "nocgroup", "mini", "sleep", "600"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        st = None
        while time.monotonic() < deadline:
            try:
                st = StateStore().get("nocgroup")
                if st.status == "running":
                    break
            except Exception:
                pass
            assert runtime.poll() is None, runtime.stderr.read()
            time.sleep(0.05)
        assert st is not None and st.status == "running"
        layer = st.layer_dir
        assert os.path.isdir(layer)
    finally:
        runtime.kill()  # SIGKILL: no cleanup of its own; PID 1 dies with it (PDEATHSIG)
        err = runtime.communicate(timeout=10)[1]
    assert "running without a cgroup" in err  # it really had none
    proc = subprocess.run(_without_cgroupfs("run", "--rm", "mini", "true"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(mc("ps", "-a", "--format", "json", check=0).stdout) == []
    assert not os.path.exists(layer)
