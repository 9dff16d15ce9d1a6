"""``minicontainer doctor [--format json]`` — can this host run containers, and which features?

Each check reads one thing the kernel or the system offers and says OK or
missing, and for missing what to do. The checks read files through a
``Host`` whose root can be a temp dir holding a fake ``proc/``, ``sys/`` and
``etc/`` (tests/unit/test_doctor.py); the few things that need the real
kernel (trying an unshare, probing a system call, importing a module) are
functions the Host is given, so a test swaps them too.

Some checks are needed by ``run`` itself (``needed=True``): root or user
namespaces, the namespaces, pivot_root, seccomp, python-prctl, disk space.
The exit status is 0 when all of those pass, 1 otherwise: a script can ask
``minicontainer doctor >/dev/null && ...``. The others (cgroups, overlayfs,
tini, pyroute2 ...) only narrow what ``run`` can do, and the last line says
which features work here.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field

import click

# namespace name in /proc/self/ns -> its CLONE_NEW* flag (namespaces(7)) and the flag that opts out
NAMESPACES = {
    "mnt": (0x00020000, "(none: the root filesystem needs it)"),
    "uts": (0x04000000, "--uts host"),
    "ipc": (0x08000000, "--ipc host"),
    "pid": (0x20000000, "--pid host"),
    "net": (0x40000000, "--network host"),
    "cgroup": (0x02000000, "--cgroupns host"),
    "user": (0x10000000, "(only rootless mode and --userns use it)"),
}
MIN_FREE_BYTES = 64 << 20  # below this a container's writable layer and state may not fit


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed: bool = False  # does `run` itself need it?


def _release_tuple(release: str) -> tuple[int, int]:
    nums = []
    for part in release.split(".")[:2]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        nums.append(int(digits or 0))
    return tuple((nums + [0, 0])[:2])


def _try_unshare(flag: int) -> bool:
    """Can this process make such a namespace? (a child tries, userns.py)"""
    from minicontainer.container.userns import unshare_in_child

    return unshare_in_child(flag)


def _syscall_errno(name: str) -> int:
    """Call ``name`` with arguments it must refuse; 0 or the errno. ENOSYS: the kernel (or a
    seccomp filter around us) lacks it; EBADF/EINVAL: it is there."""
    from minicontainer.security.syscall_tables import TABLES
    from minicontainer.syscalls.linux import raw_syscall

    table = TABLES.get(os.uname().machine)
    nr = table.get(name) if table else None
    if nr is None:
        return 38  # ENOSYS: we do not know its number on this architecture
    ret = raw_syscall(nr, -1, 0, 0, 0, 0)
    return -ret if ret < 0 else 0


def _importable(module: str) -> str | None:
    """None if ``module`` imports, else the reason."""
    import importlib

    try:
        importlib.import_module(module)
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "cannot be used"
        return f"{type(e).__name__}: {e}"


def _free_bytes(path: str) -> int | None:
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


@dataclass
class Host:
    """What the checks read. ``root`` prefixes every file path (a fake tree in tests)."""

    root: str = "/"
    euid: int = field(default_factory=os.geteuid)
    release: str = field(default_factory=lambda: os.uname().release)
    user: str = ""  # whose /etc/subuid entry counts: the user behind sudo, or the caller
    store: str = ""  # MINICONTAINER_HOME
    which: object = shutil.which
    try_unshare: object = _try_unshare
    syscall_errno: object = _syscall_errno
    importable: object = _importable
    free_bytes: object = _free_bytes

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def read(self, p: str) -> str | None:
        try:
            with open(self.path(p)) as f:
                return f.read()
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return os.path.lexists(self.path(p))


# --- the checks: each reads the Host, returns Checks ---------------------------


def check_root(h: Host) -> list[Check]:
    if h.euid == 0:
        return [Check("root", True, "running as root: namespaces, mounts and cgroups are allowed")]
    return [Check("root", False, f"running as uid {h.euid}: `run` goes rootless (a user namespace, no cgroup limits)",
                  "run as root (sudo minicontainer ...) for cgroup limits and the full set of features")]


def check_kernel(h: Host) -> list[Check]:
    v = _release_tuple(h.release)
    if v < (4, 6):
        return [Check("kernel", False, f"Linux {h.release}: older than 4.6, which added the cgroup namespace",
                      "boot a newer kernel", needed=True)]
    older = [what for need, what in (((5, 6), "openat2"), ((5, 11), "overlayfs in a user namespace"),
                                     ((5, 12), "idmapped mounts"), ((5, 14), "cgroup.kill")) if v < need]
    detail = f"Linux {h.release}" + (f"; lacks (and works around): {', '.join(older)}" if older else
                                     ": has everything minicontainer uses")
    return [Check("kernel", True, detail)]


def check_namespaces(h: Host) -> list[Check]:
    out = []
    for ns, (flag, opt_out) in NAMESPACES.items():
        name = f"namespace {ns}"
        if not h.exists(f"/proc/self/ns/{ns}"):
            out.append(Check(name, False, f"/proc/self/ns/{ns} is missing: the kernel was built without it",
                             f"use a kernel with CONFIG_{ns.upper()}_NS; or opt out with {opt_out}",
                             needed=ns != "user"))
            continue
        if ns == "user":
            out.extend(_check_userns(h))
            continue
        if h.euid == 0 and not h.try_unshare(flag):
            out.append(Check(name, False, f"unshare(CLONE_NEW{ns.upper()}) is refused here (inside a container "
                             "without privilege, or a seccomp filter)",
                             f"run on the host or in a --privileged container; or opt out with {opt_out}",
                             needed=True))
            continue
        out.append(Check(name, True, "usable" if h.euid == 0 else "the kernel has it (created inside a user namespace)"))
    return out


def _check_userns(h: Host) -> list[Check]:
    from minicontainer.container.userns import rootless_blocker

    blocker = rootless_blocker(proc=h.path("/proc"), euid=1000 if h.euid == 0 else h.euid)
    if blocker is None:
        return [Check("namespace user", True, "usable, also by unprivileged users (rootless mode)")]
    return [Check("namespace user", False, blocker.message, blocker.hint or "", needed=h.euid != 0)]


def check_cgroups(h: Host) -> list[Check]:
    from minicontainer.cgroups.detect import host_from_mounts, parse_mountinfo

    text = h.read("/proc/self/mountinfo") or ""
    host = host_from_mounts(parse_mountinfo(text),
                            read_controllers=lambda m: frozenset((h.read(f"{m}/cgroup.controllers") or "").split()))
    if host.mode == "none":
        return [Check("cgroups", False, "no cgroup filesystem is mounted: containers run without limits",
                      "mount -t cgroup2 none /sys/fs/cgroup")]
    if host.mode == "v2":
        return _check_v2(h, host)
    ctrls = sorted(host.v1_mounts)
    mode = "hybrid (v1 controllers, an empty v2 tree)" if host.mode == "hybrid" else "v1"
    out = [Check("cgroups", True, f"{mode}; v1 controllers: {' '.join(ctrls)}")]
    want = {"memory": "-m", "cpu": "--cpus", "pids": "--pids-limit", "cpuset": "--cpuset-cpus",
            "blkio": "--device-read-bps", "freezer": "pause"}
    missing = [f"{c} ({flag})" for c, flag in want.items() if c not in host.v1_mounts]
    if missing:
        out.append(Check("cgroup controllers", False, f"not mounted: {', '.join(missing)}",
                         "mount each as its own hierarchy (mount -t cgroup -o CONTROLLER cgroup /sys/fs/cgroup/CONTROLLER)"))
    if host.read_only:
        out.append(Check("cgroups writable", False, f"mounted read-only: {' '.join(sorted(host.read_only))}",
                         "inside docker, run with --privileged"))
    return out


def _check_v2(h: Host, host) -> list[Check]:
    """On v2 the controllers must be enabled from the mount down to minicontainer/ (subtree_control)."""
    mount = host.v2_mount
    available = sorted(host.v2_controllers)
    out = [Check("cgroups", True, f"v2 (unified) at {mount}; controllers: {' '.join(available) or 'none'}")]
    enabled = set((h.read(f"{mount}/cgroup.subtree_control") or "").split())
    procs = [p for p in (h.read(f"{mount}/cgroup.procs") or "").split() if p.isdigit()]
    is_root = not h.exists(f"{mount}/cgroup.type")
    lacking = [c for c in ("cpu", "memory", "pids") if c not in available]
    if lacking:
        out.append(Check("cgroup controllers", False, f"{mount} offers no {', '.join(lacking)}",
                         "a parent must list them in its cgroup.subtree_control"))
    if not is_root and procs and not set(available) <= enabled:
        out.append(Check("cgroup v2 internal processes", True,
                         f"{mount} is the root of a cgroup namespace (we are in a container) and holds processes "
                         f"({', '.join(procs[:5])}): v2's no-internal-processes rule (cgroups(7)) forbids enabling "
                         "controllers there, so minicontainer first moves them into init/ (run --explain shows it)"))
    else:
        out.append(Check("cgroup v2 delegation", True,
                         f"enabled for children of {mount}: {' '.join(sorted(enabled)) or 'none yet'} "
                         "(minicontainer enables the rest for minicontainer/)"))
    if mount in host.read_only:
        out.append(Check("cgroups writable", False, f"{mount} is mounted read-only", "inside docker, run with --privileged"))
    return out


def check_filesystems(h: Host) -> list[Check]:
    fstypes = {line.split()[-1] for line in (h.read("/proc/filesystems") or "").splitlines() if line.strip()}
    out = []
    if "overlay" in fstypes:
        out.append(Check("overlayfs", True, "each container gets copy-on-write over its image"))
    elif h.exists(f"/lib/modules/{h.release}/kernel/fs/overlayfs"):
        out.append(Check("overlayfs", True, "a module, loaded by the first overlay mount"))
    else:
        out.append(Check("overlayfs", False, "not in /proc/filesystems: each container gets a full copy of its image",
                         "modprobe overlay (or a kernel with CONFIG_OVERLAY_FS)"))
    err = h.syscall_errno("mount_setattr")
    have_setattr = err != 38 and err != 1
    if err == 38:
        out.append(Check("mount_setattr", False, "mount_setattr(2) is missing (Linux 5.12)", "boot Linux 5.12 or newer"))
    elif err == 1:
        out.append(Check("mount_setattr", False, "mount_setattr(2) is refused by a seccomp filter around us",
                         "run on the host, or with seccomp=unconfined"))
    else:
        out.append(Check("mount_setattr", True, "present (recursive mount flags, idmapped mounts)"))
    if have_setattr and _release_tuple(h.release) >= (5, 12):
        out.append(Check("idmapped mounts", True, "possible (MOUNT_ATTR_IDMAP): root's --userns maps the image's "
                         "layers with them (Linux 5.19), else it copies them"))
    else:
        out.append(Check("idmapped mounts", False, "need mount_setattr and Linux 5.12", "boot Linux 5.12 or newer"))
    root = _root_fstype(h.read("/proc/self/mountinfo") or "")
    if root in ("rootfs", "ramfs"):
        out.append(Check("pivot_root", False, f"/ is the initramfs ({root}): pivot_root(2) refuses to move it (EINVAL)",
                         "boot with a real root filesystem (switch_root into it), or use run --chroot (escapable)",
                         needed=True))
    else:
        out.append(Check("pivot_root", True, f"/ is {root or 'a real filesystem'}, not an initramfs"))
    return out


def _root_fstype(mountinfo: str) -> str | None:
    fstype = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) > 4 and fields[4] == "/":
            fstype = right.split()[0]  # the last mount on / is the one seen
    return fstype


def check_ids(h: Host) -> list[Check]:
    from minicontainer.container.userns import parse_subids

    out = []
    helpers = [t for t in ("newuidmap", "newgidmap") if not h.which(t)]
    if helpers:
        out.append(Check("newuidmap/newgidmap", False, f"{' and '.join(helpers)} not found: rootless mode maps one uid",
                         "apt-get install uidmap"))
    else:
        out.append(Check("newuidmap/newgidmap", True, "found: rootless mode can map a range of uids"))
    user = h.user
    ranges = parse_subids(h.read("/etc/subuid") or "", user, -1)
    granges = parse_subids(h.read("/etc/subgid") or "", user, -1)
    if ranges and granges:
        start, count = ranges[0]
        out.append(Check("/etc/subuid", True, f"{user} has {count} subordinate uids from {start}"))
    else:
        out.append(Check("/etc/subuid", False, f"no range for {user} in /etc/subuid and /etc/subgid: "
                         "a rootless container has only uid 0",
                         f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"))
    if h.euid == 0:
        from minicontainer.container.userns import REMAP_USER, remap_setting

        remap = remap_setting() or REMAP_USER
        ranges = parse_subids(h.read("/etc/subuid") or "", remap, -1)
        granges = parse_subids(h.read("/etc/subgid") or "", remap, -1)
        if ranges and granges:
            out.append(Check("--userns range", True, f"root's --userns containers get {remap}'s ids from "
                             f"{ranges[0][0]} (uid 0 inside is {ranges[0][0]} outside)"))
        else:
            out.append(Check("--userns range", False, f"no range for {remap} in /etc/subuid and /etc/subgid: "
                             "root's --userns is refused", "./scripts/setup"))
    return out


def check_tools(h: Host) -> list[Check]:
    out = []
    tini = h.which("tini") or h.which("tini-static")
    if tini:
        out.append(Check("tini", True, f"{tini} (for --init: an init that reaps zombies and forwards signals)"))
    else:
        out.append(Check("tini", False, "not found: --init has no init to run", "apt-get install tini"))
    status = h.read("/proc/self/status") or ""
    actions = (h.read("/proc/sys/kernel/seccomp/actions_avail") or "").split()
    if "Seccomp:" not in status:
        out.append(Check("seccomp", False, "the kernel has no seccomp (no Seccomp: line in /proc/self/status)",
                         "use a kernel with CONFIG_SECCOMP_FILTER, or run with --security-opt seccomp=unconfined",
                         needed=True))
    elif actions and not {"errno", "kill_process"} <= set(actions):
        out.append(Check("seccomp", False, f"the kernel lacks filter actions errno/kill_process (has: {' '.join(actions)})",
                         "boot Linux 4.14 or newer, or run with --security-opt seccomp=unconfined", needed=True))
    else:
        out.append(Check("seccomp", True, "filters can return EPERM and kill (seccomp(2))"))
    return out


def check_python(h: Host) -> list[Check]:
    out = []
    for module, pkg, needed, use in (("prctl", "python-prctl", True, "capabilities and no_new_privs"),
                                     ("psutil", "psutil", False, "process details"),
                                     ("pyroute2", "pyroute2", False, "networks")):
        why = h.importable(module)
        if why is None:
            out.append(Check(f"python {module}", True, f"importable ({use})"))
        else:
            out.append(Check(f"python {module}", False, f"cannot be imported: {why}",
                             f"./scripts/setup, or pip install {pkg} (apt: python3-{pkg.replace('python-', '')})",
                             needed=needed))
    return out


def check_store(h: Host) -> list[Check]:
    free = h.free_bytes(h.store)
    if free is None:
        return [Check("store disk space", False, f"cannot stat {h.store}", "create it, or set MINICONTAINER_HOME")]
    from minicontainer.units import format_size

    if free < MIN_FREE_BYTES:
        return [Check("store disk space", False, f"{format_size(free)} free at {h.store}",
                      "free space there, or point MINICONTAINER_HOME elsewhere", needed=True)]
    return [Check("store disk space", True, f"{format_size(free)} free at {h.store}")]


CHECKS = (check_root, check_kernel, check_namespaces, check_cgroups, check_filesystems, check_ids, check_tools,
          check_python, check_store)


def run_checks(h: Host) -> list[Check]:
    out: list[Check] = []
    for check in CHECKS:
        out.extend(check(h))
    return out


def run_works(checks: list[Check]) -> bool:
    """Every check `run` needs passed, and root or (rootless) user namespaces."""
    by_name = {c.name: c for c in checks}
    privilege = by_name["root"].ok or by_name.get("namespace user", Check("", False, "")).ok
    return privilege and all(c.ok for c in checks if c.needed)


def features(checks: list[Check]) -> dict[str, bool]:
    ok = {c.name: c.ok for c in checks}
    root = ok.get("root", False)
    return {
        "run": run_works(checks),
        "limits": root and ok.get("cgroups", False) and not any(
            c.name == "cgroups writable" for c in checks),
        "rootless": ok.get("namespace user", False),
        "rootless uid ranges": ok.get("namespace user", False) and ok.get("newuidmap/newgidmap", False)
        and ok.get("/etc/subuid", False),
        "overlay": ok.get("overlayfs", False),
        "--init": ok.get("tini", False),
        "networks": ok.get("python pyroute2", False),
    }


def feature_line(checks: list[Check]) -> str:
    f = features(checks)
    yes = [k for k, v in f.items() if v]
    no = [k for k, v in f.items() if not v]
    return "features on this host: " + (", ".join(yes) or "none") + ("; not: " + ", ".join(no) if no else "")


def format_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'OK' if c.ok else 'missing':8} {c.name:{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':8} {'':{width}}  fix: {c.fix}")
    lines.append(feature_line(checks))
    return "\n".join(lines)


def to_json(checks: list[Check]) -> str:
    return json.dumps({"checks": [asdict(c) for c in checks], "features": features(checks),
                       "run_works": run_works(checks)}, indent=2)


def real_host() -> Host:
    from minicontainer import paths

    user = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    if not user:
        from minicontainer.container.userns import caller_name

        user = caller_name(os.geteuid())
    return Host(user=user, store=str(paths.home()))


@click.command(short_help="Check what this host offers minicontainer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
def doctor(fmt):
    """Check this host: privilege, kernel, namespaces, cgroups, overlayfs,
    pivot_root, user id ranges, tini, seccomp, Python modules, disk space.

    Each line says OK or missing, and how to fix what is missing; the last
    line lists the features that work here. Exits 0 when `run` works, 1
    otherwise.
    """
    checks = run_checks(real_host())
    click.echo(to_json(checks) if fmt == "json" else format_text(checks))
    return 0 if run_works(checks) else 1
