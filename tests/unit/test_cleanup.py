"""Cleaning up after containers: ``rm -f`` and the dead-runtime sweep (issue 11, items 4 and 9).

``rm -f`` must never signal a bare pid from state.json: a container still
being set up has pid 0, and kill(0, SIGKILL) is the caller's own process
group. The sweep must finish where there is no usable cgroupfs. The signals
here go to ``sleep`` processes of the test's own, in sessions of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from minicontainer.commands import rm
from minicontainer.container import runtime
from minicontainer.container.state import ContainerState, StateStore, new_id, proc_start_time
from minicontainer.errors import CgroupError, ContainerError

pytestmark = pytest.mark.unit


@pytest.fixture
def sleeper():
    procs = []

    def start():
        p = subprocess.Popen(["sleep", "60"], start_new_session=True)
        procs.append(p)
        deadline = time.monotonic() + 5
        while not proc_start_time(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def no_cgroups(monkeypatch):
    """A host without a usable cgroup filesystem."""
    def refuse(*a, **kw):
        raise CgroupError("this host has no cgroup filesystem mounted")

    monkeypatch.setattr("minicontainer.cgroups.manager_of", refuse)
    monkeypatch.setattr("minicontainer.cgroups.manager_for", refuse)


@pytest.fixture
def signals(monkeypatch):
    """Record every signal rm sends; deliver only to pids above 1 (a kill(0)
    would hit the test's own process group)."""
    sent = []
    real_kill, real_pidfd_send = os.kill, signal.pidfd_send_signal

    def kill(pid, sig):
        sent.append((pid, sig))
        if pid > 1:
            real_kill(pid, sig)

    def pidfd_send_signal(fd, sig, *a):
        sent.append((f"pidfd:{os.readlink(f'/proc/self/fd/{fd}')}", sig))
        real_pidfd_send(fd, sig, *a)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(signal, "pidfd_send_signal", pidfd_send_signal)
    return sent


def _state(store, **kw) -> ContainerState:
    st = ContainerState(id=new_id(), name=kw.pop("name", "web"), image="mini", **kw)
    store.reserve(st)
    return st


def test_rm_force_of_a_container_being_set_up_never_signals_pid_0(tmp_path, sleeper, signals, no_cgroups):
    # "created": the runtime is alive and has not started PID 1 yet, so state.json says pid 0
    runtime_proc = sleeper()
    store = StateStore(tmp_path)
    _state(store, status="created", pid=0, runtime_pid=runtime_proc.pid,
           runtime_start=proc_start_time(runtime_proc.pid))
    rm.remove_container(store, store.get("web"), force=True)
    assert not [pid for pid, _ in signals if isinstance(pid, int) and pid <= 1], signals
    # the runtime, checked against its start time, is asked to stop its setup
    assert [sig for _, sig in signals] == [signal.SIGTERM]
    runtime_proc.wait(timeout=5)
    with pytest.raises(ContainerError):
        store.get("web")


def test_a_pid_is_signalled_only_while_it_is_the_recorded_process(sleeper):
    p = sleeper()
    start = proc_start_time(p.pid)
    assert not rm.signal_checked(0, start, signal.SIGKILL) and not rm.signal_checked(1, start, signal.SIGKILL)
    assert not rm.signal_checked(p.pid, 0, signal.SIGKILL)  # start time unknown: never
    assert not rm.signal_checked(p.pid, start + 1, signal.SIGKILL)  # the pid is another process now
    assert p.poll() is None
    assert rm.signal_checked(p.pid, start, signal.SIGKILL)
    assert p.wait(timeout=5) == -signal.SIGKILL
    assert not rm.signal_checked(p.pid, start, signal.SIGKILL)  # gone (a zombie, then reaped)


def test_rm_force_kills_pid_1_through_its_pidfd(tmp_path, sleeper, signals, no_cgroups):
    runtime_proc, pid1 = sleeper(), sleeper()
    store = StateStore(tmp_path)
    _state(store, status="running", pid=pid1.pid, pid_start=proc_start_time(pid1.pid),
           runtime_pid=runtime_proc.pid, runtime_start=proc_start_time(runtime_proc.pid))

    def runtime_exits_when_pid1_dies():
        pid1.wait()
        runtime_proc.kill()

    threading.Thread(target=runtime_exits_when_pid1_dies, daemon=True).start()
    rm.remove_container(store, store.get("web"), force=True)
    assert ("pidfd:anon_inode:[pidfd]", signal.SIGKILL) in signals
    assert pid1.wait(timeout=5) == -signal.SIGKILL
    assert not [s for s in signals if s[1] == signal.SIGTERM]  # PID 1 was reached: the runtime is not asked


# -- the sweep -------------------------------------------------------------------------


def _dead(store, tmp_path, *, name="web", remove=True):
    layer = tmp_path / f"layer-{name}"
    layer.mkdir()
    (layer / "upper").mkdir()
    # a runtime pid that is gone: ours, with a start time it never had
    st = _state(store, name=name, status="running", pid=12345, runtime_pid=os.getpid(), runtime_start=1,
                layer_dir=str(layer), remove=remove)
    return st, layer


def test_the_sweep_finishes_where_there_is_no_usable_cgroupfs(tmp_path, monkeypatch, no_cgroups):
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 0)
    store = StateStore(tmp_path / "run")
    st, layer = _dead(store, tmp_path)
    kept, kept_layer = _dead(store, tmp_path, name="kept", remove=False)
    runtime.sweep_dead_runtimes(store)
    assert not layer.exists()
    with pytest.raises(ContainerError):
        store.get(st.id)
    # without --rm it stays listed, as exited, once, with its layer (rm removes both)
    assert store.get(kept.id).status == "exited" and kept_layer.exists()
    assert store.dead_runtimes() == []


class _Manager:
    def __init__(self, alive):
        self.alive = alive

    def destroy(self):
        raise CgroupError("processes 7 in /sys/fs/cgroup/x survived SIGKILL for 10s")

    def procs(self):
        return [7] if self.alive else []


@pytest.mark.parametrize("alive", [True, False])
def test_the_sweep_waits_only_for_processes_that_are_still_alive(tmp_path, monkeypatch, capsys, alive):
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 0)
    monkeypatch.setattr("minicontainer.cgroups.manager_of", lambda cid, parent=None: _Manager(alive))
    store = StateStore(tmp_path / "run")
    st, layer = _dead(store, tmp_path)
    runtime.sweep_dead_runtimes(store)
    if alive:  # next time
        assert layer.exists() and store.get(st.id).id == st.id
    else:  # the cgroup is refused, the rest goes, and the user is told
        assert not layer.exists()
        assert "its cgroup could not be removed" in capsys.readouterr().err
