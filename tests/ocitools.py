"""Helpers of the oci tier (tests/oci): the minicontainer-runc binary, the
project's way to install an engine, and the leak check on our own state
roots. Like helpers.py it sits in tests/, on sys.path for every tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The one installed beside the Python running the tests (scripts/setup's venv), not another on PATH;
# MINICONTAINER_TEST_RUNC names another (a wrapper running a work tree's code: engines pass their own
# environment, so PYTHONPATH does not reach the runtime). A `minicontainer` must sit beside it.
_VENV_RUNC = Path(sys.executable).parent / "minicontainer-runc"
RUNC = os.environ.get("MINICONTAINER_TEST_RUNC") or (
    str(_VENV_RUNC) if _VENV_RUNC.exists() else (shutil.which("minicontainer-runc") or str(_VENV_RUNC)))


def apt_install(package: str, binary: str) -> str | None:
    """The project's way to get a tool (scripts/test does the same): apt-get."""
    if shutil.which(binary):
        return shutil.which(binary)
    if os.geteuid() != 0:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0 and shutil.which(binary):
            return shutil.which(binary)
    return shutil.which(binary)


# The state roots the engines' minicontainer-runc calls use (--root), registered by the engine fixtures.
ROOTS: list[Path] = []


def live_containers() -> list[str]:
    """Containers of ours whose process or cgroup is still there. (Not the
    host-wide snapshot of the root tier: other engineers' containers come and
    go on this machine while an engine test runs.)"""
    out = []
    for root in ROOTS:
        for state in (root / "containers").glob("*/state.json"):
            cid = state.parent.name
            proc = subprocess.run([RUNC, "--root", str(root), "state", json_name(state)], capture_output=True,
                                  text=True, timeout=30)
            if proc.returncode == 0 and '"stopped"' not in proc.stdout:
                out.append(f"{root}: {cid} still {proc.stdout.split('status')[1][:14]!r}")
            cg = json.loads(state.read_text()).get("cgroup") or ""  # "/a/b": an OCI cgroupsPath
            rel = cg.strip("/") if cg.startswith("/") else f"{cg or 'minicontainer'}/{cid}"
            if any(Path(d, rel).is_dir() for d in Path("/sys/fs/cgroup").iterdir()):
                out.append(f"{root}: {cid}'s cgroup is left")
    return out


def json_name(state: Path) -> str:
    return json.loads(state.read_text())["name"]
