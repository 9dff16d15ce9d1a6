"""The small error hierarchy every module raises and only the CLI prints.

Each error carries a one-line ``message`` (what went wrong, on which path)
and an optional ``hint`` (what to do about it). ``exit_code`` follows
docker's conventions: 125 for the runtime's own errors, 126/127 for a
command that cannot be run, 1 for image commands that failed.

Raw ``OSError``s are wrapped with :func:`wrap_oserror` (or
:class:`SyscallError` directly) so the user reads "mounting proc on
/x/proc: Operation not permitted" instead of "[Errno 1]".
"""

from __future__ import annotations

import errno as _errno
import os
import sys


class MiniError(Exception):
    """Base class: a message for the user, a hint, and an exit code."""

    exit_code = 125

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message

    def lines(self) -> list[str]:
        """What the CLI prints, one ``minicontainer: error:`` line each."""
        return [str(self)]


class Failures(MiniError):
    """Several errors of one command that went on past each (``rm a b c``).

    The CLI prints one line per failure, in order; the exit code is the
    last failure's, as when each was reported at once.
    """

    def __init__(self, errors: list[MiniError]):
        if not errors:
            raise ValueError("Failures needs at least one error")
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors), exit_code=self.errors[-1].exit_code)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


class UsageError(MiniError):
    """Bad flags or values: refused before anything is created."""


class NotRootError(MiniError):
    """The operation needs root (or a user namespace, see rootless mode)."""


class ImageError(MiniError):
    """A missing, corrupt or hostile image or tarball."""

    exit_code = 1


class ContainerError(MiniError):
    """A container that does not exist, is still running, name conflicts..."""


class CgroupError(MiniError):
    """A cgroup controller, file or hierarchy problem."""


class SecurityError(MiniError):
    """Capabilities, seccomp, user namespaces..."""


class CommandError(MiniError):
    """The container's command could not be executed (126 / 127)."""


class SyscallError(MiniError):
    """An OSError from a syscall, with what we were doing and on which path.

    ``errno`` is kept so callers (and tests) can branch on it.
    """

    def __init__(self, op: str, err: int, path: str | None = None, hint: str | None = None):
        self.op = op
        self.errno = err
        self.path = path
        where = f" {path}" if path else ""
        msg = f"{op}{where}: {os.strerror(err)}"
        super().__init__(msg, hint if hint is not None else _default_hint(op, err))


def _default_hint(op: str, err: int) -> str | None:
    """Turn the commonest errnos into advice (like crun's diagnose_mount_failure)."""
    if err == _errno.EPERM:
        return "this needs root (CAP_SYS_ADMIN); run as root or with sudo"
    if err == _errno.ENOENT:
        return "the path does not exist"
    if err == _errno.ENOTDIR:
        return "a path component is not a directory"
    if err == _errno.ELOOP:
        return "a symlink was found where a real directory is required; refusing to follow it"
    if err == _errno.EINVAL and op.startswith("mount"):
        return "the kernel rejected the mount options or the target is not a mount point"
    if err == _errno.ENODEV and op.startswith("mount"):
        return "the kernel lacks this filesystem type (check /proc/filesystems)"
    if err == _errno.ENOSPC:
        return "the disk (or tmpfs) is full"
    if err == _errno.EBUSY:
        return "the target is busy; a process may still be using it"
    return None


def warn(message: str) -> None:
    """Print ``minicontainer: warning: ...``: something the user should know that does not stop the command."""
    try:
        print(f"minicontainer: warning: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        # stderr closed or gone: a warning is not worth a crash
        pass


def wrap_oserror(op: str, exc: OSError, path: str | None = None, hint: str | None = None) -> SyscallError:
    """Build a SyscallError from an OSError raised while doing ``op``."""
    err = exc.errno if exc.errno is not None else _errno.EIO
    return SyscallError(op, err, path if path is not None else exc.filename, hint)
