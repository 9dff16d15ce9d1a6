"""podman and containerd run containers with minicontainer-runc (measured here:
Debian's podman 4.3 and containerd 1.6)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ocitools import ROOTS, RUNC, apt_install

pytestmark = pytest.mark.oci

# This machine needs these (see the measured facts): no systemd cgroup
# manager, and limits podman's defaults would otherwise lift above the host's.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


@pytest.fixture(scope="module")
def podman(rootfs_tar, tmp_path_factory):
    binary = apt_install("podman", "podman")
    if binary is None:
        pytest.skip("podman is not installed and apt-get could not install it")
    d = tmp_path_factory.mktemp("podman")
    # A wrapper, not --runtime-flag: podman's cleanup process (conmon's exit
    # command) calls the runtime without the runtime flags, so with them it
    # would look for the container in the default state root.
    wrapper = d / "minicontainer-runc"
    wrapper.write_text(f'#!/bin/sh\nexec {RUNC} --root {d / "mcroot"} --log {d / "trace.log"} --debug "$@"\n')
    wrapper.chmod(0o755)
    base = [binary, "--root", str(d / "storage"), "--runroot", str(d / "run"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", str(wrapper)]

    def run(*args, check=0, timeout=120, **kw):
        if args[:1] in (("run",), ("create",)):
            # No network: podman's default one (netavark) would add a bridge and
            # NAT rules in the machine's own namespace, which tests never do.
            args = (args[0], "--network", "none", *args[1:])
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout, **kw)
        if check is not None:
            assert proc.returncode == check, f"podman {args}: exit {proc.returncode}: {proc.stdout} {proc.stderr}"
        return proc

    ROOTS.append(d / "mcroot")
    run("import", str(rootfs_tar), "localhost/mini")
    run.dir = d
    yield run
    run("rm", "-a", "-f", "-t", "0", check=None)
    subprocess.run([*base, "system", "reset", "-f"], capture_output=True, timeout=120)


def test_podman_run_rm_prints_hello(podman):
    assert podman("run", "--rm", *ULIMITS, "localhost/mini", "echo", "hello").stdout == "hello\n"
    trace = (podman.dir / "trace.log").read_text()
    assert " create --bundle " in trace and "config.json of" in trace  # what podman asked for, recorded


def test_podman_detached_exec_logs_stop_rm(podman):
    cid = podman("run", "-d", "--name", "p1", *ULIMITS, "localhost/mini", "sh", "-c",
                 "echo started; exec sleep 300").stdout.strip()
    assert podman("exec", "p1", "sh", "-c", "echo in $(hostname)").stdout.startswith("in ")
    assert podman("exec", "-it", "p1", "tty", stdin=subprocess.DEVNULL).stdout.strip().startswith("/dev/pts/")
    deadline = time.monotonic() + 10
    while "started" not in podman("logs", "p1").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "started" in podman("logs", "p1").stdout
    # the same state root: minicontainer's own commands see podman's container
    mc = subprocess.run([str(Path(RUNC).parent / "minicontainer"), "ps"], capture_output=True, text=True,
                        env=dict(os.environ, MINICONTAINER_ROOT=str(podman.dir / "mcroot")), timeout=30)
    assert cid in mc.stdout and "Up " in mc.stdout  # podman's id is the runtime's container id: our name
    # linux.cgroupsPath is honoured: the container's cgroup is where podman said (cgroupfs: below each mount)
    trace = (podman.dir / "trace.log").read_text()
    path = re.search(r'cgroupsPath\\?":\\?"([^"\\]+)', trace[trace.index(f"config.json of {cid}"):]).group(1)
    assert "libpod" in path  # (the log's text format quotes the line: \" inside)
    leaves = [d / path.strip("/") for d in Path("/sys/fs/cgroup").iterdir()]
    assert any(leaf.is_dir() for leaf in leaves), path
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", "p1").stdout)
    assert path in Path(f"/proc/{pid}/cgroup").read_text()
    podman("stop", "-t", "1", "p1")
    podman("rm", "p1")
    assert not any(leaf.is_dir() for leaf in leaves)  # delete removed it


def test_podman_flags_reach_the_container(podman, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir(mode=0o755)  # uid 1000 reads it
    (vol / "f").write_text("volfile")
    out = podman("run", "--rm", *ULIMITS, "--pids-limit", "20", "--cpus", "0.5", "-e", "FOO=bar", "-w", "/tmp",
                 "-u", "1000:1000", "--hostname", "hh", "--read-only", "-v", f"{vol}:/vol:ro",
                 "--cap-drop", "all", "localhost/mini", "sh", "-c",
                 "echo $FOO $(pwd) $(id -u) $(hostname) $(cat /vol/f); touch /x || true; touch /vol/y || true; "
                 "grep CapBnd /proc/self/status").stdout.splitlines()
    assert out[0] == "bar /tmp 1000 hh volfile"
    assert out[-1].split() == ["CapBnd:", "0000000000000000"]


def test_podman_memory_limit_kills_a_hog(podman):
    proc = podman("run", "--name", "oom", "-m", "64m", *ULIMITS, "localhost/mini", "sh", "-c",
                  "a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived", check=None)
    assert proc.returncode == 137 and "survived" not in proc.stdout
    assert podman("inspect", "oom", "--format", "{{.State.OOMKilled}}").stdout.strip() == "true"
    podman("rm", "oom")


def test_podman_refusal_is_one_clear_line(podman):
    # the host's PID namespace: a container without its own is not supported here
    proc = podman("run", "--rm", *ULIMITS, "--pid", "host", "localhost/mini", "true", check=None)
    assert proc.returncode != 0 and "has no pid namespace" in proc.stderr


def test_podman_device_and_mknod(podman):
    """--device makes the node and allows it; with CAP_MKNOD root makes any
    node, but one the device allow-list lacks does not open (EPERM)."""
    out = podman("run", "--rm", *ULIMITS, "--cap-add", "mknod", "--device", "/dev/fuse", "localhost/mini", "sh", "-c",
                 "exec 3<>/dev/fuse && echo fuse-open; mknod /dev/k c 1 11 && echo made; head -c1 /dev/k",
                 check=None)
    assert out.stdout.splitlines() == ["fuse-open", "made"] and "Operation not permitted" in out.stderr


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    if not (shutil.which("containerd") and shutil.which("ctr") and shutil.which("containerd-shim-runc-v2")):
        pytest.skip("containerd, ctr and containerd-shim-runc-v2 are needed (Debian's containerd package)")
    d = tmp_path_factory.mktemp("containerd")
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{d}/sock"\n[ttrpc]\n  address = "{d}/sock.ttrpc"\n'
        f'[debug]\n  address = "{d}/debug.sock"\n')
    daemon = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=subprocess.DEVNULL,
                              stderr=open(d / "containerd.log", "w"), start_new_session=True)
    deadline = time.monotonic() + 20
    while not (d / "sock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)

    def ctr(*args, check=0, timeout=120):
        proc = subprocess.run(["ctr", "--address", str(d / "sock"), "-n", "mini", *args], capture_output=True,
                              text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"ctr {args}: exit {proc.returncode}: {proc.stdout} {proc.stderr}"
        return proc

    ctr.runc = ["--runc-binary", RUNC, "--runc-root", str(d / "mcroot")]
    ROOTS.append(d / "mcroot" / "mini")  # the shim adds the namespace to --runc-root
    yield ctr
    daemon.terminate()
    daemon.wait(timeout=30)


def test_ctr_run_rm_prints_hello(containerd, rootfs):
    # containerd's default capabilities (CAP_MKNOD too: the device allow-list decides what opens)
    out = containerd("run", "--rm", *containerd.runc, "--rootfs", str(rootfs), "c1",
                     "echo", "hello").stdout
    assert out == "hello\n"


def test_ctr_memory_limit(containerd, rootfs):
    proc = containerd("run", "--rm", *containerd.runc, "--memory-limit", str(64 << 20),
                      "--rootfs", str(rootfs), "c2", "sh", "-c",
                      "a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived", check=None)
    assert proc.returncode == 137 and "survived" not in proc.stdout


def test_ctr_reports_a_refusal(containerd, rootfs):
    # joining another PID namespace (here the host's) is refused by name; the shim reads it from --log
    proc = containerd("run", "--rm", *containerd.runc, "--with-ns", "pid:/proc/1/ns/pid", "--rootfs", str(rootfs),
                      "c3", "true", check=None)
    assert proc.returncode != 0 and "joining an existing pid namespace" in proc.stderr


@pytest.fixture(scope="module")
def docker(rootfs_tar, tmp_path_factory):
    """A private dockerd (its own socket, data and exec roots, no bridge or
    iptables), so the test runs beside any docker on the machine."""
    if not (shutil.which("dockerd") and shutil.which("docker")):
        pytest.skip("dockerd and docker are needed (Debian's docker.io package)")
    d = tmp_path_factory.mktemp("docker")
    sock = d / "docker.sock"
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "pid"),
         "-H", f"unix://{sock}", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
         "--ip-masq=false",
         "--add-runtime", f"mini={RUNC}"],
        stdout=subprocess.DEVNULL, stderr=open(d / "dockerd.log", "w"), start_new_session=True)

    def run(*args, check=0, timeout=120):
        proc = subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True, text=True,
                              timeout=timeout)
        if check is not None:
            assert proc.returncode == check, f"docker {args}: exit {proc.returncode}: {proc.stdout} {proc.stderr}"
        return proc

    deadline = time.monotonic() + 60
    while run("version", check=None).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    run("import", str(rootfs_tar), "mini")
    # the runtime root dockerd gives an added runtime: <exec-root>/runtime-<name>/<namespace>
    ROOTS.append(d / "exec" / "runtime-mini" / "moby")
    yield run
    run("rm", "-f", "d1", check=None)
    daemon.terminate()
    daemon.wait(timeout=60)


# docker's own default capabilities (CAP_MKNOD too: the device allow-list decides what opens)
DOCKER = ("--runtime", "mini")


def test_docker_run_rm_prints_hello(docker):
    assert docker("run", "--rm", *DOCKER, "mini", "echo", "hello").stdout == "hello\n"


def test_docker_detached_exec_stop(docker):
    docker("run", "-d", "--name", "d1", *DOCKER, "mini", "sh", "-c", "echo up; exec sleep 300")
    assert docker("exec", "d1", "sh", "-c", "echo exec ok").stdout == "exec ok\n"
    docker("stop", "-t", "1", "d1")
    assert "up" in docker("logs", "d1").stdout
    docker("rm", "d1")


def test_docker_memory_limit_kills_a_hog(docker):
    proc = docker("run", "--name", "oom", *DOCKER, "-m", "64m", "mini", "sh", "-c",
                  "a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived", check=None)
    assert proc.returncode == 137 and "survived" not in proc.stdout
    # the shim finds the container's memory cgroup from its pid and saw the OOM kill
    assert docker("inspect", "oom", "--format", "{{.State.OOMKilled}}").stdout.strip() == "true"
    docker("rm", "oom")


def test_podman_shows_an_exec_failure(podman):
    """The exec fails after create has exited: the message goes to the container's stderr (podman's)."""
    proc = podman("run", "--rm", *ULIMITS, "localhost/mini", "nosuchcmd", check=None)
    assert proc.returncode == 127 and "nosuchcmd: executable file not found" in proc.stderr


def test_podman_hooks_dir_hooks_run(podman, tmp_path):
    """podman's --hooks-dir puts OCI hooks into config.json: prestart and
    createContainer are ours to run (podman runs poststop itself)."""
    (tmp_path / "hook.sh").write_text(f'#!/bin/sh\necho "$1 $(cat)" >> {tmp_path}/hooks.log\n')
    (tmp_path / "hook.sh").chmod(0o755)
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    for stage in ("prestart", "createContainer"):
        (hooks / f"{stage}.json").write_text(json.dumps({
            "version": "1.0.0", "hook": {"path": str(tmp_path / "hook.sh"), "args": ["hook.sh", stage]},
            "when": {"always": True}, "stages": [stage]}))
    out = podman("--hooks-dir", str(hooks), "run", "--rm", "--network", "none", *ULIMITS, "localhost/mini",
                 "echo", "hi").stdout
    assert out == "hi\n"
    ran = [line.split(" ", 1) for line in (tmp_path / "hooks.log").read_text().splitlines()]
    assert [k for k, _ in ran] == ["prestart", "createContainer"]
    assert all(json.loads(s)["status"] == "creating" and json.loads(s)["pid"] > 0 for _, s in ran)
