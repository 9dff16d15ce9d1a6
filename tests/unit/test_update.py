"""update: new limits from the old ones and the flags, written live through
CgroupManager.update on a fake cgroupfs (v1 and v2, no root)."""

from __future__ import annotations

import errno
import os

import pytest

from minicontainer.cgroups import manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs, _err
from minicontainer.cgroups.resources import parse_resources
from minicontainer.cgroups.v1 import CONTROLLERS
from minicontainer.commands.update import merged_resources
from minicontainer.errors import CgroupError, UsageError

pytestmark = pytest.mark.unit

MIB = 1 << 20


def res(**kw):
    kw.setdefault("cpus_available", {0, 1})
    kw.setdefault("mems_available", {0})
    return parse_resources(**kw)


class BusyMemory(FakeCgroupFs):
    """The kernel's v1 answer to a memory limit below what cannot be reclaimed: EBUSY."""

    in_use = 32 * MIB

    def write(self, path, value):
        if os.path.basename(path) == "memory.limit_in_bytes" and int(value) < self.in_use:
            raise _err(path, value, errno.EBUSY)
        super().write(path, value)


def v1(tmp_path, resources, fake=None):
    fake = fake or FakeCgroupFs()
    mounts = {c: fake.add_v1(tmp_path / "cg" / c, (c,)) for c in CONTROLLERS}
    host = HostCgroups(mode="hybrid", v2_mount=str(tmp_path / "cg" / "unified"), v1_mounts=mounts)
    m = manager_for("c1", resources, host=host, fs=fake)
    m.create()
    m.apply()
    return m, {c: f"{mounts[c]}/minicontainer/c1" for c in CONTROLLERS}


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_merged_resources_keep_what_is_not_given():
    old = res(memory="64m", cpus="0.5", cpuset_cpus="0-1", pids_limit="20", cgroup_parent="lab")
    new = merged_resources(old, {"memory": "128m"})
    assert new.memory == 128 * MIB
    assert (new.cpus, new.cpuset_cpus, new.pids_limit, new.cgroup_parent) == (old.cpus, (0, 1), 20, "lab")
    assert merged_resources(None, {"pids_limit": "-1"}).pids_limit == -1


def test_merged_resources_are_checked_like_run_flags():
    with pytest.raises(UsageError, match="--cpus"):
        merged_resources(None, {"cpus": "abc"})
    with pytest.raises(UsageError, match="smaller than --memory"):
        merged_resources(res(memory="64m", memory_swap="128m"), {"memory": "256m"})


def test_v1_growing_memory_raises_memory_plus_swap_first(tmp_path):
    m, leaf = v1(tmp_path, res(memory="64m"))
    assert read(f"{leaf['memory']}/memory.memsw.limit_in_bytes") == str(128 * MIB)
    # 256m above the old memsw (128m): in the planned order the kernel (and the fake) say EINVAL
    done = m.update(res(memory="256m"))
    assert [os.path.basename(s.file) for s in done] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    assert read(f"{leaf['memory']}/memory.limit_in_bytes") == str(256 * MIB)
    assert read(f"{leaf['memory']}/memory.memsw.limit_in_bytes") == str(512 * MIB)


def test_v1_shrinking_memory_writes_memory_first_and_only_what_changes(tmp_path):
    m, leaf = v1(tmp_path, res(memory="256m", cpus="0.5"))
    done = m.update(res(memory="64m", cpus="0.5", pids_limit="10"))
    assert [os.path.basename(s.file) for s in done] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                                        "pids.max"]
    assert read(f"{leaf['pids']}/pids.max") == "10"
    assert m.resources.memory == 64 * MIB


def test_a_refused_write_is_explained_and_undone(tmp_path):
    m, leaf = v1(tmp_path, res(memory="64m"), fake=BusyMemory())
    with open(f"{leaf['memory']}/memory.usage_in_bytes", "w") as f:
        f.write(str(33 * MIB))
    with pytest.raises(CgroupError) as e:
        m.update(res(memory="16m", pids_limit="5"))
    text = str(e.value)
    assert "--memory: the kernel refused memory.limit_in_bytes = 16777216: Device or resource busy" in text
    assert "it uses 33 MiB" in text
    # the limits are what they were: nothing half-changed
    assert read(f"{leaf['memory']}/memory.limit_in_bytes") == str(64 * MIB)
    assert read(f"{leaf['memory']}/memory.memsw.limit_in_bytes") == str(128 * MIB)
    assert m.resources.memory == 64 * MIB


def test_a_refusal_after_other_writes_puts_those_back(tmp_path):
    fake = BusyMemory()
    m, leaf = v1(tmp_path, res(memory="64m", pids_limit="50"), fake=fake)
    before = read(f"{leaf['cpu']}/cpu.cfs_quota_us")
    # memory and cpu are written, then pids.max (planned last) is refused
    fake.in_use = 0
    original = fake.write

    def refuse_pids(path, value):
        if path.endswith("pids.max"):
            raise _err(path, value, errno.EINVAL)
        original(path, value)

    fake.write = refuse_pids
    with pytest.raises(CgroupError, match="pids.max"):
        m.update(res(memory="32m", cpus="0.5", pids_limit="5"))
    assert read(f"{leaf['memory']}/memory.limit_in_bytes") == str(64 * MIB)
    assert read(f"{leaf['memory']}/memory.memsw.limit_in_bytes") == str(128 * MIB)
    assert read(f"{leaf['cpu']}/cpu.cfs_quota_us") == before
    assert read(f"{leaf['pids']}/pids.max") == "50"


def test_v2_update_writes_the_unified_files(tmp_path):
    fake = FakeCgroupFs()
    mount = fake.add_v2(tmp_path / "cg", ("cpuset", "cpu", "io", "memory", "pids"))
    host = HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("cpuset", "cpu", "io", "memory", "pids")))
    m = manager_for("c1", res(), host=host, fs=fake)
    m.create()
    m.apply()
    m.update(res(memory="16m", cpus="0.25", cpu_shares="512", cpuset_cpus="1"))
    leaf = f"{mount}/minicontainer/c1"
    assert read(f"{leaf}/memory.max") == str(16 * MIB)
    assert read(f"{leaf}/cpu.max") == "25000 100000"
    assert read(f"{leaf}/cpu.weight") == "20"
    assert read(f"{leaf}/cpuset.cpus") == "1"
