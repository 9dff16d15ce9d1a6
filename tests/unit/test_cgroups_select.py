"""cgroups.manager_for: which manager a host gets, and what it refuses."""

from __future__ import annotations

import pytest

from minicontainer.cgroups import manager_for
from minicontainer.cgroups.base import check_id
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.v1 import V1Manager
from minicontainer.cgroups.v2 import V2Manager
from minicontainer.errors import CgroupError, UsageError

pytestmark = pytest.mark.unit

HYBRID = HostCgroups(mode="hybrid", v2_mount="/sys/fs/cgroup/unified",
                     v1_mounts={"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                                "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"})


def test_unified_gets_v2_and_hybrid_or_v1_get_v1():
    assert isinstance(manager_for("a", host=HostCgroups(mode="v2", v2_mount="/sys/fs/cgroup")), V2Manager)
    assert isinstance(manager_for("a", host=HYBRID), V1Manager)
    assert isinstance(manager_for("a", host=HostCgroups(mode="v1", v1_mounts=HYBRID.v1_mounts)), V1Manager)


def test_root_replaces_the_mounts_keeping_their_names(tmp_path):
    m = manager_for("a", host=HYBRID, root=str(tmp_path))
    assert sorted(m.leaves()) == sorted([f"{tmp_path}/memory/minicontainer/a", f"{tmp_path}/cpu,cpuacct/minicontainer/a"])
    v2 = manager_for("a", host=HostCgroups(mode="v2", v2_mount="/sys/fs/cgroup"), root=str(tmp_path))
    assert v2.leaves() == [f"{tmp_path}/minicontainer/a"]


def test_no_cgroups_at_all_is_an_error():
    with pytest.raises(CgroupError, match="no cgroup filesystem"):
        manager_for("a", host=HostCgroups(mode="none"))


def test_a_read_only_cgroupfs_is_refused_with_a_hint():
    host = HostCgroups(mode="v2", v2_mount="/sys/fs/cgroup", read_only=frozenset({"/sys/fs/cgroup"}))
    with pytest.raises(CgroupError) as exc:
        manager_for("a", host=host)
    assert "read-only" in exc.value.message and "--privileged" in exc.value.hint


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "../x", "-rf", "x" * 200, "a b", "é"])
def test_ids_that_are_not_one_safe_path_component_are_refused(cid):
    with pytest.raises(UsageError):
        check_id(cid)
    with pytest.raises(UsageError):
        manager_for(cid, host=HYBRID)


def test_the_fake_host_round_trip_leaves_nothing(tmp_path):
    fake = FakeCgroupFs()
    mount = fake.add_v2(tmp_path / "cg")
    m = manager_for("a", host=HostCgroups(mode="v2", v2_mount=mount), fs=fake)
    m.create()
    m.add_process(5)
    m.destroy()
    assert [p.name for p in (tmp_path / "cg").iterdir() if p.is_dir()] == []
