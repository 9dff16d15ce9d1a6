"""podman --uidmap with minicontainer-runc: podman (as root) chowns the image
into the range and writes a config.json with a user namespace and its
linux.uidMappings/gidMappings; the runtime writes those maps (runc's order)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_engines import ULIMITS, podman  # noqa: F401 - the module's podman fixture, shared

pytestmark = pytest.mark.oci

START = 1_500_000_000
COUNT = 65536
UIDMAP = ("--uidmap", f"0:{START}:{COUNT}", "--gidmap", f"0:{START}:{COUNT}")


def test_podman_uidmap_is_root_inside_and_the_range_outside(podman):  # noqa: F811
    out = podman("run", "--rm", *ULIMITS, *UIDMAP, "localhost/mini", "sh", "-c",
                 "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox").stdout.split("\n")
    assert out[0] == "0" and out[1].split() == ["0", str(START), str(COUNT)] and out[2] == "0"
    trace = (podman.dir / "trace.log").read_text()
    assert "uidMappings" in trace  # podman asked for the user namespace in config.json
    podman("run", "-d", "--name", "pu", *ULIMITS, *UIDMAP, "localhost/mini", "sleep", "300")
    try:
        pid = podman("inspect", "-f", "{{.State.Pid}}", "pu").stdout.strip()
        uids = next(line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:"))
        assert uids == [str(START)] * 4
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert podman("exec", "pu", "id", "-u").stdout == "0\n"
    finally:
        podman("rm", "-f", "-t", "0", "pu", check=None)
