"""A real ``run --rm`` (not only --dry-run, which tests/unit/test_start_imports.py
covers) leaves the heavy modules out: what the lean parser, records.py and the
lazy imports took off the start path (issue 15) must stay off when the
container really starts, volumes, state and cleanup included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

_PROBE = """
import atexit, sys
from minicontainer.main import main
try:
    main(sys.argv[2:])
except SystemExit as e:
    code = e.code
# main.leave ends the process with os._exit, which would skip an atexit handler: a run must register none
with open(sys.argv[1], "w") as f:
    f.write(f"{code} {atexit._ncallbacks()}\\n" + "\\n".join(sorted(sys.modules)))
"""

# Each costs milliseconds of every run here (python -X importtime), and the start path needs none of them.
HEAVY = ("click", "dataclasses", "inspect", "ast", "decimal", "tempfile", "random", "psutil", "pyroute2",
         "minicontainer.cli", "minicontainer.security.seccomp", "minicontainer.network.netlink",
         "typing", "platform", "threading", "prctl", "socket", "minicontainer.volumes")
# (minicontainer.network.store is allowed: it is how a run's leases are found once a network exists)


def test_a_real_run_imports_none_of_the_heavy_modules(tmp_path, mc_home):
    out = tmp_path / "modules.txt"
    args = ["run", "--rm", "-m", "32m", "--pids-limit", "16", "mini", "/bin/true"]
    # As on a host where a network was ever made: the end of every run then
    # reads the network store for the container's leases (runtime.release_network).
    networks = Path(mc_home) / "networks"
    made = not networks.exists()
    networks.mkdir(mode=0o700, exist_ok=True)
    try:
        # twice: the first run may fill the seccomp cache (security/seccomp_cache.py), as any first run does
        for _ in range(2):
            subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], check=True, timeout=120,
                           capture_output=True)
    finally:
        if made:
            shutil.rmtree(networks)  # with the store's lock file, which the runs made
    code, *modules = out.read_text().split("\n")
    assert code == "0 0"  # status 0, no atexit handler
    assert "minicontainer.container.interpreter" in modules  # it did run
    assert [m for m in HEAVY if m in modules] == []
