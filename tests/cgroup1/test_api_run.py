"""minicontainer.run() from Python, for real: output, exit code, reason and report."""

from __future__ import annotations

import pytest

import minicontainer
from minicontainer.errors import MiniError

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]


def test_run_returns_output_exit_code_and_the_oom_reason():
    r = minicontainer.run("mini", ["sh", "-c", "echo hello; exec tail /dev/zero"], memory="64m", pids_limit=20)
    assert r.output == "hello\n"
    assert r.exit_code == 137 and r.reason == "oom-kill"
    assert "killed by the OOM killer" in r.stderr
    assert r.report["limits"]["memory"] == 64 << 20 and r.report["limits"]["pids"] == 20
    assert r.report["samples"] and r.report["cleanup"]["ok"]


def test_run_passes_input_and_exit_codes():
    r = minicontainer.run("mini", ["sh", "-c", "read x; echo got $x; exit 3"], input="abc\n")
    assert (r.output, r.exit_code, r.reason) == ("got abc\n", 3, "exit")


def test_a_missing_image_raises_the_one_line_error():
    with pytest.raises(MiniError, match="no such image: nosuchimage") as e:
        minicontainer.run("nosuchimage", ["true"])
    assert e.value.hint and e.value.exit_code == 125
