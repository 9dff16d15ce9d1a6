"""The frozen spec as JSON: ``config.json`` in a container's state directory.

``exec``, ``start`` of a created or exited container, ``restart`` and
``inspect`` all use exactly the spec ``run`` or ``create`` built, so it is
written once when the container is reserved and read back, never rebuilt
from flags (an ``-e KEY`` copied from the caller's environment, or an
``--env-file``, must not change between ``run`` and ``exec``).

The encoding is generic: a dataclass or NamedTuple becomes an object with a
``"__type__"`` naming its class, tuples become lists and frozensets
``{"__frozenset__": [...]}``. Only classes of this package are accepted when
reading, so a state file cannot name arbitrary code.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from minicontainer.errors import ContainerError

CONFIG_FILE = "config.json"
_PACKAGE = "minicontainer."


def _fields(value):
    """The fields of a spec value, or None if it is not a dataclass. The
    spec's classes are made by records.py, whose field list needs no
    ``dataclasses`` (importing it costs ~9 ms of every run); a class made by
    dataclasses exists only once that module is loaded."""
    if isinstance(value, type):
        return None
    found = getattr(type(value), "__record_fields__", None)
    if found is not None:
        return found
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None and dataclasses.is_dataclass(value):
        return dataclasses.fields(value)
    return None


def encode(value):
    fields = _fields(value)
    if fields is not None:
        out = {"__type__": _type_name(value)}
        for f in fields:
            if f.name == "extra":
                continue  # run-time notes, not part of what was asked for
            out[f.name] = encode(getattr(value, f.name))
        return out
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return {"__type__": _type_name(value), **{k: encode(v) for k, v in zip(value._fields, value)}}
    if isinstance(value, frozenset):
        return {"__frozenset__": sorted(encode(v) for v in value)}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value):
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    if isinstance(value, dict):
        if "__frozenset__" in value:
            return frozenset(decode(v) for v in value["__frozenset__"])
        if "__type__" in value:
            cls = _load_type(value["__type__"])
            return cls(**{k: decode(v) for k, v in value.items() if k != "__type__"})
        return {k: decode(v) for k, v in value.items()}
    return value


def _type_name(value) -> str:
    cls = type(value)
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_type(name: str):
    module, _, qualname = name.partition(":")
    if not module.startswith(_PACKAGE) or "." in qualname:
        raise ContainerError(f"config.json names a type minicontainer does not know: {name}",
                             "the state was written by another program; remove the container")
    cls = getattr(importlib.import_module(module), qualname, None)
    if cls is None or not isinstance(cls, type):
        raise ContainerError(f"config.json names a type minicontainer does not know: {name}",
                             "it was written by another version; remove the container and create it again")
    return cls


def save_spec(state_dir: Path, spec) -> None:
    """Write the spec atomically (temp file + rename), private to root."""
    tmp = state_dir / (CONFIG_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    # No fsync, as state.json (state.py: runtime state, voided by a reboot; ~7 ms a save here).
    with os.fdopen(fd, "w") as f:
        json.dump(encode(spec), f, indent=2, sort_keys=True)
    os.replace(tmp, state_dir / CONFIG_FILE)


def saved_fields(state_dir: Path) -> dict:
    """A container's config.json as plain JSON, no class loaded ({} when it
    is missing or unreadable): what the volume store and a container's
    cleanup read of it without decoding the spec."""
    try:
        spec = json.loads((state_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def named_volumes(fields: dict) -> list[tuple[str, bool]]:
    """(name, anonymous) of each volume in a saved spec's ``named_volumes``."""
    return [(v["name"], bool(v.get("anonymous"))) for v in fields.get("named_volumes") or ()
            if isinstance(v, dict) and isinstance(v.get("name"), str)]


def load_spec(state_dir: Path):
    """The ContainerSpec a container was made with."""
    path = state_dir / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContainerError(f"{path} is missing: this container was made by an older minicontainer",
                             "remove it and run it again") from None
    except (OSError, ValueError) as e:
        raise ContainerError(f"cannot read {path}: {e}", "remove the container") from None
    try:
        return decode(data)
    except TypeError as e:
        raise ContainerError(f"{path} does not match this version of minicontainer: {e}",
                             "remove the container and create it again") from None
