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

Rootless mode (an ordinary user, see userns.py) keeps its own, under the
user's XDG directories: ``$XDG_DATA_HOME/minicontainer`` (default
``~/.local/share/minicontainer``) and ``$XDG_RUNTIME_DIR/minicontainer``
(default ``/tmp/minicontainer-<uid>``), also 0700.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

DEFAULT_HOME = "/var/lib/minicontainer"
DEFAULT_ROOT = "/run/minicontainer"


def _host_uid() -> int:
    # Not os.getuid(): inside rootless mode's user namespace it says 0.
    from minicontainer.container.userns import host_uid

    return host_uid()


def home() -> Path:
    if os.environ.get("MINICONTAINER_HOME"):
        return Path(os.environ["MINICONTAINER_HOME"])
    if _host_uid() == 0:
        return Path(DEFAULT_HOME)
    data = os.environ.get("XDG_DATA_HOME", "")
    if not data.startswith("/"):  # the XDG spec: relative values are ignored
        data = os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "minicontainer"


def state_root() -> Path:
    if os.environ.get("MINICONTAINER_ROOT"):
        return Path(os.environ["MINICONTAINER_ROOT"])
    uid = _host_uid()
    if uid == 0:
        return Path(DEFAULT_ROOT)
    run = os.environ.get("XDG_RUNTIME_DIR", "")
    if run.startswith("/"):
        return Path(run) / "minicontainer"
    return Path(f"/tmp/minicontainer-{uid}")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700, ours only.

    The directory must belong to us: in /tmp another user could have made
    ``/tmp/minicontainer-<uid>`` first, to read or plant our state.
    """
    import stat

    from minicontainer.errors import MiniError

    path.mkdir(parents=True, exist_ok=True)
    # lstat and an O_NOFOLLOW fd: a symlink planted in /tmp must neither pass
    # the owner check nor have its target chmod-ed.
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise MiniError(f"{path} is a symlink", "remove it, or set MINICONTAINER_ROOT/_HOME")
    if st.st_uid != os.geteuid():
        raise MiniError(f"{path} belongs to uid {st.st_uid}, not to us", "remove it, or set MINICONTAINER_ROOT/_HOME")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def dir_lock(root: Path):
    """An exclusive flock(2) on ``root/.lock`` (the directory made private
    first), held for the block: one writer at a time in a store of
    networks, leases or volumes, across processes."""
    import fcntl

    ensure_private_dir(root)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- errors on a store ---------------------------------------------------------------------------
#
# A user who reaches someone else's store (root's, through MINICONTAINER_HOME,
# or through HOME=/root kept by a plain `su`) would otherwise read "internal
# error: PermissionError"; with these they read which path and what to do.


@dataclass(frozen=True)
class StoreKind:
    """What :func:`store_error` says about a store: a store class sets one as ``store_kind``."""

    what: str  # "the image store"
    env: str  # the variable that moves it
    default_from: str  # what a user's default place for it is derived from
    top: str  # the store's attribute holding its top directory


def store_error(exc: OSError, store):
    """The one-line MiniError for ``exc``, or None when ``exc`` is not about
    ``store``'s directory, inside it or on the way to it (an error on another
    path, a tarball being imported, is its caller's to explain)."""
    from minicontainer.errors import wrap_oserror

    kind: StoreKind = store.store_kind
    if exc.filename is None:
        return None
    path = os.path.abspath(os.fsdecode(exc.filename))
    top = os.path.abspath(getattr(store, kind.top))
    if os.path.commonpath([path, top]) not in (path, top):
        return None
    hint = None
    if exc.errno in (errno.EACCES, errno.EPERM) and _host_uid() != 0:
        if os.environ.get(kind.env):
            hint = f"run as root, or unset {kind.env} so that your own directory is used"
        else:
            # the user's default dirs come from variables that a plain `su` keeps from root
            hint = (f"run as root, or as yourself with your own {kind.default_from}"
                    " ('su -' or 'sudo -i', not plain 'su')")
    return wrap_oserror(f"using {kind.what} at", exc, path, hint)


@contextlib.contextmanager
def store_access(store):
    """Turn an OSError on ``store``'s directory, in the block, into its store_error."""
    try:
        yield
    except OSError as e:
        err = store_error(e, store)
        if err is None:
            raise
        raise err from None


def on_store(method):
    """Decorate a store's method with :func:`store_access`."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with store_access(self):
            return method(self, *args, **kwargs)

    return wrapper
