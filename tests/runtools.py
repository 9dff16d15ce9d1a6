"""Helpers for the end-to-end limit tests through the CLI, shared by both
cgroup tiers (tests/cgroup1 on this host, tests/cgroup2 in the VM).

- ``Containers``: start ``minicontainer run --name N ...`` in the background,
  wait until its state says running, and at the end ``rm -f`` and reap
  everything it started, even when the test failed; the ``containers``
  fixture gives one per test (both tiers' conftest.py import it);
- ``counter_script``/``read_counter``: a container loop that writes an
  increasing number to a file in a volume, to see a pause from outside.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cgtools import scale
from helpers import PY, mc

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /data/n; sleep 0.1; done"


@pytest.fixture
def containers(clean_host):
    """A Containers for the test; whatever it started is removed afterwards."""
    c = Containers(clean_host)
    try:
        yield c
    finally:
        c.cleanup()


class Containers:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *run_args: str) -> subprocess.Popen:
        """``minicontainer run --name NAME RUN_ARGS...`` in the background; returns once it runs."""
        out = open(self.workdir / f"{name}.out", "w")
        err = open(self.workdir / f"{name}.err", "w")
        with out, err:
            p = subprocess.Popen([PY, "-m", "minicontainer", "run", "--name", name, *run_args],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(os.environ))
        self.procs[name] = p
        # Reap the runtime as soon as it exits, as a shell does with its jobs:
        # `rm -f` waits for the runtime's pid to go, and a zombie still has it.
        threading.Thread(target=p.wait, daemon=True).start()
        self.wait_running(name, p)
        return p

    def wait_running(self, name: str, p: subprocess.Popen, timeout: float | None = None) -> None:
        from minicontainer.errors import MiniError
        from minicontainer.container.state import StateStore

        deadline = time.monotonic() + (timeout or scale(30))
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}: {self.stderr(name)}")
            try:
                if StateStore().get(name).status == "running":
                    return
            except MiniError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{name} did not start within the timeout: {self.stderr(name)}")

    def state(self, name: str):
        from minicontainer.container.state import StateStore

        return StateStore().get(name)

    def stderr(self, name: str) -> str:
        return (self.workdir / f"{name}.err").read_text()

    def stdout(self, name: str) -> str:
        return (self.workdir / f"{name}.out").read_text()

    def rm(self, name: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """``rm -f NAME`` and wait for its runtime to exit."""
        proc = mc("rm", "-f", name, timeout=timeout or scale(60))
        p = self.procs.get(name)
        if p is not None:
            p.wait(timeout=timeout or scale(60))
        return proc

    def cleanup(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is None:
                try:
                    mc("rm", "-f", name, timeout=scale(60))
                except subprocess.TimeoutExpired:
                    pass
                try:
                    p.wait(timeout=scale(30))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def read_counter(path: Path) -> int:
    """The last number the counter loop wrote (retrying a read that met a half-written file)."""
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"{path} stayed empty")
