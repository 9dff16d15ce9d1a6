"""Every command of README's tutorial runs as typed in `mini` (issue 14),
block by block, as marked in README.md (tests/readmetools.py), and prints
what the README shows for it. This tier runs the blocks for every host and
those for cgroup v1; tests/cgroup2/test_readme_tutorial_v2.py runs the v2 ones."""

from __future__ import annotations

import pytest

from readmetools import run_block, tutorial_blocks

pytestmark = [pytest.mark.cgroup1, pytest.mark.usefixtures("clean_host")]

BLOCKS = [b for b in tutorial_blocks() if b.runs and b.cgroup in (None, "v1")]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"README.md:{b.line}")
def test_the_tutorial_block_runs_as_typed(block, clean_host):
    work = clean_host / "work"
    work.mkdir()
    # A store of its own: the blocks build mini, import images and make containers.
    assert run_block(block, work, clean_host / "store") == []
