"""Run reports: the recorder against a fake cgroup, the series and summary, the HTML page."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from minicontainer import report as R
from minicontainer.errors import UsageError
from minicontainer.report_html import LIMIT_COLOUR, OOM_COLOUR, render

pytestmark = pytest.mark.unit

MiB = 1 << 20


class FakeCgroup:
    """Counters that grow a step per reading, like a container filling its memory."""

    version = "v1"
    path = "/sys/fs/cgroup/memory/minicontainer/abc"

    def __init__(self, oom_at: int | None = None):
        self.reads = 0
        self.oom_at = oom_at
        self.removed = False

    def stats(self):
        self.reads += 1
        n = self.reads
        return {"memory_current": n * 10 * MiB, "memory_peak": n * 10 * MiB, "memory_limit": 64 * MiB,
                "cpus": 0.5, "cpu_usage_usec": n * 50_000, "cpu_throttled_usec": n * 1000, "cpu_nr_throttled": n,
                "pids_current": 3, "pids_limit": 20, "io_read_bytes": 0, "io_write_bytes": 4096}

    def limit_events(self):
        return {"oom_kills": 1 if self.oom_at is not None and self.reads >= self.oom_at else 0, "pids_max_hits": 0}

    def exists(self):
        return not self.removed


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def started(rec, cgroup, clock):
    state = SimpleNamespace(id="ab" * 32, name="web", image="mini", command=["sh", "-c", "tail /dev/zero"])
    from minicontainer.cgroups.resources import parse_resources

    spec = SimpleNamespace(resources=parse_resources(memory="64m", cpus="0.5", pids_limit="20"))
    rec.started(1234, state, spec, cgroup)


def test_recorder_samples_with_timestamps_and_records_the_end(tmp_path):
    clock, cg = Clock(), FakeCgroup(oom_at=4)
    rec = R.Recorder(str(tmp_path / "r.json"), interval=3600, clock=clock)  # the thread never fires here
    started(rec, cg, clock)
    for _ in range(3):
        clock.now += 0.1
        rec.sample()
    clock.now += 0.1
    rec.finished(137, "killed by the OOM killer: memory limit 64 MiB, peak 50 MiB")
    cg.removed = True
    rec.cleaned(None)
    rec.write()
    data = R.load(str(tmp_path / "r.json"))
    assert [s["t"] for s in data["samples"]] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert data["samples"][2]["memory_current"] == 30 * MiB
    assert data["limits"] == {"memory": 64 * MiB, "cpus": 0.5, "pids": 20, "from_cgroup": True}
    assert data["exit"] == {"code": 137, "reason": "oom-kill", "signal": "SIGKILL", "oom_kills": 1,
                            "pids_max_hits": 0, "message": "killed by the OOM killer: memory limit 64 MiB, peak 50 MiB"}
    assert data["cleanup"] == {"ok": True, "cgroup_removed": True, "error": None}
    assert data["container"]["name"] == "web" and data["cgroup"]["version"] == "v1"
    assert R.oom_times(data["samples"]) == [0.3]


def test_the_thread_samples_while_the_container_runs(tmp_path):
    import time

    cg = FakeCgroup()
    rec = R.Recorder(str(tmp_path / "r.json"), interval=0.01)
    started(rec, cg, time.monotonic)
    deadline = time.monotonic() + 10
    while cg.reads < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.finished(0, None)
    n = len(rec.data["samples"])
    assert n >= 5 and rec.data["exit"]["reason"] == "exit"
    time.sleep(0.05)
    assert len(rec.data["samples"]) == n  # finished() stopped the thread
    ts = [s["t"] for s in rec.data["samples"]]
    assert ts == sorted(ts)


def test_a_cleanup_that_failed_is_recorded(tmp_path):
    clock, cg = Clock(), FakeCgroup()
    rec = R.Recorder(str(tmp_path / "r.json"), interval=3600, clock=clock)
    started(rec, cg, clock)
    rec.finished(0, None)
    rec.cleaned("processes 7 survived SIGKILL")
    assert rec.data["cleanup"] == {"ok": False, "cgroup_removed": False, "error": "processes 7 survived SIGKILL"}


def test_without_a_cgroup_nothing_is_sampled(tmp_path):
    rec = R.Recorder(str(tmp_path / "r.json"), interval=3600)
    started(rec, None, Clock())
    rec.finished(0, None)
    rec.cleaned(None)
    assert rec.data["samples"] == [] and rec.data["cleanup"]["ok"]
    assert "no cgroup" in R.summary(rec.data)


@pytest.mark.parametrize("code,oom,pids,reason", [
    (0, 0, 0, "exit"), (1, 0, 3, "pids-limit"), (137, 1, 0, "oom-kill"), (137, 0, 0, "signal"),
    (143, 1, 0, "signal"), (0, 1, 0, "exit"),
])
def test_exit_reason(code, oom, pids, reason):
    assert R.exit_reason(code, oom_kills=oom, pids_max_hits=pids) == reason


def test_cpu_series_is_a_rate_between_samples():
    samples = [{"t": 0.0, "cpu_usage_usec": 0}, {"t": 0.5, "cpu_usage_usec": 25_000},
               {"t": 1.0, "cpu_usage_usec": None}, {"t": 1.5, "cpu_usage_usec": 525_000}]
    assert R.cpu_series(samples) == [(0.5, 5.0)]


def report_data(**over):
    samples = [{"t": i / 10, "memory_current": i * 8 * MiB, "memory_peak": i * 8 * MiB, "cpu_usage_usec": i * 5000,
                "cpu_throttled_usec": i * 900, "cpu_nr_throttled": i, "pids_current": 1 + i % 3,
                "io_read_bytes": 0, "io_write_bytes": 0, "oom_kills": 1 if i >= 8 else 0, "pids_max_hits": 0}
               for i in range(10)]
    data = {"version": 1, "interval": 0.1, "duration": 0.9, "samples": samples,
            "limits": {"memory": 64 * MiB, "cpus": 0.05, "pids": 20},
            "namespaces": {"pid": {"container": "pid:[2]", "host": "pid:[1]", "new": True},
                           "user": {"container": "user:[1]", "host": "user:[1]", "new": False}},
            "cgroup": {"version": "v2", "path": "/sys/fs/cgroup/minicontainer/x"},
            "container": {"id": "c" * 64, "name": "oom", "image": "mini", "command": ["tail", "/dev/zero"]},
            "exit": {"code": 137, "reason": "oom-kill", "signal": "SIGKILL", "oom_kills": 1, "pids_max_hits": 0,
                     "message": "killed by the OOM killer: memory limit 64 MiB, peak 64 MiB"},
            "cleanup": {"ok": True, "cgroup_removed": True, "error": None}}
    data.update(over)
    return data


def test_summary_names_each_limit_and_the_end():
    text = R.summary(report_data())
    assert "exit code 137: killed by the OOM killer: memory limit 64 MiB, peak 64 MiB" in text
    assert "memory: peak 72 MiB of limit 64 MiB" in text
    assert "cpu: average 5.0% of one CPU, max 5.0%; limit 5% (--cpus 0.05); throttled 0.01 s in 9 periods" in text
    assert "pids: peak 3 of limit 20" in text
    assert "namespaces: new pid; shared with the host user" in text
    assert text.endswith("cleanup: ok, cgroup removed")


def test_load_refuses_what_is_not_a_report(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    (tmp_path / "y.json").write_text("not json")
    for name in ("x.json", "y.json", "missing.json"):
        with pytest.raises(UsageError):
            R.load(str(tmp_path / name))


def test_check_target_refuses_a_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        R.check_target(str(tmp_path / "no" / "r.json"))
    with pytest.raises(UsageError, match="is a directory"):
        R.check_target(str(tmp_path))
    assert R.check_target(str(tmp_path / "r.json")) == str(tmp_path / "r.json")


def test_html_is_self_contained_with_the_limits_and_the_oom_drawn():
    page = render(report_data())
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=", page)  # nothing to fetch
    assert page.count("<svg") == 3
    assert page.count('class="limit"') == 3 and f'stroke="{LIMIT_COLOUR}"' in page
    assert page.count('class="oom"') == 1 and f'stroke="{OOM_COLOUR}"' in page and "OOM kill at 0.8s" in page
    assert "limit 64 MiB (-m)" in page and "limit 5% (--cpus 0.05)" in page and "limit 20 (--pids-limit)" in page


def test_html_limit_line_sits_at_the_limit_value():
    from minicontainer.report_html import BOTTOM, HEIGHT, TOP

    page = render(report_data())
    memory_svg = page.split("<svg")[1]
    y = int(re.search(r'class="limit"[^>]*y1="(\d+)"', memory_svg).group(1))
    peak = max(9 * 8 * MiB, 64 * MiB)
    h = HEIGHT - TOP - BOTTOM
    assert y == round(TOP + h - 64 * MiB / (peak * 1.15) * h)


def test_html_without_limits_draws_no_limit_line():
    page = render(report_data(limits={"memory": None, "cpus": None, "pids": None}))
    assert 'class="limit"' not in page and page.count("<small>(no limit)</small>") == 3


def test_report_command_prints_and_writes_html(tmp_path):
    from click.testing import CliRunner

    from minicontainer.cli import cli

    (tmp_path / "r.json").write_text(json.dumps(report_data()))
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "memory: peak" in result.output
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
