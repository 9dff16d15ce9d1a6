"""The pure parts of the lifecycle: the spec codec, the json-file log, docker's
status words, attach's frames and detach keys, signal names."""

from __future__ import annotations

import json

import pytest

from minicontainer.commands.attach import DetachKeys, Frames, parse_detach_keys
from minicontainer.commands.ps import render_template, status_text
from minicontainer.container import config
from minicontainer.container.control import parse_signal
from minicontainer.container.logs import LogWriter, follow, parse_time, read_entries, rfc3339
from minicontainer.container.spec import build_spec
from minicontainer.container.state import ContainerState
from minicontainer.container.watch import frame
from minicontainer.errors import ContainerError, UsageError
from minicontainer.units import human_duration

pytestmark = pytest.mark.unit


def test_the_spec_survives_config_json(tmp_path):
    from minicontainer.cgroups.resources import parse_resources
    from minicontainer.security.config import parse_security

    spec = build_spec("mini", ["sh", "-c", "x"], name="a", env=["A=1"], tmpfs=["/c:size=1m"], init=True,
                      restart="on-failure:2",
                      resources=parse_resources(memory="32m", pids_limit="16"),
                      security=parse_security(ulimit=["nofile=10:20"], cap_add=["NET_ADMIN"], user="1000"))
    config.save_spec(tmp_path, spec)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    assert config.load_spec(tmp_path) == spec


def test_config_json_names_only_our_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"__type__": "os:system", "command": "id"}))
    with pytest.raises(ContainerError, match="does not know"):
        config.load_spec(tmp_path)
    with pytest.raises(ContainerError, match="missing"):
        config.load_spec(tmp_path / "nothing")


def test_log_lines_are_json_file_entries(tmp_path):
    log = LogWriter(tmp_path / "c.log")
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\n")
    log.write("stdout", b"partial")
    log.close()
    entries = read_entries(tmp_path / "c.log")
    assert [(e["stream"], e["log"]) for e in entries] == [
        ("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"), ("stdout", "partial")]
    assert all(e["time"].endswith("Z") and len(e["time"]) == 30 for e in entries)
    assert abs(parse_time(entries[0]["time"]) - parse_time(rfc3339())) < 60
    followed = list(follow(tmp_path / "c.log", 0, lambda: False))
    assert followed == entries


def test_docker_status_words():
    assert human_duration(0.2) == "Less than a second" and human_duration(1) == "1 second"
    assert human_duration(59) == "59 seconds" and human_duration(70) == "About a minute"
    assert human_duration(600) == "10 minutes" and human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours" and human_duration(3 * 86400) == "3 days"
    st = ContainerState(id="x" * 64, name="n", image="mini", status="exited", exit_code=137, finished=100.0)
    assert status_text(st, now=102.0) == "Exited (137) 2 seconds ago"
    assert status_text(ContainerState(id="y", name="n", image="mini")) == "Created"
    restarting = ContainerState(id="z", name="n", image="mini", status="restarting", exit_code=3, finished=100.0)
    assert status_text(restarting, now=101.0) == "Restarting (3) 1 second ago"


def test_format_templates():
    assert render_template("{{.Names}}\\t{{ .Status }}", {"Names": "web", "Status": "Up"}) == "web\tUp"
    with pytest.raises(UsageError, match="unknown field"):
        render_template("{{.Nope}}", {"Names": "web"})


def test_attach_frames_and_detach_keys():
    frames = Frames()
    data = frame("stdout", b"hello") + frame("stderr", b"oops")
    assert list(frames.feed(data[:7])) == []
    assert list(frames.feed(data[7:])) == [(1, b"hello"), (2, b"oops")]
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    with pytest.raises(UsageError):
        parse_detach_keys("ctrl-pq")
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)  # a possible start is held back
    assert keys.feed(b"x") == (b"\x10x", False)  # and let through when it was not
    assert keys.feed(b"\x10\x11") == (b"", True)


def test_signal_names():
    assert parse_signal("KILL") == 9 and parse_signal("sigterm") == 15 and parse_signal("1") == 1
    with pytest.raises(ContainerError):
        parse_signal("NOPE")


def test_stop_of_a_restarting_container_signals_the_new_pid1_or_finds_it_exited(monkeypatch):
    # between two runs there is no PID 1: stop waits for the monitor to come back, then signals the
    # new PID 1 (never the old, gone one), or returns at once if the monitor saw the request first
    from minicontainer.container import control

    seen = iter([ContainerState(id="c", name="c", image="mini", status="restarting", pid=5),
                 ContainerState(id="c", name="c", image="mini", status="created", pid=0),
                 ContainerState(id="c", name="c", image="mini", status="running", pid=77, pid_start=9),
                 ContainerState(id="c", name="c", image="mini", status="exited", pid=77)])
    current = {}

    class Store:
        def request_stop(self, st):
            current["stop"] = True

        def get(self, cid):
            current["st"] = next(seen, current.get("st"))
            return current["st"]

    signalled = []
    monkeypatch.setattr(control, "pid_alive", lambda pid, start: pid == 77)
    monkeypatch.setattr(control, "send_signal", lambda st, sig: signalled.append(st.pid))
    monkeypatch.setattr(control, "_runtime_alive", lambda st: True)
    done = control.stop(Store(), ContainerState(id="c", name="c", image="mini", status="restarting", pid=5), timeout=1)
    assert current["stop"] and signalled == [77] and done.status == "exited"

    monkeypatch.setattr(control, "pid_alive", lambda pid, start: False)
    signalled.clear()
    seen = iter([ContainerState(id="c", name="c", image="mini", status="exited", pid=5)])
    done = control.stop(Store(), ContainerState(id="c", name="c", image="mini", status="restarting", pid=5), timeout=1)
    assert signalled == [] and done.status == "exited"
