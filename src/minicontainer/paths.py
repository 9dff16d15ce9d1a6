"""Where minicontainer keeps things on the host.

- ``MINICONTAINER_HOME`` (default ``/var/lib/minicontainer``, mode 0700):
  persistent data: ``images/`` (one directory per image id, with ``rootfs/``
  and ``meta.json``), ``refs/`` (image name -> id), ``tmp/`` (unpacking,
  on the same filesystem so a finished image is renamed into place) and
  ``containers/<id>/`` (each container's writable layer).
- ``MINICONTAINER_ROOT`` (default ``/run/minicontainer``, mode 0700):
  runtime state: ``containers/<id>/state.json`` and ``names/<name>``.

Both are root-only: images can hold setuid binaries that other host users
must not reach (reliability case A10).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "/var/lib/minicontainer"
DEFAULT_ROOT = "/run/minicontainer"


def home() -> Path:
    return Path(os.environ.get("MINICONTAINER_HOME") or DEFAULT_HOME)


def state_root() -> Path:
    return Path(os.environ.get("MINICONTAINER_ROOT") or DEFAULT_ROOT)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700, root-only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
