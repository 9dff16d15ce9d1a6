"""The security layer's steps (security/steps.py) and their --explain text."""

from __future__ import annotations

import pytest

from minicontainer.container import steps as S
from minicontainer.errors import SecurityError
from minicontainer.security import parse_security, security_steps
from minicontainer.security import seccomp as sc
from minicontainer.security.caps import caps_to_mask, effective_caps
from minicontainer.security.steps import filter_for

pytestmark = pytest.mark.unit

ALL = (1 << 41) - 1  # a host bounding set with every capability


def _steps(config=None, **kw):
    return security_steps(config, last_cap=40, bounding=kw.pop("bounding", ALL), **kw)


def _text(steps) -> str:
    return "\n".join(line for i, s in enumerate(steps, 1) for line in S.render_step(i, s))


def test_mask_steps_are_plan_mask_paths():
    steps = _steps().masks
    assert steps and all(isinstance(s, S.MaskPath) for s in steps)
    kinds = {s.path: s.kind for s in steps}
    assert kinds["/proc/kcore"] == "mask_file"
    assert kinds["/sys/firmware"] == "mask_dir"
    assert kinds["/proc/sys"] == "readonly"
    assert all(s.reason for s in steps)
    assert _steps(parse_security(privileged=True)).masks == []


def test_inside_steps_in_the_order_of_the_privilege_drop():
    steps = _steps().inside
    assert [type(s).__name__ for s in steps] == [
        "DropBoundingSet", "SwitchUser", "SetCapabilities", "RearmParentDeath", "NoNewPrivs", "CloseOnExec",
        "InstallSeccomp"]
    text = _text(steps)
    order = ["bounding set", "switch to user", "effective = permitted", "parent-death", "no_new_privs", "seccomp"]
    positions = [text.index(word) for word in order]
    assert positions == sorted(positions)
    assert "keyctl" in text and "capsh --drop=" in text and "cap_sys_admin" in text
    before = _steps().before_pivot
    assert [type(s).__name__ for s in before] == ["ResolveUser", "MakeUndumpable"]


def test_steps_follow_the_flags():
    text = _text(_steps(parse_security(privileged=True, ulimit=["nofile=10:20"], user="1000",
                                       security_opt=["no-new-privileges=false"])).inside)
    assert "no seccomp filter (--privileged)" in text
    assert "prlimit --nofile=10:20" in text
    assert "switch to user 1000" in text
    assert "set no_new_privs" not in text
    assert "keeps them all" in text


def test_without_no_new_privs_the_filter_comes_first():
    kinds = [type(s).__name__ for s in _steps(parse_security(security_opt=["no-new-privileges=false"])).inside]
    assert kinds[0] == "InstallSeccomp" and "NoNewPrivs" not in kinds


def test_kept_capabilities_are_the_docker_default_within_the_host_set():
    cfg = parse_security()
    step = next(s for s in _steps(cfg).inside if isinstance(s, S.DropBoundingSet))
    assert step.keep == caps_to_mask(effective_caps(cfg, 40))
    assert "CAP_SYS_ADMIN" in step.dropped and "CAP_CHOWN" in step.kept
    # A capability the host itself lacks cannot be granted: refused while planning.
    no_admin = ALL & ~caps_to_mask(["CAP_SYS_ADMIN"])
    with pytest.raises(SecurityError, match="--cap-add CAP_SYS_ADMIN"):
        _steps(parse_security(cap_add=["SYS_ADMIN"]), bounding=no_admin)


def test_seccomp_text_follows_the_capabilities():
    unconfined = _steps(parse_security(security_opt=["seccomp=unconfined"])).inside
    assert "no seccomp filter (--security-opt seccomp=unconfined)" in _text(unconfined)
    cfg = parse_security(cap_add=["SYS_ADMIN"])
    with_admin = "\n".join(sc.describe_filter(filter_for(cfg, effective_caps(cfg), "x86_64", (6, 1))))
    assert "EPERM: mount" not in with_admin  # re-enabled by the capability, as in Docker
    cfg = parse_security()
    assert "EPERM: mount" in "\n".join(sc.describe_filter(filter_for(cfg, effective_caps(cfg), "x86_64", (6, 1))))
