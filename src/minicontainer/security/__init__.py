"""The security layer: what a container may still do once it runs.

Namespaces decide what a container can *see*; this package decides what it
can *do*. The runtime calls it in two steps:

``prepare(config, rootfs_fd)`` - in the forked child, before pivot_root.
    Everything that needs Python's imports or file reads: resolve ``--user``
    from the image's own /etc/passwd (users.py, never the host's NSS),
    compute the capability sets (caps.py), compile the seccomp program
    (seccomp.py, bpf.py). It also makes the process non-dumpable, so root in
    the container cannot reach the runtime through /proc/<pid>/exe.

``masked_path_ops(config)`` - mount steps for /proc and /sys (paths.py),
    applied by the runtime right after it mounts them in the new root.

``enter(prepared)`` - after pivot_root, the last thing before execve. Only
    system calls, in an order where each step still has the privilege it
    needs: signals reset, rlimits, bounding set, ambient set, groups, gid,
    uid, capset, parent-death signal re-armed, no_new_privs, fds marked
    close-on-exec, seccomp last (apply.py explains each).

``mask_steps``, ``plan_steps`` and ``prepare_enter`` (steps.py) are the same
three things in the shape the runtime's plan wants.

``parse_security(...)`` turns Docker's flags into a frozen SecurityConfig
(config.py) and ``describe(config)`` gives the --explain lines.

In rootless mode (minicontainer.userns) the same steps run inside a user
namespace: the capabilities kept count only there, ``--user`` must name an
id that the namespace maps (prepare() says which ids exist), and with a
single-id map setgroups(2) is denied, so the image's supplementary groups
are left out and ``--group-add`` is an error.
"""

from minicontainer.security.apply import Prepared, describe, enter, make_undumpable, prepare
from minicontainer.security.caps import DEFAULT_CAPS, effective_caps
from minicontainer.security.config import SecurityConfig, parse_security
from minicontainer.security.paths import MaskOp, apply_mask_ops, masked_path_ops
from minicontainer.security.steps import mask_steps, plan_steps, prepare_enter
from minicontainer.security.users import ExecUser, resolve_user

__all__ = [
    "DEFAULT_CAPS",
    "ExecUser",
    "MaskOp",
    "Prepared",
    "SecurityConfig",
    "apply_mask_ops",
    "describe",
    "effective_caps",
    "enter",
    "make_undumpable",
    "mask_steps",
    "masked_path_ops",
    "parse_security",
    "plan_steps",
    "prepare",
    "prepare_enter",
    "resolve_user",
]
