"""parse_security (Docker's flags -> SecurityConfig), capabilities and --ulimit parsing."""

from __future__ import annotations

import pytest

from minicontainer.errors import SecurityError, UsageError
from minicontainer.security import caps
from minicontainer.security.config import SecurityConfig, parse_security
from minicontainer.security.paths import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from minicontainer.security.rlimits import INFINITY, Ulimit, parse_ulimit

pytestmark = pytest.mark.unit

DOCKER_DEFAULT_MASK = 0xA80425FB  # CapBnd of `docker run alpine grep Cap /proc/self/status`


# -- defaults ------------------------------------------------------------------------


def test_defaults_are_dockers_plus_no_new_privs():
    cfg = parse_security()
    assert cfg == SecurityConfig()
    assert cfg.no_new_privs is True
    assert cfg.seccomp == "default" and cfg.seccomp_profile is None
    assert cfg.masked_paths == DEFAULT_MASKED_PATHS and "/proc/kcore" in cfg.masked_paths
    assert cfg.readonly_paths == DEFAULT_READONLY_PATHS
    assert "/proc/sys" in cfg.readonly_paths and "/proc/sysrq-trigger" in cfg.readonly_paths
    assert caps.effective_caps(cfg, 40) == caps.DEFAULT_CAPS
    assert caps.caps_to_mask(caps.DEFAULT_CAPS) == DOCKER_DEFAULT_MASK


def test_privileged_means_all_caps_no_seccomp_no_masks():
    cfg = parse_security(privileged=True)
    assert caps.effective_caps(cfg, 40) == frozenset(caps.CAP_NAMES)
    assert cfg.seccomp == "unconfined"
    assert cfg.masked_paths == () and cfg.readonly_paths == ()
    # An explicit profile still applies, as in Docker.
    assert parse_security(privileged=True, security_opt=["seccomp=default"]).seccomp == "default"


def test_privileged_includes_capabilities_newer_than_our_table():
    cfg = parse_security(privileged=True)
    assert "CAP_42" in caps.effective_caps(cfg, 42)
    assert caps.caps_to_mask(["CAP_42"]) == 1 << 42


# -- capabilities --------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", "cap_net_admin", " Net_Admin "])
def test_cap_names_are_case_insensitive_with_optional_prefix(spec):
    assert parse_security(cap_add=[spec]).cap_add == ("CAP_NET_ADMIN",)


@pytest.mark.parametrize("spec", ["NET_ADMINN", "", "CAP_", "SYS-ADMIN", "42"])
def test_unknown_capability_is_a_usage_error_with_hint(spec):
    with pytest.raises(UsageError, match="unknown capability") as exc:
        parse_security(cap_drop=[spec])
    assert "capabilities(7)" in exc.value.hint


def test_docker_cap_add_drop_rules():
    eff = lambda **kw: caps.effective_caps(parse_security(**kw), 40)  # noqa: E731
    assert eff(cap_add=["NET_ADMIN"]) == caps.DEFAULT_CAPS | {"CAP_NET_ADMIN"}
    assert eff(cap_drop=["CHOWN"]) == caps.DEFAULT_CAPS - {"CAP_CHOWN"}
    assert eff(cap_drop=["ALL"]) == frozenset()
    assert eff(cap_drop=["all"], cap_add=["CHOWN", "KILL"]) == {"CAP_CHOWN", "CAP_KILL"}
    assert eff(cap_add=["ALL"], cap_drop=["SYS_ADMIN"]) == frozenset(caps.CAP_NAMES) - {"CAP_SYS_ADMIN"}
    # Drop first, then add: --cap-drop X --cap-add X keeps X.
    assert "CAP_KILL" in eff(cap_drop=["KILL"], cap_add=["KILL"])


def test_cap_table_matches_the_kernel_and_python_prctl():
    last = caps.cap_last_cap()
    assert 30 <= last <= 63
    # Our table must name every capability of the kernel it was written for.
    assert len(caps.CAP_NAMES) - 1 >= min(last, 40)
    prctl = pytest.importorskip("prctl")
    for i, name in enumerate(caps.CAP_NAMES):
        if hasattr(prctl, name):
            assert getattr(prctl, name) == i, name


def test_cap_last_cap_fallback(tmp_path):
    assert caps.cap_last_cap(str(tmp_path / "missing")) == len(caps.CAP_NAMES) - 1
    (tmp_path / "f").write_text("37\n")
    assert caps.cap_last_cap(str(tmp_path / "f")) == 37
    assert len(caps.all_caps(37)) == 38


def test_the_bounding_set_is_read_from_proc_status_as_the_kernel_reports_it(tmp_path):
    # the host's own: the CapBnd line says what PR_CAPBSET_READ says, capability by capability
    import prctl

    last = caps.cap_last_cap()
    mask = caps.read_bounding(last)
    assert [bool(mask >> c & 1) for c in range(last + 1)] == [bool(prctl.capbset_read(c)) for c in range(last + 1)]
    # a kernel that knows more capabilities than last_cap: only 0..last_cap count
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nSeccomp:\t0\n")
    assert caps.read_bounding(40, str(status)) == 0x1FFFEFFFFFF
    assert caps.read_bounding(23, str(status)) == 0xFFFFFF
    status.write_text("Name:\tx\n")
    with pytest.raises(SecurityError, match="no CapBnd line"):
        caps.read_bounding(40, str(status))


def test_mask_roundtrip():
    assert caps.mask_to_caps(caps.caps_to_mask(caps.DEFAULT_CAPS)) == caps.DEFAULT_CAPS


# -- security-opt ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt, expected",
    [
        ("no-new-privileges", True),
        ("no-new-privileges=true", True),
        ("no-new-privileges=false", False),
        ("no-new-privileges:false", False),
        ("NO-NEW-PRIVILEGES=False", False),
    ],
)
def test_no_new_privileges(opt, expected):
    assert parse_security(security_opt=[opt]).no_new_privs is expected


def test_seccomp_and_systempaths_options():
    assert parse_security(security_opt=["seccomp=unconfined"]).seccomp == "unconfined"
    assert parse_security(security_opt=["seccomp:unconfined"]).seccomp == "unconfined"
    assert parse_security(security_opt=["seccomp=builtin"]).seccomp == "default"
    cfg = parse_security(security_opt=["systempaths=unconfined"])
    assert cfg.masked_paths == () and cfg.readonly_paths == ()
    assert parse_security(security_opt=["apparmor=unconfined", "label=disable"]) == SecurityConfig()


@pytest.mark.parametrize(
    "opt, message",
    [
        ("no-new-privileges=maybe", "true or false"),
        ("seccomp=", "needs a value"),
        ("seccomp", "needs a value"),
        ("systempaths=confined", "systempaths=unconfined"),
        ("apparmor=docker-default", "AppArmor"),
        ("label=type:svirt_t", "SELinux"),
        ("privileged=true", "unknown --security-opt"),
        ("", "unknown --security-opt"),
    ],
)
def test_bad_security_opts(opt, message):
    with pytest.raises(UsageError, match=message) as exc:
        parse_security(security_opt=[opt])
    assert exc.value.hint


# -- --ulimit ---------------------------------------------------------------------------


def test_ulimit_parsing():
    assert parse_ulimit("nofile=1024:2048") == Ulimit("nofile", 1024, 2048)
    assert parse_ulimit("nproc=100") == Ulimit("nproc", 100, 100)
    assert parse_ulimit("core=0") == Ulimit("core", 0, 0)
    assert parse_ulimit("memlock=-1") == Ulimit("memlock", INFINITY, INFINITY)
    assert parse_ulimit("stack=8192:unlimited") == Ulimit("stack", 8192, INFINITY)
    assert parse_ulimit("NOFILE=5") == Ulimit("nofile", 5, 5)
    cfg = parse_security(ulimit=["nofile=10:20", "cpu=5"])
    assert cfg.ulimits == (Ulimit("nofile", 10, 20), Ulimit("cpu", 5, 5))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nofile=abc", "not a number"),
        ("nofile=1:abc", "not a number"),
        ("nofile=2048:1024", "soft limit is larger"),
        ("nofile=unlimited:10", "soft limit is larger"),
        ("nofile", "NAME=SOFT"),
        ("nofile=", "NAME=SOFT"),
        ("=5", "NAME=SOFT"),
        ("openfiles=5", "unknown limit"),
        ("nofile=-5", "not a number"),
        ("nofile=1.5", "not a number"),
    ],
)
def test_bad_ulimits(spec, message):
    with pytest.raises(UsageError, match=message) as exc:
        parse_security(ulimit=[spec])
    assert exc.value.hint


def test_ulimit_given_twice_is_refused():
    with pytest.raises(UsageError, match="twice"):
        parse_security(ulimit=["nofile=1", "nofile=2"])


# -- --user / --group-add -------------------------------------------------------------


@pytest.mark.parametrize("user", ["1000", "1000:1000", "bob", "bob:staff", "0:0", "www-data"])
def test_user_shapes_accepted(user):
    assert parse_security(user=user).user == user


@pytest.mark.parametrize("user", ["", " ", ":", "bob:", ":100", "a:b:c", "../x", "bo b", "x\n"])
def test_bad_user_refused(user):
    with pytest.raises(UsageError):
        parse_security(user=user)


@pytest.mark.parametrize("group", ["", "a:b", "x/y", "a b"])
def test_bad_group_add_refused(group):
    with pytest.raises(UsageError, match="group-add"):
        parse_security(group_add=[group])
