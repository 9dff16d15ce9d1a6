"""minicontainer inside a privileged docker container: the course's setup.

What differs from a plain host (see test_docker_env.py for the facts):
the root filesystem is docker's overlayfs, which overlayfs refuses as an
upper dir, so a container store there must fall back to copying; and the
cgroup mounts start at docker's own cgroup for this container.
"""

from __future__ import annotations

import os
import shutil

import pytest

from helpers import container_cgroups, mc

pytestmark = pytest.mark.docker


@pytest.fixture
def store_on_docker_root(tmp_path):
    """An image store on docker's overlay root (not the /tmp tmpfs)."""
    home = "/var/lib/minicontainer-on-overlay"
    shutil.rmtree(home, ignore_errors=True)
    env = {"MINICONTAINER_HOME": home, "MINICONTAINER_ROOT": str(tmp_path / "run")}
    yield env
    shutil.rmtree(home, ignore_errors=True)


def test_a_store_on_docker_overlay_falls_back_to_a_copy(store_on_docker_root):
    proc = mc("run", "--rm", "--hostname", "nested", "mini", "/bin/sh", "-c", "echo $$; hostname; echo x > /root/f; cat /root/f",
              env=store_on_docker_root, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "nested", "x"]
    assert "copying the image" in proc.stderr
    assert os.listdir(os.path.join(store_on_docker_root["MINICONTAINER_HOME"], "containers")) == []


def test_limits_work_inside_docker(tmp_path):
    env = {"MINICONTAINER_HOME": str(tmp_path / "home"), "MINICONTAINER_ROOT": str(tmp_path / "run")}
    before = container_cgroups()
    proc = mc("run", "--rm", "-m", "64m", "--pids-limit", "20", "mini", "/bin/sh", "-c", "echo ok", env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    proc = mc("run", "--rm", "-m", "64m", "mini", "tail", "/dev/zero", env=env, timeout=180)
    assert proc.returncode == 137
    assert "killed by the OOM killer" in proc.stderr
    assert container_cgroups() == before
