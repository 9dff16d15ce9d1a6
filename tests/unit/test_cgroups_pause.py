"""commands/pause.py: pause/unpause and the paused() helper against fake
cgroupfs hosts (v1 freezer.state and v2 cgroup.freeze) and a temp state store."""

from __future__ import annotations

import os

import pytest

from minicontainer.cgroups import manager_for
from minicontainer.cgroups.detect import HostCgroups
from minicontainer.cgroups.fakefs import FakeCgroupFs
from minicontainer.cgroups.resources import Resources
from minicontainer.cli import main
from minicontainer.commands.pause import paused, thaw_if_paused
from minicontainer.container.state import ContainerState, StateStore, proc_start_time

pytestmark = pytest.mark.unit


def v1_host(tmp_path, fake):
    mounts = {c: fake.add_v1(tmp_path / "cg" / c, (c,)) for c in ("freezer", "memory", "pids", "devices")}
    return HostCgroups(mode="hybrid", v2_mount=str(tmp_path / "cg" / "unified"), v1_mounts=mounts)


def v2_host(tmp_path, fake):
    mount = fake.add_v2(tmp_path / "cg")
    return HostCgroups(mode="v2", v2_mount=mount, v2_controllers=frozenset(("cpu", "memory", "pids")))


@pytest.fixture(params=["v1", "v2"])
def host(request, tmp_path, monkeypatch):
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    fake = FakeCgroupFs()
    h = (v1_host if request.param == "v1" else v2_host)(tmp_path, fake)

    def manager_of(container_id, cgroup_parent=None):
        return manager_for(container_id, Resources(cgroup_parent=cgroup_parent or None), host=h, fs=fake)

    monkeypatch.setattr("minicontainer.cgroups.manager_of", manager_of)
    store = StateStore()

    def add(name, status="running", cgroup=True):
        st = ContainerState(id=(name * 64)[:64], name=name, image="mini", status=status, pid=4242,
                            runtime_pid=os.getpid() if status == "running" else 0,
                            runtime_start=proc_start_time(os.getpid()))
        store.reserve(st)
        if cgroup:
            m = manager_of(st.id)
            m.create()
            m.add_process(4242)
        return st, manager_of(st.id)

    return add


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_pause_freezes_and_unpause_thaws(host, capsys):
    st, m = host("web")
    assert not paused(st)
    assert run_cli(capsys, "pause", "web") == (0, "web\n", "")
    assert m.is_frozen()
    assert paused(st)
    assert run_cli(capsys, "unpause", "web") == (0, "web\n", "")
    assert not m.is_frozen()
    assert not paused(st)


def test_pause_twice_and_unpause_a_running_one_are_refused(host, capsys):
    host("web")
    run_cli(capsys, "pause", "web")
    code, out, err = run_cli(capsys, "pause", "web")
    assert (code, out) == (125, "")
    assert "container web is already paused" in err and "minicontainer unpause web" in err
    run_cli(capsys, "unpause", "web")
    code, _, err = run_cli(capsys, "unpause", "web")
    assert code == 125 and "container web is not paused" in err


def test_not_running_or_unknown_is_refused_with_a_hint(host, capsys):
    host("old", status="exited", cgroup=False)
    code, out, err = run_cli(capsys, "pause", "old")
    assert (code, out) == (125, "")
    assert "container old is not running (status: exited)" in err
    assert "hint: only a running container can be paused" in err
    code, _, err = run_cli(capsys, "unpause", "nosuch")
    assert code == 125 and "no such container: nosuch" in err


def test_a_container_without_a_cgroup_cannot_be_paused(host, capsys):
    st, _ = host("bare", cgroup=False)
    code, _, err = run_cli(capsys, "pause", "bare")
    assert code == 125 and "container bare has no cgroup" in err
    assert not paused(st)


def test_several_containers_each_reported(host, capsys):
    _, m1 = host("a")
    _, m2 = host("b")
    code, out, err = run_cli(capsys, "pause", "a", "nosuch", "b")
    assert code == 125
    assert out.split() == ["a", "b"]
    assert err.count("\n") == 1 and "nosuch" in err
    assert m1.is_frozen() and m2.is_frozen()


def test_thaw_if_paused_after_a_kill(host):
    st, m = host("web")
    m.freeze()
    thaw_if_paused(st)
    assert not m.is_frozen()
    thaw_if_paused(st)  # not paused: nothing to do, no error
    assert not m.is_frozen()
