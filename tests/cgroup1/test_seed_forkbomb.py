"""The seed's fork bomb, typed as the seed types it, in mini's bash, under --pids-limit."""

from __future__ import annotations

import shutil

import pytest

from cgtools import scale
from helpers import mc

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="mini copies the host's bash, and this host has none")
def test_the_fork_bomb_is_contained_by_the_pids_limit():
    proc = mc("run", "--rm", "--pids-limit", "20", "mini", "bash", "-c", ":(){ :|:& };:; sleep 2; echo still here",
              timeout=scale(120))
    assert "syntax error" not in proc.stderr  # busybox ash could not parse it
    assert "fork" in proc.stderr and "Resource temporarily unavailable" in proc.stderr
    assert "minicontainer: forks failed: pids limit 20 reached" in proc.stderr.splitlines()
    assert proc.stdout.strip() == "still here"  # the container's own shell (and the host) stayed responsive
