"""The seccomp step of a run, cached in the state root (issue 15).

Every run with the same profile, kept capabilities, architecture and kernel
gets the same program: 196 instructions for the default profile, assembled
by our own code (seccomp.py, bpf.py) from the syscall tables. Importing those
modules and assembling cost ~10 ms of every start here; reading the cached
program is ~0.3 ms.

Keyed and invalidated honestly: the key is a SHA-256 of everything the
program and its explanation are made from: the source of every module that
writes them (a changed rule, table or assembler is a new key), the package
version, the profile (``default``, or the repr of a loaded JSON profile, all
its rules), the kept capabilities (rules depend on them), the machine and the
kernel release (rules depend on the kernel version). An entry that does not
parse, names another key or holds no whole instructions is ignored and
rebuilt: a bad cache never means a run without a filter.

The file lives next to the containers' state (``$MINICONTAINER_ROOT/cache``,
mode 0700 like the root itself), with the same trust as state.json: whoever
can write there is already root (or, rootless, the user).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import minicontainer

# The builtin SHA-256, by the name this Python gives it: hashlib would load
# OpenSSL for it (~2.5 ms a start here, -X importtime). Not guarded: a
# Python without it cannot key the cache, and the run stops (cli.main's
# one-line refusal) instead of going on some other way.
if sys.version_info >= (3, 12):
    from _sha2 import sha256
else:
    from _sha256 import sha256

# The modules whose code decides the program or the step's text.
_SOURCES = ("seccomp.py", "bpf.py", "syscall_tables.py", "seccomp_profile.py", "steps.py", "seccomp_cache.py")
INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    h = sha256(minicontainer.__version__.encode())
    for name in _SOURCES:
        with open(os.path.join(here, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def key(config, kept: frozenset[str]) -> str:
    """The cache key of the seccomp step for ``config`` with ``kept`` capabilities."""
    profile = "default" if config.seccomp_profile is None else repr(config.seccomp_profile)
    uname = os.uname()
    material = json.dumps([code_version(), config.seccomp, profile, sorted(kept), uname.machine, uname.release])
    return sha256(material.encode()).hexdigest()


def _file(cache_dir: Path, k: str) -> Path:
    return Path(cache_dir) / f"seccomp-{k[:32]}.json"


def load(cache_dir: Path, k: str) -> tuple[bytes, str, str] | None:
    """(program, text, reason) for key ``k``, or None (missing, unreadable, not this key)."""
    try:
        with open(_file(cache_dir, k), encoding="utf-8") as f:
            entry = json.load(f)
        program = bytes.fromhex(entry["program"])
        if entry["key"] != k or not program or len(program) % INSN_SIZE:
            return None
        text, reason = entry["text"], entry["reason"]
        if not isinstance(text, str) or not isinstance(reason, str):
            return None
        return program, text, reason
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(cache_dir: Path, k: str, program: bytes, text: str, reason: str) -> None:
    """Write the entry atomically (a reader sees the old file or the whole new one); best effort."""
    path = _file(cache_dir, k)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": k, "program": program.hex(), "text": text, "reason": reason}, f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
