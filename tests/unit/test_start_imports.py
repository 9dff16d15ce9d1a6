"""The start path imports only what it needs (issue 15).

Each import on the start path is paid by every ``run`` and, for the OCI
verbs, several times per container by the engine. These tests run the
command in a fresh interpreter and compare what it imported with an agreed
list, so a new import shows up in review instead of as a slower start.

To update a list after adding an import that ``run`` really needs: run the
test, read the names it reports, and add them here with a word on why
(measure the cost first: ``python -X importtime -m minicontainer run --dry-run
mini /bin/true 2>&1 | sort -t'|' -k2 -n | tail``). Modules Python itself has
loaded before our code runs (site, encodings, .pth files) are not counted, and
names starting with ``_`` (C accelerators, which differ between Python
versions) neither; third-party and standard modules are compared by their top
name only. No time is measured or asserted here: scripts/bench does that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# `run --dry-run DIR /bin/true` with the seccomp step cached (the state of
# every run after the first). --dry-run imports all the planning a run does;
# a real run adds the fork and the interpreter (container.process,
# container.interpreter), not covered here because it needs root.
RUN_MINICONTAINER = {
    "minicontainer", "minicontainer.main", "minicontainer.errors", "minicontainer.records", "minicontainer.names",
    "minicontainer.paths", "minicontainer.procfs", "minicontainer.safepath", "minicontainer.units",
    "minicontainer.commands", "minicontainer.commands.fastparse", "minicontainer.commands.runspec",
    "minicontainer.cgroups", "minicontainer.cgroups.base", "minicontainer.cgroups.detect",
    "minicontainer.cgroups.devices", "minicontainer.cgroups.ebpf", "minicontainer.cgroups.files",
    "minicontainer.cgroups.resources", "minicontainer.cgroups.v1", "minicontainer.cgroups.v2",
    "minicontainer.container", "minicontainer.container.config", "minicontainer.container.hostcheck",
    "minicontainer.container.plan", "minicontainer.container.rootfs", "minicontainer.container.runtime",
    "minicontainer.container.spec", "minicontainer.container.state", "minicontainer.container.steps",
    "minicontainer.container.userns", "minicontainer.images", "minicontainer.images.store",
    "minicontainer.security", "minicontainer.security.caps", "minicontainer.security.config",
    "minicontainer.security.paths", "minicontainer.security.rlimits", "minicontainer.security.seccomp_cache",
    "minicontainer.security.steps", "minicontainer.security.users",
    "minicontainer.syscalls", "minicontainer.syscalls.flags", "minicontainer.syscalls.linux",
}
# Not in the list on purpose: click and what it pulls in (inspect, ast, typing's
# friends, datetime, uuid: 30-50 ms; main.py parses a plain `run` with
# commands/fastparse.py instead), dataclasses (records.py), decimal (only for
# a fractional size or --cpus), tempfile and random (only a store write),
# security.seccomp/bpf/syscall_tables (a cached step needs none of them),
# network/pyroute2 (only with --network NAME), psutil, tarfile, the image
# importer, report; typing (annotations only, under TYPE_CHECKING), platform
# (os.uname), threading (only a network namespace's helper thread), shutil and
# its bz2/lzma/zlib (only a removal).
RUN_OTHERS = {
    # the standard library the code uses
    "keyword", "enum", "weakref",
    "abc", "builtins", "codecs", "collections", "contextlib", "copyreg", "ctypes",
    "errno", "fcntl", "fnmatch", "functools", "gc", "importlib", "io", "ipaddress", "itertools",
    "json", "operator", "os", "pathlib", "re", "reprlib", "resource", "select",
    "shlex", "signal", "stat", "struct", "sys", "time", "types",
    "urllib", "warnings", "genericpath", "posixpath", "ntpath", "posix", "marshal",
}
# python-prctl and socket are not in it either: only the container's process
# needs them (syscalls/linux.py loads them there, before it leaves the host's files).

# `minicontainer-runc state ID`: its own parser, no click, no planning.
STATE_MINICONTAINER = {
    "minicontainer", "minicontainer.errors", "minicontainer.records", "minicontainer.paths",
    "minicontainer.procfs", "minicontainer.oci", "minicontainer.oci.cli", "minicontainer.oci.runtime",
    "minicontainer.container", "minicontainer.container.state",
}
STATE_OTHERS = {
    "abc", "builtins", "codecs", "collections", "contextlib", "copy", "copyreg", "errno", "fcntl",
    "functools", "genericpath", "importlib", "io", "itertools", "json", "marshal", "ntpath", "operator", "os",
    "posix", "posixpath", "re", "reprlib", "signal", "stat", "sys", "time", "types", "warnings", "weakref",
    "enum", "keyword",
    "pathlib", "fnmatch", "urllib", "ipaddress",  # pathlib (state.py's paths) and what it imports
}
# Not in the list on purpose: dataclasses (and with it inspect, ast, dis, tokenize: ~10 ms):
# records.py makes state.py's classes without it.

_PROBE = """
import importlib, sys
before = set(sys.modules)
out, module, attr, *argv = sys.argv[1:]
main = getattr(importlib.import_module(module), attr)
try:
    main(argv)
except SystemExit:
    pass
with open(out, "w") as f:
    f.write("\\n".join(sorted(set(sys.modules) - before)))
"""


def _imported(tmp_path, module, attr, *argv) -> set[str]:
    out = tmp_path / "modules.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", _PROBE, str(out), module, attr, *argv], env=env, check=True,
                   capture_output=True, timeout=120)
    return set(out.read_text().split())


def _compare(found: set[str], ours: set[str], others: set[str]) -> list[str]:
    problems = []
    mine = {m for m in found if m.split(".")[0] == "minicontainer"}
    for m in sorted(mine - ours):
        problems.append(f"new import on the start path: {m}")
    tops = {m.split(".")[0] for m in found if not m.split(".")[0].startswith("_")} - {"minicontainer"}
    for m in sorted(tops - others):
        problems.append(f"new import on the start path: {m}")
    return problems


def test_run_imports_only_the_agreed_modules(tmp_path, mc_dirs):
    _, root = mc_dirs
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "true").write_bytes(b"")
    # the seccomp step a previous run cached (security/seccomp_cache.py)
    from minicontainer.security import security_steps
    from minicontainer.security.config import parse_security

    security_steps(parse_security(), cache_dir=root / "cache")
    assert list((root / "cache").glob("seccomp-*.json"))
    found = _imported(tmp_path, "minicontainer.main", "main", "run", "--dry-run", str(rootfs), "/bin/true")
    assert "minicontainer.container.plan" in found  # it did plan
    assert _compare(found, RUN_MINICONTAINER, RUN_OTHERS) == []


def test_oci_state_imports_only_the_agreed_modules(tmp_path, mc_dirs):
    found = _imported(tmp_path, "minicontainer.oci.cli", "main", "--root", str(tmp_path / "oci"), "state", "nosuch")
    assert "minicontainer.oci.cli" in found
    assert _compare(found, STATE_MINICONTAINER, STATE_OTHERS) == []


def test_the_comparison_names_a_new_module():
    found = {"minicontainer.cli", "minicontainer.network.netlink", "pyroute2.ndb", "_socket", "json.decoder"}
    assert _compare(found, {"minicontainer.cli"}, {"json"}) == [
        "new import on the start path: minicontainer.network.netlink",
        "new import on the start path: pyroute2",
    ]
