"""The security layer as the runtime's plan steps (steps.py) and the --explain text."""

from __future__ import annotations

import pytest

from minicontainer import plan as P
from minicontainer.security import describe, mask_steps, parse_security, plan_steps
from minicontainer.security import seccomp as sc

pytestmark = pytest.mark.unit


def _text(steps) -> str:
    return "\n".join(line for i, s in enumerate(steps, 1) for line in P.render_step(i, s))


def test_mask_steps_are_plan_mask_paths():
    steps = mask_steps(None)
    assert steps and all(isinstance(s, P.MaskPath) for s in steps)
    kinds = {s.path: s.kind for s in steps}
    assert kinds["/proc/kcore"] == "mask_file"
    assert kinds["/sys/firmware"] == "mask_dir"
    assert kinds["/proc/sys"] == "readonly"
    assert all(s.reason for s in steps)
    assert mask_steps(parse_security(privileged=True)) == []


def test_plan_steps_describe_enter_in_order():
    steps = plan_steps(None)
    assert all(isinstance(s, P.Note) for s in steps)
    text = _text(steps)
    order = ["bounding set", "switch to user", "effective = permitted", "parent-death", "no_new_privs", "seccomp"]
    positions = [text.index(word) for word in order]
    assert positions == sorted(positions)
    assert "keyctl" in text and "capsh --drop=" in text and "cap_sys_admin" in text


def test_plan_steps_follow_the_flags():
    text = _text(plan_steps(parse_security(privileged=True, ulimit=["nofile=10:20"], user="1000",
                                           security_opt=["no-new-privileges=false"])))
    assert "no seccomp filter (--privileged)" in text
    assert "prlimit --nofile=10:20" in text
    assert "switch to user 1000" in text
    assert "set no_new_privs" not in text
    assert "keeps them all" in text


def test_describe_and_seccomp_describe():
    lines = describe(parse_security())
    assert any(line.startswith("capabilities: keep") for line in lines)
    assert any("/proc/kcore" in line for line in lines)
    assert sc.describe(parse_security(security_opt=["seccomp=unconfined"])) == [
        "seccomp: off (--security-opt seccomp=unconfined)"]
    with_admin = "\n".join(sc.describe(parse_security(cap_add=["SYS_ADMIN"]), "x86_64", (6, 1)))
    assert "EPERM: mount" not in with_admin  # re-enabled by the capability, as in Docker
    assert "EPERM: mount" in "\n".join(sc.describe(parse_security(), "x86_64", (6, 1)))
