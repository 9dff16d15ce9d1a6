"""The Python API: keyword arguments become the run command's own flags and spec."""

from __future__ import annotations

import pytest

import minicontainer
from minicontainer import api
from minicontainer.errors import UsageError

pytestmark = pytest.mark.unit


def test_keywords_become_the_run_commands_flags():
    flags = api._flags({"memory": "64m", "pids_limit": 20, "read_only": True, "remove": False,
                        "env": ["A=1", "B=2"], "volume": "/tmp:/data", "name": None})
    assert flags == ["--memory=64m", "--pids-limit=20", "--read-only", "--env=A=1", "--env=B=2",
                     "--volume=/tmp:/data"]


@pytest.mark.parametrize("bad,match", [({"memroy": "64m"}, "unknown argument memroy="),
                                       ({"dry_run": True}, "plan"), ({"report_path": "x"}, "report")])
def test_unknown_or_reserved_keywords_are_refused(bad, match):
    with pytest.raises(UsageError, match=match):
        api._flags(bad)


def test_bad_values_raise_the_clis_error_before_anything_runs(mc_dirs):
    with pytest.raises(UsageError, match="invalid --memory value 'abc'"):
        minicontainer.run("mini", ["true"], memory="abc")
    with pytest.raises(UsageError, match="argv must be a list"):
        minicontainer.run("mini", "echo hi")
    home, root = mc_dirs
    assert not home.exists() and not root.exists()


def test_plan_gives_the_steps_as_data(mc_dirs):
    from minicontainer.container import steps as S

    p = minicontainer.plan("mini", ["sh", "-c", "echo hi"], memory="64m", pids_limit=20, hostname="box")
    kinds = [type(s) for s in p.steps]
    assert S.Fork in kinds and kinds[-1] is S.Exec
    cgroup_files = " ".join(s.write.file for s in p.steps if isinstance(s, S.CgroupStep))
    assert "memory" in cgroup_files and "pids" in cgroup_files
    assert p.steps[-1].argv == ("sh", "-c", "echo hi")
    assert "box" in p.render()  # the same text as --dry-run


def test_the_api_is_not_loaded_by_the_package():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, minicontainer.cli; print('minicontainer.api' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
