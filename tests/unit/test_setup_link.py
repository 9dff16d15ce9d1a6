"""scripts/link-bin, the piece of scripts/setup that puts minicontainer on PATH,
run against a temp directory instead of /usr/local/bin."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "link-bin"
NAMES = ("minicontainer", "minicontainer-runc")


@pytest.fixture
def venv_bin(tmp_path) -> Path:
    d = tmp_path / "venv" / "bin"
    d.mkdir(parents=True)
    for n in NAMES:
        (d / n).write_text("#!/bin/sh\necho from the venv\n")
        (d / n).chmod(0o755)
    return d


@pytest.fixture
def prefix(tmp_path) -> Path:
    d = tmp_path / "usr-local-bin"
    d.mkdir()
    return d


def link_bin(prefix, venv_bin) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(prefix), str(venv_bin)], capture_output=True, text=True)


def test_both_commands_are_linked_and_run_from_path(prefix, venv_bin):
    proc = link_bin(prefix, venv_bin)
    assert proc.returncode == 0, proc.stderr
    for n in NAMES:
        assert os.readlink(prefix / n) == str(venv_bin / n)
        assert f"setup: linked {prefix / n} -> {venv_bin / n}" in proc.stderr
    found = subprocess.run(["sh", "-c", "minicontainer"], capture_output=True, text=True,
                           env={"PATH": f"{prefix}:/usr/bin:/bin"})
    assert found.stdout == "from the venv\n"


def test_a_second_run_changes_nothing_and_says_nothing(prefix, venv_bin):
    link_bin(prefix, venv_bin)
    before = {n: os.lstat(prefix / n).st_ino for n in NAMES}
    proc = link_bin(prefix, venv_bin)
    assert proc.returncode == 0 and proc.stderr == ""
    assert {n: os.lstat(prefix / n).st_ino for n in NAMES} == before


def test_a_foreign_file_or_link_is_left_alone(prefix, venv_bin, tmp_path):
    (prefix / "minicontainer").write_text("someone else's\n")
    other = tmp_path / "other-checkout" / "minicontainer-runc"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    (prefix / "minicontainer-runc").symlink_to(other)
    proc = link_bin(prefix, venv_bin)
    assert proc.returncode == 0  # a missing link is a note, not a failed setup
    assert (prefix / "minicontainer").read_text() == "someone else's\n"
    assert os.readlink(prefix / "minicontainer-runc") == str(other)
    assert f"{prefix / 'minicontainer'} is a file that is not ours; left alone" in proc.stderr
    assert f"{prefix / 'minicontainer-runc'} already points to {other}; left alone" in proc.stderr


def test_a_dangling_link_of_a_removed_checkout_is_replaced(prefix, venv_bin, tmp_path):
    (prefix / "minicontainer").symlink_to(tmp_path / "gone" / ".venv" / "bin" / "minicontainer")
    proc = link_bin(prefix, venv_bin)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(prefix / "minicontainer") == str(venv_bin / "minicontainer")
    assert "replacing the dangling link" in proc.stderr


def test_no_such_directory_or_no_venv_is_a_note(tmp_path, venv_bin):
    proc = link_bin(tmp_path / "missing", venv_bin)
    assert proc.returncode == 0 and "does not exist" in proc.stderr
    prefix = tmp_path / "p"
    prefix.mkdir()
    proc = link_bin(prefix, tmp_path / "no-venv")
    assert proc.returncode == 0 and "is missing, so" in proc.stderr
    assert list(prefix.iterdir()) == []


def test_setup_calls_it_for_usr_local_bin():
    setup = (SCRIPT.parent / "setup").read_text()
    assert '"$REPO/scripts/link-bin" "${MINICONTAINER_BIN_DIR:-/usr/local/bin}" "$VENV/bin"' in setup
