"""Boot the test VM for one job and collect the job's output and exit status.

A *job* is a host directory shared with the guest, writable, over 9p:
the host writes ``env``, ``cwd`` and ``cmd``; stage 2 in the guest
(scripts/vm/stage2) runs the command with its output in ``stdout`` and
``stderr`` and writes the exit status to ``rc`` last. The host copies the
two output files to its own stdout/stderr as they grow, so output streams.

Exit statuses, like timeout(1) and docker run: the command's own status;
124 if the VM timed out; 125 if the VM stopped without writing ``rc``
(kernel panic, init failure, qemu error), after printing the console tail.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .assets import Assets

EXIT_TIMEOUT = 124
EXIT_NO_RESULT = 125

# Environment variables passed from the host to the command, if set.
PASSED_ENV = ("PATH", "CI", "TERM", "LANG", "LC_ALL", "TZ", "PYTEST_ADDOPTS")

# The kernel command line. quiet: every console line costs time under
# TCG. panic=-1: reboot at once on a panic, which -no-reboot turns into a
# qemu exit (the host then reports 125). cgroup_no_v1=all: no controller
# can be bound to a v1 hierarchy, so all of them stay on the unified one.
# mitigations=off: speculative-execution mitigations only slow emulation.
KERNEL_CMDLINE = "console=ttyS0 rdinit=/init quiet panic=-1 cgroup_no_v1=all mitigations=off"

SCRATCH_DISK_MIB = 256


@dataclass(frozen=True)
class VmConfig:
    accel: str = "tcg"  # "tcg" or "kvm"
    cpus: int = 2
    memory_mib: int = 2048
    timeout: float = 600.0
    show_console: bool = False  # copy the serial console to stderr as it grows


@dataclass
class Job:
    """A job directory and the command it runs."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vm-test.")))

    def write(self) -> None:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        (self.path / "env").write_text("\n".join(lines) + "\n")
        (self.path / "cwd").write_text(self.cwd)
        # exec: the command replaces the shell, so its status is the job's.
        (self.path / "cmd").write_text("exec " + shlex.join(self.argv) + "\n")
        # A sparse scratch disk, /dev/vda in the guest: a real block device
        # for io.max and anything else that needs one.
        with open(self.path / "disk.img", "wb") as f:
            f.truncate(SCRATCH_DISK_MIB << 20)

    def result(self) -> int | None:
        try:
            return int((self.path / "rc").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def qemu_command(assets: Assets, job: Job, cfg: VmConfig) -> list[str]:
    if cfg.accel == "kvm":
        accel = ["-accel", "kvm", "-cpu", "host"]
    else:
        # thread=multi: one host thread per vCPU (MTTCG), so -smp 2 really
        # runs two CPUs in parallel.
        accel = ["-accel", "tcg,thread=multi", "-cpu", os.environ.get("MINICONTAINER_VM_CPU", "max")]
    virtfs = "local,security_model=none,multidevs=remap"
    return [
        "qemu-system-x86_64",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-machine", "pc", *accel,
        "-smp", str(cfg.cpus), "-m", str(cfg.memory_mib),
        "-kernel", str(assets.vmlinux), "-initrd", str(assets.initramfs),
        "-append", KERNEL_CMDLINE,
        "-serial", f"file:{job.path / 'console.log'}",
        # The host's / read-only (stage 1 puts a tmpfs overlay on top);
        # multidevs=remap keeps inode numbers unique across host mounts.
        "-virtfs", f"{virtfs},path=/,mount_tag=hostroot,readonly=on",
        "-virtfs", f"{virtfs},path={job.path},mount_tag=job",
        "-drive", f"file={job.path / 'disk.img'},if=virtio,format=raw,cache=unsafe",
        "-nic", "none",
    ]


class _Follower:
    """Copy what is appended to a file to an output stream."""

    def __init__(self, path: Path, out: BinaryIO):
        self.path, self.out, self.pos = path, out, 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        if data:
            self.pos += len(data)
            self.out.write(data)
            self.out.flush()


def console_tail(job: Job, lines: int = 30) -> str:
    try:
        text = (job.path / "console.log").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return "(no console output)"
    # The firmware clears the screen with terminal escape sequences; drop them.
    text = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|c)", "", text).replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def run(assets: Assets, job: Job, cfg: VmConfig, log=lambda _msg: None) -> int:
    """Boot the VM, stream the job's output, return its exit status."""
    job.write()
    cmd = qemu_command(assets, job, cfg)
    followers = [
        _Follower(job.path / "stdout", sys.stdout.buffer),
        _Follower(job.path / "stderr", sys.stderr.buffer),
    ]
    if cfg.show_console:
        followers.append(_Follower(job.path / "console.log", sys.stderr.buffer))
    qemu_log = open(job.path / "qemu.log", "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + cfg.timeout
    timed_out = False
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                timed_out = True
                proc.kill()
                proc.wait()
                break
            for f in followers:
                f.pump()
            time.sleep(0.1)
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C, SIGTERM): leave no qemu behind
            proc.kill()
            proc.wait()
        qemu_log.close()
    for f in followers:
        f.pump()
    rc = job.result()
    if rc is not None:
        return rc
    if timed_out:
        log(f"the VM timed out after {cfg.timeout:g} s (--timeout); console tail:\n{console_tail(job)}")
        return EXIT_TIMEOUT
    qemu_out = (job.path / "qemu.log").read_text(errors="replace").strip()
    log(f"the VM stopped without a result (qemu exit {proc.returncode})"
        + (f"; qemu said: {qemu_out}" if qemu_out else "")
        + f"; console tail:\n{console_tail(job)}")
    return EXIT_NO_RESULT


def probe_kvm(assets: Assets, timeout: float = 15.0) -> bool:
    """Does a Debian kernel actually boot and run a command under KVM here?

    /dev/kvm existing is not enough: a nested or paravirtual KVM (such as
    kvm_pvm) may open fine and then fail or hang with a normal kernel.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    job = Job(argv=["true"], cwd="/", env={"PATH": "/usr/bin:/bin"})
    try:
        job.write()
        cmd = qemu_command(assets, job, VmConfig(accel="kvm", cpus=1, memory_mib=512))
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return job.result() == 0
    finally:
        job.remove()
