"""``features`` and ``spec``: what this runtime supports, and a starting config.json.

``features`` answers in the runtime-spec's features.md shape, from the same
tables oci/config.py accepts, so an engine (or a learner) can see up front
what a bundle may ask for. ``spec`` writes a default config.json that
minicontainer-runc runs as it is (runc's own default asks for ambient
capabilities and a cgroup mount, which we accept with a debug line).
"""

from __future__ import annotations

import json
import os

from minicontainer.errors import UsageError


def features() -> dict:
    from minicontainer.oci import config as C
    from minicontainer.security.caps import CAP_NAMES
    from minicontainer.security.seccomp_profile import _ACTIONS, _OPS, _SCMP_ARCHES

    from minicontainer.container.spec import HOOK_KINDS

    options = sorted(set(C._FLAG_OPTIONS) | C._DEFAULT_OPTIONS | {"bind", "rbind"})
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": list(HOOK_KINDS),
        "mountOptions": options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": [c for c in CAP_NAMES if c.startswith("CAP_")],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(_ACTIONS), "operators": sorted(_OPS),
                        "archs": sorted(_SCMP_ARCHES)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.minicontainer.runtime": "minicontainer-runc"},
    }


# Docker's default capabilities without CAP_NET_RAW (podman's default drops it
# too). CAP_MKNOD stays: the device allow-list decides which nodes open.
_DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID",
                 "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def default_spec() -> dict:
    from minicontainer.security.paths import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

    caps = list(_DEFAULT_CAPS)
    return {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "minicontainer",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def write_default_spec(bundle: str) -> None:
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise UsageError(f"File {path} exists. Remove it first", None) from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}", "give a writable directory with --bundle") from None
    with os.fdopen(fd, "w") as f:
        json.dump(default_spec(), f, indent=2)
        f.write("\n")
