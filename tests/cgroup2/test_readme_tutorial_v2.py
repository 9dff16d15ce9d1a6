"""README's tutorial blocks marked for cgroup v2 (and those for every host),
run as typed in the VM's unified hierarchy (tests/readmetools.py); the v1
ones run in tests/cgroup1/test_readme_tutorial.py."""

from __future__ import annotations

import pytest

from readmetools import run_block, tutorial_blocks

pytestmark = [pytest.mark.cgroup2, pytest.mark.usefixtures("clean_host")]

BLOCKS = [b for b in tutorial_blocks() if b.runs and b.cgroup in (None, "v2")]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"README.md:{b.line}")
def test_the_tutorial_block_runs_as_typed_on_v2(block, clean_host):
    work = clean_host / "work"
    work.mkdir()
    assert run_block(block, work, clean_host / "store") == []
