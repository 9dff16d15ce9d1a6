"""commands/stats.py: the pure part (readings -> samples -> table / JSON), and the
command against a fake cgroupfs and a temp state store (no root)."""

from __future__ import annotations

import json
import os

import pytest

from minicontainer.cgroups import manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import Resources, parse_resources
from minicontainer.cli import main
from minicontainer.commands import stats as S
from minicontainer.container.state import ContainerState, StateStore, proc_start_time

pytestmark = pytest.mark.unit

MIB = 1 << 20
CID = "a" * 64


def reading(at, **counters):
    return S.Reading(at=at, counters=counters)


# --- CPU % ----------------------------------------------------------------------


def test_cpu_percent_is_cpu_time_over_wall_time():
    # 0.1 s of CPU in 0.5 s of wall time: 20% of one CPU (what --cpus 0.2 allows)
    assert S.cpu_percent(reading(10.0, cpu_usage_usec=1_000_000), reading(10.5, cpu_usage_usec=1_100_000)) == \
        pytest.approx(20.0)


def test_cpu_percent_above_100_means_more_than_one_cpu():
    assert S.cpu_percent(reading(0.0, cpu_usage_usec=0), reading(1.0, cpu_usage_usec=2_000_000)) == \
        pytest.approx(200.0)


@pytest.mark.parametrize("before,after", [
    (reading(1.0, cpu_usage_usec=5), reading(1.0, cpu_usage_usec=9)),  # no time passed
    (reading(1.0), reading(2.0, cpu_usage_usec=9)),  # no counter (no cpuacct)
    (reading(1.0, cpu_usage_usec=None), reading(2.0, cpu_usage_usec=None)),
])
def test_cpu_percent_unknown(before, after):
    assert S.cpu_percent(before, after) is None


def test_cpu_percent_never_negative():
    # a counter that went back (a new cgroup with the same name) is not -50%
    assert S.cpu_percent(reading(0.0, cpu_usage_usec=900), reading(1.0, cpu_usage_usec=100)) == 0.0


# --- memory -------------------------------------------------------------------


def test_memory_usage_leaves_out_inactive_file_cache():
    assert S.memory_usage({"memory_current": 10 * MIB, "memory_inactive_file": 4 * MIB}) == 6 * MIB
    assert S.memory_usage({"memory_current": 10 * MIB, "memory_inactive_file": None}) == 10 * MIB
    assert S.memory_usage({"memory_current": MIB, "memory_inactive_file": 2 * MIB}) == 0
    assert S.memory_usage({"memory_current": None}) is None


def test_memory_percent_of_the_limit_or_of_the_host():
    limited = S.make_sample(CID, "a", reading(0, memory_current=16 * MIB, memory_limit=64 * MIB),
                            reading(1, memory_current=16 * MIB, memory_limit=64 * MIB), host_memory=1024 * MIB)
    assert limited.memory_percent == pytest.approx(25.0)
    assert limited.memory_limit == 64 * MIB
    free = S.make_sample(CID, "a", reading(0), reading(1, memory_current=16 * MIB, memory_limit=None),
                         host_memory=1024 * MIB)
    assert free.memory_limit is None  # JSON says unlimited...
    assert free.memory_percent == pytest.approx(1.5625)  # ...and the percentage is of the host's memory
    unknown = S.make_sample(CID, "a", reading(0), reading(1, memory_current=16 * MIB), host_memory=None)
    assert unknown.memory_percent is None


def test_host_memory_from_meminfo():
    assert S.host_memory_bytes("MemTotal:       16318652 kB\nMemFree:  1 kB\n") == 16318652 * 1024
    assert S.host_memory_bytes("MemFree: 1 kB\n") is None
    assert S.host_memory_bytes("MemTotal: lots kB\n") is None


# --- text -----------------------------------------------------------------------


@pytest.mark.parametrize("usec,text", [
    (None, "--"), (0, "0s"), (1_520_000, "1.52s"), (500_000, "0.5s"), (2_000_000, "2s"),
    (125_000_000, "2m5s"), (3_725_000_000, "1h2m"),
])
def test_format_duration(usec, text):
    assert S.format_duration(usec) == text


def full_sample(**over):
    values = dict(id=CID, name="web", cpu_percent=19.8765, cpus=0.2, cpu_throttled_usec=1_520_000,
                  memory_usage=16 * MIB, memory_limit=64 * MIB, memory_percent=25.0, memory_peak=80 * MIB,
                  pids_current=3, pids_limit=20, io_read_bytes=4096, io_write_bytes=8 * MIB)
    values.update(over)
    return S.Sample(**values)


def test_row_shows_usage_against_each_limit():
    assert S.row(full_sample(), host_memory=None) == (
        "aaaaaaaaaaaa", "web", "19.88% / 20%", "16 MiB / 64 MiB", "25.00%", "80 MiB", "1.52s",
        "4 KiB / 8 MiB", "3 / 20",
    )


def test_row_without_limits_or_counters():
    s = full_sample(cpu_percent=None, cpus=None, memory_limit=None, memory_percent=None, pids_limit=None,
                    pids_current=None, cpu_throttled_usec=None, io_read_bytes=None, io_write_bytes=None,
                    memory_peak=None)
    r = S.row(s, host_memory=2048 * MIB)
    assert r[2] == "--"  # CPU %: no limit shown
    assert r[3] == "16 MiB / 2 GiB"  # docker shows the host's memory as the limit
    assert r[4:] == ("--", "--", "--", "-- / --", "--")


def test_table_columns_line_up():
    text = S.format_table([full_sample(), full_sample(id="b" * 64, name="a-much-longer-name", pids_limit=None)],
                          host_memory=None)
    lines = text.splitlines()
    assert lines[0].split("   ")[0] == "CONTAINER ID"
    for col in ("NAME", "CPU % / LIMIT", "MEM USAGE / LIMIT", "MEM %", "MEM PEAK", "THROTTLED", "BLOCK I/O", "PIDS"):
        assert col in lines[0]
    # every column starts at the same offset in every row
    start = lines[0].index("CPU %")
    assert lines[1][start:].startswith("19.88%") and lines[2][start:].startswith("19.88%")
    assert lines[2].split()[-1] == "3"


def test_table_is_just_the_header_when_nothing_runs():
    assert S.format_table([], host_memory=None).split("   ")[:2] == ["CONTAINER ID", "NAME"]
    assert len(S.format_table([], host_memory=None).splitlines()) == 1


def test_json_has_raw_numbers_and_rounded_percentages():
    out = json.loads(S.to_json([full_sample()]))
    assert out == [{
        "id": CID, "name": "web", "cpu_percent": 19.88, "cpus": 0.2, "cpu_throttled_usec": 1_520_000,
        "memory_usage": 16 * MIB, "memory_limit": 64 * MIB, "memory_percent": 25.0, "memory_peak": 80 * MIB,
        "pids_current": 3, "pids_limit": 20, "io_read_bytes": 4096, "io_write_bytes": 8 * MIB,
    }]
    assert json.loads(S.to_json([])) == []


# --- the command, on a fake cgroupfs ------------------------------------------------


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A temp state root, a fake v2 cgroupfs, and manager_of pointed at it."""
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    fake = FakeCgroupFs()
    mount = fake.add_v2(tmp_path / "cg")
    h = HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("cpu", "cpuset", "io", "memory", "pids")))

    def manager_of(container_id, cgroup_parent=None):
        return manager_for(container_id, Resources(cgroup_parent=cgroup_parent or None), host=h, fs=fake)

    monkeypatch.setattr("minicontainer.cgroups.manager_of", manager_of)
    monkeypatch.setattr(S, "FIRST_GAP", 0.01)
    store = StateStore()

    def add(name, status="running", **limits):
        cid = (name * 64)[:64]
        st = ContainerState(id=cid, name=name, image="mini", status=status, pid=os.getpid(),
                            runtime_pid=os.getpid() if status == "running" else 0,
                            runtime_start=proc_start_time(os.getpid()), created=1.0)
        store.reserve(st)
        if status == "running":
            m = manager_for(cid, parse_resources(cpus_available={0, 1}, **limits), host=h, fs=fake)
            m.create()
            m.apply()
            m.add_process(os.getpid() + 100000 + len(store.list()))  # a pid that is in no real use
        return st

    return add, fake


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_json_of_one_container_shows_its_limits(host, capsys):
    add, _ = host
    add("web", memory="64m", pids_limit="20", cpus="0.5")
    add("other")
    code, out, err = run_cli(capsys, "stats", "--format", "json", "web")
    assert code == 0, err
    (s,) = json.loads(out)
    assert (s["name"], s["memory_limit"], s["pids_limit"], s["cpus"]) == ("web", 64 * MIB, 20, 0.5)
    assert s["cpu_percent"] == 0.0  # the fake's counter does not move


def test_no_stream_without_names_lists_every_running_container(host, capsys):
    add, _ = host
    add("web")
    add("db", pids_limit="5")
    add("old", status="exited")
    code, out, _ = run_cli(capsys, "stats", "--no-stream")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("CONTAINER ID")
    assert sorted(line.split()[1] for line in lines[1:]) == ["db", "web"]
    assert "\033[" not in out  # no screen clearing when not on a terminal


@pytest.mark.parametrize("ref,message", [
    ("nosuch", "no such container: nosuch"),
    ("old", "container old is not running (status: exited)"),
])
def test_unknown_or_exited_container_is_one_line(host, capsys, ref, message):
    add, _ = host
    add("old", status="exited")
    code, out, err = run_cli(capsys, "stats", "--no-stream", ref)
    assert code == 125
    assert out == ""
    assert err.count("\n") == 1 and message in err


def test_streaming_stops_quietly_on_ctrl_c(host, capsys, monkeypatch):
    add, _ = host
    add("web")
    ticks = []

    def sleep(seconds):
        ticks.append(seconds)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(S.time, "sleep", sleep)
    code, out, err = run_cli(capsys, "stats")
    assert code == 0 and err == ""
    assert ticks == [S.FIRST_GAP, S.INTERVAL, S.INTERVAL]
    assert out.count("CONTAINER ID") == 2  # a table per refresh, one after the other


def test_streaming_ends_when_the_named_containers_exit(host, capsys, monkeypatch):
    add, fake = host
    st = add("web")
    store = StateStore()
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 2:  # the container exits during the first refresh interval
            st.status = "exited"
            store.save(st)

    monkeypatch.setattr(S.time, "sleep", sleep)
    code, out, _ = run_cli(capsys, "stats", "web")
    assert code == 0
    tables = [t for t in out.split("\n\n") if t.strip()]
    assert len(tables) == 2
    assert "web" in tables[0] and "web" not in tables[1]


def test_on_a_terminal_each_refresh_clears_the_screen(host, capsys, monkeypatch):
    add, _ = host
    add("web")
    ticks = []

    def sleep(seconds):
        ticks.append(seconds)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(S.time, "sleep", sleep)
    monkeypatch.setattr(S.sys.stdout, "isatty", lambda: True)
    code, out, _ = run_cli(capsys, "stats")
    assert code == 0
    assert out.count(S.CLEAR_SCREEN) == 2
    assert out.startswith(S.CLEAR_SCREEN + "CONTAINER ID")
