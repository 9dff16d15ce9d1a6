"""Reading a JSON file a user or an engine hands us (a seccomp profile, an
OCI config.json, an exec's process.json): size-capped, so a wrong path to a
huge file fails at once, and every failure is a UsageError naming the file."""

from __future__ import annotations

import json
import os

from minicontainer.errors import UsageError


def load_capped(path, limit: int, label: str, read_hint: str, size_hint: str):
    """The parsed document at ``path``; ``label`` names it in the messages."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UsageError(f"cannot read {label}: {os.strerror(e.errno or 5)}", read_hint) from None
    if len(data) > limit:
        raise UsageError(f"{label} is larger than {limit >> 20} MiB", size_hint)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{label} is not valid JSON: {e}", "check the file with 'python3 -m json.tool'") from None
