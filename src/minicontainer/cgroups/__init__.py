"""Resource limits through cgroups: v2 (unified) and v1 (including hybrid hosts).

Modules, each with one job:

- ``resources.py``  flags -> a validated, frozen ``Resources`` (pure);
- ``detect.py``     which hierarchies the host has, from mountinfo;
- ``base.py``       the manager interface and the steps (``CgroupWrite``);
- ``v2.py``/``v1.py`` the plan and files of each version;
- ``files.py``      the only I/O (``fakefs.py`` is its test double).

The runtime calls, in this order::

    res = parse_resources(memory="64m", pids_limit="20")      # before anything exists
    mgr = manager_for(container_id, res)
    for step in mgr.plan(): print(step.describe())            # --explain
    mgr.create(); mgr.apply()                                 # before the fork, or right after
    mgr.add_process(child_pid)                                # before the child execs
    ...                                                       # wait for the child
    report = mgr.exit_report()                                # "killed by the OOM killer: ..."
    mgr.destroy()                                             # always, failed runs included
"""

from __future__ import annotations

from minicontainer.cgroups.base import CgroupManager, CgroupWrite, format_exit_report
from minicontainer.cgroups.detect import HostCgroups, detect
from minicontainer.cgroups.resources import Resources, parse_resources
from minicontainer.errors import CgroupError

__all__ = [
    "CgroupManager", "CgroupWrite", "HostCgroups", "Resources", "detect", "format_exit_report",
    "manager_for", "manager_of", "parse_resources",
]


def manager_for(container_id: str, resources: Resources | None = None, host: HostCgroups | None = None,
                root: str | None = None, *, fs=None, timeout: float = 10.0) -> CgroupManager:
    """The manager for this host: v2 on a unified host, v1 otherwise.

    A hybrid host gets v1 too: its cgroup2 mount normally has no controllers
    (v1 holds them all, and a controller lives in one hierarchy only).
    ``root`` replaces the host's mount points, for tests: on v2 it *is* the
    mount, on v1 it holds one directory per hierarchy named like the host's
    (``root/memory``, ``root/cpu,cpuacct``...).
    """
    from minicontainer.cgroups.v1 import V1Manager
    from minicontainer.cgroups.v2 import V2Manager

    host = host if host is not None else detect()
    if host.mode == "v2":
        mount = root if root is not None else host.v2_mount
        if root is None and mount in host.read_only:
            raise _read_only(mount)
        return V2Manager(container_id, resources, mount=mount, fs=fs, timeout=timeout)
    if host.mode in ("v1", "hybrid"):
        mounts = dict(host.v1_mounts)
        if root is not None:
            mounts = {c: f"{root.rstrip('/')}/{m.rstrip('/').rsplit('/', 1)[-1]}" for c, m in mounts.items()}
        else:
            for m in set(mounts.values()):
                if m in host.read_only:
                    raise _read_only(m)
        return V1Manager(container_id, resources, mounts=mounts, fs=fs, timeout=timeout)
    raise CgroupError("this host has no cgroup filesystem mounted",
                      "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)")


def manager_of(container_id: str, cgroup_parent: str | None = None) -> CgroupManager:
    """The manager of a container that already exists (for stats, pause, rm).

    Only the cgroup's place matters here (``--cgroup-parent``, saved in the
    container's state): the limits are read back from the files. A saved
    place starting with ``/`` is the container's whole cgroup (an OCI
    bundle's cgroupsPath; a --cgroup-parent is kept without one).
    """
    if cgroup_parent and cgroup_parent.startswith("/"):
        return manager_for(container_id, Resources(cgroup_path=cgroup_parent.strip("/")))
    return manager_for(container_id, Resources(cgroup_parent=cgroup_parent or None))


def _read_only(mount: str) -> CgroupError:
    return CgroupError(f"the cgroup filesystem at {mount} is mounted read-only",
                       "inside Docker, run with --privileged (or --cgroupns=private with a writable cgroup)")
