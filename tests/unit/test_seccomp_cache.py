"""The seccomp step cache: a hit is the step a fresh compile gives; keys change with what the program depends on."""

from __future__ import annotations

import json

import pytest

from minicontainer.container import steps as S
from minicontainer.security import seccomp_cache
from minicontainer.security.config import parse_security
from minicontainer.security.steps import security_steps

pytestmark = pytest.mark.unit

ALL = (1 << 41) - 1


def _seccomp(out):
    return [s for s in out.inside if isinstance(s, S.InstallSeccomp)][0]


def _program(step) -> bytes:
    return bytes(step.fprog._keep)  # the instructions load_filter copied for the kernel


def test_a_hit_gives_the_step_a_compile_gives(tmp_path):
    cfg = parse_security()
    fresh = _seccomp(security_steps(cfg, last_cap=40, bounding=ALL))
    first = _seccomp(security_steps(cfg, last_cap=40, bounding=ALL, cache_dir=tmp_path))  # miss: written
    files = list(tmp_path.glob("seccomp-*.json"))
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
    hit = _seccomp(security_steps(cfg, last_cap=40, bounding=ALL, cache_dir=tmp_path))
    for step in (first, hit):
        assert (step.text, step.reason) == (fresh.text, fresh.reason)
        assert _program(step) == _program(fresh)


def test_no_write_when_asked_not_to(tmp_path):
    security_steps(parse_security(), last_cap=40, bounding=ALL, cache_dir=tmp_path, cache_write=False)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_entry_is_rebuilt_not_trusted(tmp_path):
    cfg = parse_security()
    good = _seccomp(security_steps(cfg, last_cap=40, bounding=ALL, cache_dir=tmp_path))
    (entry,) = tmp_path.glob("seccomp-*.json")
    data = json.loads(entry.read_text())
    for bad in ({**data, "program": data["program"][:-2]},  # not whole instructions
                {**data, "key": "0" * 64},  # another key's entry
                {**data, "program": ""}):
        entry.write_text(json.dumps(bad))
        assert seccomp_cache.load(tmp_path, data["key"]) is None
        step = _seccomp(security_steps(cfg, last_cap=40, bounding=ALL, cache_dir=tmp_path))
        assert _program(step) == _program(good)
    entry.write_text("{not json")
    assert seccomp_cache.load(tmp_path, data["key"]) is None


def test_the_key_follows_what_the_program_depends_on(monkeypatch):
    cfg = parse_security()
    base = seccomp_cache.key(cfg, frozenset({"CAP_CHOWN"}))
    assert seccomp_cache.key(cfg, frozenset({"CAP_CHOWN"})) == base
    assert seccomp_cache.key(cfg, frozenset({"CAP_CHOWN", "CAP_SYS_ADMIN"})) != base  # rules depend on caps
    assert seccomp_cache.key(parse_security(cap_add=("SYS_TIME",)), frozenset({"CAP_CHOWN"})) == base  # caps via kept
    seccomp_cache.code_version.cache_clear()
    real = seccomp_cache.code_version()
    monkeypatch.setattr(seccomp_cache, "_SOURCES", seccomp_cache._SOURCES[:-1])  # other code, other key
    seccomp_cache.code_version.cache_clear()
    try:
        assert seccomp_cache.code_version() != real
        assert seccomp_cache.key(cfg, frozenset({"CAP_CHOWN"})) != base
    finally:
        monkeypatch.undo()
        seccomp_cache.code_version.cache_clear()
    assert seccomp_cache.key(cfg, frozenset({"CAP_CHOWN"})) == base


def test_unconfined_needs_no_cache(tmp_path):
    out = security_steps(parse_security(privileged=True), last_cap=40, bounding=ALL, cache_dir=tmp_path)
    assert not [s for s in out.inside if isinstance(s, S.InstallSeccomp)]
    assert list(tmp_path.iterdir()) == []
