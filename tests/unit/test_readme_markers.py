"""README's tutorial: every console block says whether the tutorial test runs
it (tests/readmetools.py), and the markers parse as that test reads them."""

from __future__ import annotations

import pytest

from readmetools import checked_lines, normalize, tutorial_blocks

pytestmark = pytest.mark.unit


def test_every_tutorial_block_is_marked_run_or_not_run_with_a_reason():
    blocks = tutorial_blocks()
    assert blocks
    unmarked = [b.line for b in blocks if not b.marker]
    assert unmarked == [], f"README.md console blocks without a <!-- tutorial: ... --> marker, at lines {unmarked}"
    assert all(b.commands for b in blocks)
    # most of the tutorial runs; both cgroup versions have their block
    assert sum(b.runs for b in blocks) >= 5
    assert {b.cgroup for b in blocks if b.cgroup} == {"v1", "v2"}


def test_the_parser_on_a_small_tutorial():
    text = "\n".join([
        "## Tutorial: x", "", "<!-- tutorial: run on cgroup v1 -->", "```console", "# echo hi", "hi",
        " 3. [runtime] step   one", "abc ...", "id 3164171866e4", "# true", "```", "",
        "```console", "# unmarked", "```", "<!-- tutorial: not run: needs docker -->", "```console", "# docker", "```",
        "## Reference", "<!-- tutorial: run -->", "```console", "# not in the tutorial", "```",
    ])
    first, unmarked, docker = tutorial_blocks(text)
    assert (first.marker, first.cgroup, first.runs) == ("run on cgroup v1", "v1", True)
    assert [c.text for c in first.commands] == ["echo hi", "true"]
    assert checked_lines(first.commands[0].shown) == ["hi", "[runtime] step one"]
    assert unmarked.marker == "" and not unmarked.runs
    assert docker.marker == "not run: needs docker" and not docker.runs
    assert normalize("12. [container] exec   /bin/sh") == "[container] exec /bin/sh"
