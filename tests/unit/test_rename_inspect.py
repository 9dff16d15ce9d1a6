"""rename in the state store (the name link is the truth, even against a
runtime saving an old copy), inspect's container record, and --format
templates with nested fields (no root)."""

from __future__ import annotations

import json
import os

import pytest

from minicontainer.cli import main
from minicontainer.commands.ps import render_template
from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time
from minicontainer.errors import ContainerError, UsageError

pytestmark = pytest.mark.unit


def make(store, name):
    st = ContainerState(id=new_id(), name=name, image="mini", command=["sleep", "9"], status="running",
                        runtime_pid=os.getpid(), runtime_start=proc_start_time(os.getpid()))
    store.reserve(st)
    return st


def test_rename_moves_the_name_link(tmp_path):
    store = StateStore(tmp_path)
    st = make(store, "web")
    store.rename(st, "api")
    assert store.get("api").id == st.id
    assert not (tmp_path / "names" / "web").exists()
    with pytest.raises(ContainerError):
        store.get("web")


def test_rename_to_a_taken_name_is_refused_and_changes_nothing(tmp_path):
    store = StateStore(tmp_path)
    a, b = make(store, "a"), make(store, "b")
    with pytest.raises(ContainerError, match="already in use by container " + b.id[:12]):
        store.rename(a, "b")
    assert store.get("a").id == a.id and store.get("b").id == b.id


def test_a_runtime_saving_its_old_copy_keeps_the_new_name(tmp_path):
    store = StateStore(tmp_path)
    st = make(store, "web")
    runtime_copy = store.get("web")  # what a monitor holds in memory
    store.rename(st, "api")
    runtime_copy.status = "exited"
    store.save(runtime_copy)  # the monitor records the exit
    now = store.get("api")
    assert (now.name, now.status) == ("api", "exited")
    store.remove(runtime_copy)  # --rm with the old copy: both links go
    assert os.listdir(tmp_path / "names") == []


def test_templates_reach_nested_fields_and_print_json():
    info = {"Name": "web", "State": {"Pid": 42, "Running": True}, "Config": {"env": [["A", "1"]]}}
    assert render_template("{{.Name}} {{.State.Pid}} {{.State.Running}}", info) == "web 42 true"
    assert render_template("{{json .Config}}", info) == '{"env": [["A", "1"]]}'
    assert json.loads(render_template("{{json .}}", info)) == info
    with pytest.raises(UsageError, match=r"unknown field \.State\.Nope .*known here: \.Pid, \.Running"):
        render_template("{{.State.Nope}}", info)


def test_inspect_of_a_container_without_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINICONTAINER_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("MINICONTAINER_HOME", str(tmp_path / "home"))
    st = make(StateStore(), "web")
    with pytest.raises(SystemExit) as e:
        main(["inspect", "--format", "{{.Name}} {{.State.Status}} {{.Path}} {{json .Args}}", "web"])
    assert e.value.code == 0
    assert capsys.readouterr().out == 'web running sleep ["9"]\n'
    with pytest.raises(SystemExit) as e:
        main(["inspect", "web", "nothing-by-that-name"])
    out = capsys.readouterr()
    assert e.value.code == 125
    assert [c["Id"] for c in json.loads(out.out)] == [st.id]
    assert "no such container or image: nothing-by-that-name" in out.err
