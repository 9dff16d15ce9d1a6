"""scripts/vm-test from the host: exit statuses, output streams, cwd, timeout.

Each test boots the VM once (about 5 s under TCG after the first setup,
which installs qemu and caches a kernel: see scripts/vm-test). The
cgroup2 tier itself is tests/cgroup2, run *inside* the VM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.environ.get("MINICONTAINER_IN_DOCKER") == "1" or os.environ.get("MINICONTAINER_IN_VM") == "1",
        reason="no nested VM: scripts/vm-test runs on the host, not inside the docker or VM tiers",
    ),
]

REPO = Path(__file__).resolve().parents[2]
VM_TEST = REPO / "scripts" / "vm-test"


def vm_test(*args: str, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(VM_TEST), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def vm_ready():
    """Run the (idempotent) setup once, so each test's timing is one boot."""
    proc = vm_test("--setup-only", timeout=900)
    assert proc.returncode == 0, proc.stderr


def test_exit_status_output_streams_cwd_and_guest_environment():
    script = (
        "echo to-stdout; echo to-stderr >&2; pwd; "
        "cat /sys/fs/cgroup/cgroup.controllers; "
        'echo "home=$MINICONTAINER_HOME root=$MINICONTAINER_ROOT"; '
        "id -u; exit 7"
    )
    started = time.monotonic()
    proc = vm_test("--", "sh", "-c", script, cwd=REPO / "tests")
    elapsed = time.monotonic() - started
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "to-stdout"
    assert lines[1] == str(REPO / "tests")  # same absolute path in the guest
    assert {"cpu", "memory", "pids", "io", "cpuset"} <= set(lines[2].split())
    assert lines[3] == "home=/var/lib/minicontainer root=/run/minicontainer"
    assert lines[4] == "0"
    assert proc.stderr.strip().endswith("to-stderr")  # stderr kept apart from stdout
    assert "to-stderr" not in proc.stdout
    assert elapsed < 120, f"one boot took {elapsed:.0f} s"


def test_arguments_reach_the_command_unmangled():
    tricky = ["a b", "$HOME", "it's", "*", ""]
    proc = vm_test("--", "printf", "[%s]\\n", *tricky)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"[{a}]" for a in tricky]


def test_timeout_gives_124_and_leaves_no_qemu():
    proc = vm_test("--keep", "--timeout", "2", "--", "sleep", "600")
    job = Path(proc.stderr.rsplit("job directory kept: ", 1)[1].strip())
    try:
        assert proc.returncode == 124
        assert "timed out after 2 s" in proc.stderr
        assert _processes_mentioning(str(job)) == []
    finally:
        shutil.rmtree(job)


def test_a_vm_that_dies_without_a_result_gives_125_and_the_console_tail():
    # Power the guest off from inside the command: no rc file is written.
    proc = vm_test("--", "/.vm/busybox", "poweroff", "-f")
    assert proc.returncode == 125
    assert "without a result" in proc.stderr
    assert "console tail" in proc.stderr


def test_job_directories_are_removed():
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    before = set(tmp.glob("vm-test.*"))
    proc = vm_test("--", "true")
    assert proc.returncode == 0, proc.stderr
    assert set(tmp.glob("vm-test.*")) <= before


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the qemu of one job names its directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # the process exited meanwhile
                pass
    return found
