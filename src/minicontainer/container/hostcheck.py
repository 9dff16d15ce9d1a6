"""Checks of the host made before anything is created: privilege, the
kernel's namespaces, and a shell in the image when the default one is run."""

from __future__ import annotations

import os

from minicontainer.errors import ImageError, MiniError, NotRootError


def require_root(what: str = "running a container") -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            f"{what} needs root: namespaces, mounts and cgroups are privileged",
            "run it as root (e.g. sudo minicontainer ...)",
        )


def check_namespaces(namespaces) -> None:
    """A kernel without a namespace we need: say which, before anything starts."""
    names = {"mnt": "mnt", "uts": "uts", "ipc": "ipc", "pid": "pid", "net": "net", "cgroup": "cgroup"}
    for ns in namespaces:
        if not os.path.exists(f"/proc/self/ns/{names[ns]}"):
            raise MiniError(
                f"this kernel has no {ns} namespace (/proc/self/ns/{names[ns]} is missing)",
                f"use a kernel built with it, or share the host's with --{'network' if ns == 'net' else ns} host",
            )


def check_shell(rootfs: str, argv: tuple[str, ...]) -> None:
    """A directory without /bin/sh cannot run the default shell: say so up front."""
    from minicontainer.safepath import resolve_in_root

    if argv[0] != "/bin/sh":
        return
    found = resolve_in_root(rootfs, "/bin/sh")
    if found is None or not os.path.isfile(found):
        raise ImageError(
            f"{rootfs} has no /bin/sh to run",
            "give a command that exists in it (minicontainer run IMAGE /path/to/program), or use a complete root filesystem",
            exit_code=125,
        )


# Where Debian's tini package puts its static build (a static binary runs in
# any image, even one without a libc); docker-init is docker's copy of tini.
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/libexec/docker/docker-init", "/usr/bin/docker-init")


def find_init() -> str:
    """The init binary for --init, or a one-line refusal."""
    for path in INIT_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise MiniError("--init needs tini's static build, and none is installed (looked for "
                    + ", ".join(INIT_CANDIDATES) + ")",
                    "install it: apt-get install tini (./scripts/setup does), or drop --init")
