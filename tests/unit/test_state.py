"""state.py: names are unique, state.json is atomic, a dead runtime means exited."""

from __future__ import annotations

import json
import os

import pytest

from minicontainer.errors import ContainerError
from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time

pytestmark = pytest.mark.unit


def make(store, name="web"):
    st = ContainerState(id=new_id(), name=name, image="mini", runtime_pid=os.getpid(),
                        runtime_start=proc_start_time(os.getpid()), status="running")
    store.reserve(st)
    return st


def test_reserve_save_get_list_remove(tmp_path):
    store = StateStore(tmp_path)
    st = make(store)
    assert store.get("web").id == st.id
    assert store.get(st.id[:6]).name == "web"
    assert [s.name for s in store.list()] == ["web"]
    data = json.loads((tmp_path / "containers" / st.id / "state.json").read_text())
    assert data["name"] == "web" and data["status"] == "running"
    assert oct((tmp_path).stat().st_mode & 0o777) == "0o700"
    store.remove(st)
    assert store.list() == [] and not (tmp_path / "names" / "web").exists()


def test_a_name_is_taken_once(tmp_path):
    store = StateStore(tmp_path)
    make(store)
    with pytest.raises(ContainerError) as exc:
        make(store)
    assert "already in use" in exc.value.message and "minicontainer rm web" in exc.value.hint
    assert len(os.listdir(tmp_path / "containers")) == 1


def test_unknown_and_ambiguous(tmp_path):
    store = StateStore(tmp_path)
    with pytest.raises(ContainerError, match="no such container"):
        store.get("nope")


def test_dead_runtime_means_exited(tmp_path):
    store = StateStore(tmp_path)
    st = make(store)
    st.runtime_start += 1  # as if the pid now belonged to another process
    store.save(st)
    again = store.get("web")
    assert again.status == "exited" and again.exit_code == 137 and "killed" in again.exit_reason


def test_proc_start_time_handles_odd_names_and_missing():
    assert proc_start_time(os.getpid()) > 0
    assert proc_start_time(2**22 + 12345) == 0


def test_zombie_exit_code_is_read_before_the_reap():
    import os
    import time

    from minicontainer.procfs import zombie_exit_code

    pid = os.fork()
    if pid == 0:
        os._exit(3)
    deadline = time.monotonic() + 5
    while zombie_exit_code(pid) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert zombie_exit_code(pid) == 3
    os.waitpid(pid, 0)
    assert zombie_exit_code(pid) is None
