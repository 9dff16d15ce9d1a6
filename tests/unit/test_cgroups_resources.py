"""cgroups/resources.py: every flag is checked before anything is created (cases 34, 46)."""

from __future__ import annotations

import os
import stat

import pytest

from minicontainer.cgroups.resources import UNLIMITED, Resources, parse_resources
from minicontainer.errors import UsageError

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
TWO_CPUS = frozenset({0, 1})


def _blockdev(major, minor):
    def fake_stat(path):
        if path == "/dev/fake":
            return os.stat_result((stat.S_IFBLK | 0o660, 0, 0, 0, 0, 0, 0, 0, 0, 0), {"st_rdev": os.makedev(major, minor)})
        if path == "/dev/chr":
            return os.stat_result((stat.S_IFCHR | 0o660, 0, 0, 0, 0, 0, 0, 0, 0, 0), {"st_rdev": os.makedev(1, 3)})
        raise FileNotFoundError(2, "No such file or directory", path)

    return fake_stat


def parse(**kw):
    kw.setdefault("cpus_available", TWO_CPUS)
    kw.setdefault("mems_available", frozenset({0}))
    kw.setdefault("stat", _blockdev(8, 0))
    return parse_resources(**kw)


def test_nothing_given_is_empty_and_reads_nothing_from_the_host():
    def boom():
        raise AssertionError("host CPUs must not be read when no CPU flag is given")

    r = parse_resources(cpus_available=boom, mems_available=boom, stat=boom)
    assert r == Resources()
    assert r.is_empty()
    assert Resources(cgroup_parent="lab").is_empty()
    assert not Resources(pids_limit=5).is_empty()
    assert not Resources(device_read_bps=((8, 0, 10),)).is_empty()


def test_all_flags_parse():
    r = parse(memory="64m", memory_swap="128m", memory_reservation="32m", cpus="0.5", cpu_shares="512",
              cpuset_cpus="0-1", cpuset_mems="0", pids_limit="20", device_read_bps=["/dev/fake:1mb"],
              device_write_bps=["/dev/fake:2m"], cgroup_parent="/lab/limits/")
    assert r.memory == 64 * MIB
    assert r.memory_swap == 128 * MIB
    assert r.swap_only == 64 * MIB
    assert r.memory_reservation == 32 * MIB
    assert r.cpus == 500_000_000
    assert r.cpu_quota_us == 50_000
    assert r.cpu_shares == 512
    assert r.cpuset_cpus == (0, 1)
    assert r.cpuset_mems == (0,)
    assert r.pids_limit == 20
    assert r.device_read_bps == ((8, 0, MIB),)
    assert r.device_write_bps == ((8, 0, 2 * MIB),)
    assert r.cgroup_parent == "lab/limits"


def test_ints_from_a_saved_spec_are_accepted():
    r = parse(memory=64 * MIB, cpus=50_000_000, pids_limit=-1, cpu_shares=2)
    assert (r.memory, r.cpus, r.pids_limit, r.cpu_shares) == (64 * MIB, 50_000_000, UNLIMITED, 2)


def test_cpus_005_is_a_5000_us_quota():
    assert parse(cpus="0.05").cpu_quota_us == 5000


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"memory": "abc"}, ["--memory", "'abc'"]),
        ({"memory": ""}, ["--memory", "''"]),
        ({"memory": "%$š"}, ["--memory"]),
        ({"memory": "-1"}, ["--memory", "'-1'"]),
        ({"memory": -5}, ["--memory"]),
        ({"memory": "1m"}, ["--memory", "6 MiB"]),  # too small to start
        ({"memory": "64m", "memory_swap": "abc"}, ["--memory-swap"]),
        ({"memory": "64m", "memory_swap": "32m"}, ["--memory-swap", "smaller than --memory"]),
        ({"memory_swap": "128m"}, ["--memory-swap", "needs --memory"]),
        ({"memory": "64m", "memory_swap": "-2"}, ["--memory-swap"]),
        ({"memory_reservation": "abc"}, ["--memory-reservation"]),
        ({"memory_reservation": "1k"}, ["--memory-reservation"]),
        ({"memory": "64m", "memory_reservation": "128m"}, ["--memory-reservation is larger"]),
        ({"cpus": "abc"}, ["--cpus"]),
        ({"cpus": ""}, ["--cpus"]),
        ({"cpus": "-1"}, ["--cpus"]),
        ({"cpus": "0"}, ["--cpus"]),
        ({"cpus": -3}, ["--cpus"]),
        ({"cpus": "0.005"}, ["--cpus", "minimum quota"]),  # 500 us < the kernel's 1000 us
        ({"cpus": "3"}, ["--cpus", "only 2 CPUs"]),
        ({"cpu_shares": "abc"}, ["--cpu-shares"]),
        ({"cpu_shares": "1"}, ["--cpu-shares"]),
        ({"cpu_shares": "262145"}, ["--cpu-shares"]),
        ({"cpu_shares": "-1"}, ["--cpu-shares"]),
        ({"cpuset_cpus": "abc"}, ["--cpuset-cpus"]),
        ({"cpuset_cpus": ""}, ["--cpuset-cpus"]),
        ({"cpuset_cpus": "0-3"}, ["--cpuset-cpus", "no CPU 2-3"]),  # a CPU the host lacks
        ({"cpuset_mems": "1"}, ["--cpuset-mems", "no memory node 1"]),
        ({"pids_limit": "abc"}, ["--pids-limit"]),
        ({"pids_limit": ""}, ["--pids-limit"]),
        ({"pids_limit": "-2"}, ["--pids-limit"]),
        ({"pids_limit": "0"}, ["--pids-limit", "'0'"]),
        ({"pids_limit": "1.5"}, ["--pids-limit"]),
        ({"device_read_bps": ["/dev/fake"]}, ["--device-read-bps"]),
        ({"device_read_bps": ["/dev/fake:abc"]}, ["--device-read-bps"]),
        ({"device_read_bps": ["/dev/fake:0"]}, ["--device-read-bps"]),
        ({"device_read_bps": ["/dev/missing:1mb"]}, ["--device-read-bps", "/dev/missing"]),
        ({"device_write_bps": ["/dev/chr:1mb"]}, ["--device-write-bps", "not a block device"]),
        ({"device_write_bps": ["sda:1mb"]}, ["--device-write-bps"]),
        ({"cgroup_parent": "../x"}, ["--cgroup-parent"]),
        ({"cgroup_parent": "a/../b"}, ["--cgroup-parent"]),
        ({"cgroup_parent": "a//b"}, ["--cgroup-parent"]),
        ({"cgroup_parent": ""}, ["--cgroup-parent"]),
        ({"cgroup_parent": "/"}, ["--cgroup-parent"]),
        ({"cgroup_parent": "cgroup.procs"}, ["--cgroup-parent"]),
        ({"cgroup_parent": "a b"}, ["--cgroup-parent"]),
        ({"cgroup_parent": "lab\n/x"}, ["--cgroup-parent"]),  # fullmatch: a cgroup directory named "lab\n"
    ],
)
def test_bad_values_are_refused_with_flag_and_hint(kw, words):
    with pytest.raises(UsageError) as exc:
        parse(**kw)
    text = str(exc.value)
    for w in words:
        assert w in text
    assert exc.value.hint, "every refusal says what to do instead"
    assert "\n" not in exc.value.message


def test_memory_swap_special_values():
    assert parse(memory="64m", memory_swap="-1").memory_swap == UNLIMITED
    assert parse(memory="64m", memory_swap="-1").swap_only == UNLIMITED
    # docker-run(1): 0 is "unset"
    assert parse(memory="64m", memory_swap="0").memory_swap is None
    # equal to --memory: no swap at all
    assert parse(memory="64m", memory_swap="64m").swap_only == 0


def test_pids_limit_minus_one_is_unlimited():
    assert parse(pids_limit="-1").pids_limit == UNLIMITED


def test_device_rates_use_major_minor_and_last_one_wins():
    r = parse(device_read_bps=["/dev/fake:1mb", "/dev/fake:3mb"])
    assert r.device_read_bps == ((8, 0, 3 * MIB),)


def test_host_lists_can_be_callables():
    r = parse(cpuset_cpus="3", cpus_available=lambda: {0, 1, 2, 3})
    assert r.cpuset_cpus == (3,)


def test_resources_are_frozen():
    r = Resources(memory=1)
    with pytest.raises(Exception):
        r.memory = 2  # type: ignore[misc]


def test_real_host_lookups_work():
    # The defaults read this machine: CPU 0 and node 0 always exist.
    r = parse_resources(cpuset_cpus="0", cpuset_mems="0", cpus="0.5")
    assert r.cpuset_cpus == (0,) and r.cpuset_mems == (0,)
