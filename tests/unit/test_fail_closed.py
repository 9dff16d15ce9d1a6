"""Fail closed: a security or cgroup layer that cannot be imported stops a run.

Each case runs the CLI in a fresh interpreter where one package is made
unimportable (``sys.modules[name] = None`` makes every import of it raise
ImportError), and expects a refusal: exit 125, one error line, no traceback,
and certainly no container started without that layer.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

SCRIPT = """
import sys
sys.modules[{name!r}] = None
from minicontainer.cli import main
main(["run", "--dry-run", "--rm", *{args!r}, "mini", "/bin/true"])
"""


@pytest.mark.parametrize("name, args", [
    ("minicontainer.security", []),
    ("minicontainer.security.seccomp", []),
    ("minicontainer.cgroups", ["-m", "32m"]),
])
def test_an_unimportable_layer_is_a_refusal(name, args, tmp_path):
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(name=name, args=args)], capture_output=True,
                         text=True, env={"MINICONTAINER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 125, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicontainer: error: "), res.stderr
    assert "Traceback" not in res.stderr
    assert "cannot be loaded, so nothing was started" in lines[0] and name.split(".")[-1] in lines[0]
    assert "exec /bin/true" not in res.stdout + res.stderr  # no plan was printed: nothing ran or would run
