"""The spec becomes an ordered list of steps. Steps are plain data.

This is the teaching heart of minicontainer: ``--dry-run`` prints this list,
``--explain`` prints each step just before apply.py carries it out, and both
come from the same objects, so what you read is what runs.

Each step says *what* it does, *why* (with the man page), and the *shell*
command a person would type to do the same by hand. Paths written
``$ROOTFS/...`` are inside the container's new root; the runtime reaches them
through ``safepath.open_beneath`` so a symlink planted by the image can
never redirect a mount (reliability cases B11-B14).

Phases (``Step.phase``):

- ``parent``: done by the runtime before or around the fork (PID namespace,
  cgroup);
- ``child``: done by the forked child, which becomes the container, from
  unshare() up to execve().
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from minicontainer.syscalls.flags import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_STRICTATIME,
    mount_flag_names,
)

_UNSHARE_LONG = {"mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net", "pid": "--pid", "cgroup": "--cgroup"}
_NS_FLAG = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "cgroup": CLONE_NEWCGROUP,
}
_NS_WHY = {
    "mnt": "its own mount table, so mounts made for the container never reach the host",
    "uts": "its own hostname",
    "ipc": "its own System V IPC and POSIX message queues",
    "net": "its own network stack: only a loopback interface, no route out",
    "pid": "its own process numbers: the command becomes PID 1 and sees no host process",
    "cgroup": "its own view of /proc/self/cgroup, rooted at its cgroup",
}


@dataclass(frozen=True)
class Step:
    phase = "child"

    def what(self) -> str:  # one line
        raise NotImplementedError

    def why(self) -> str:
        return ""

    def shell(self) -> str:
        return ""


# --- parent phase --------------------------------------------------------


@dataclass(frozen=True)
class UnsharePid(Step):
    """unshare(CLONE_NEWPID) in the runtime: only its *next child* enters the new
    namespace, as PID 1. Doing it before fork avoids an extra process that
    would otherwise stay around as the namespace's parent."""

    phase = "parent"

    def what(self) -> str:
        return "create a new PID namespace for the next child"

    def why(self) -> str:
        return "pid_namespaces(7): the first process forked into it is PID 1 and sees only its own descendants"

    def shell(self) -> str:
        return "unshare --pid --fork ...   # (the --fork is the fork below)"


@dataclass(frozen=True)
class Fork(Step):
    phase = "parent"

    def what(self) -> str:
        return "fork the container's first process; it waits on a pipe until the runtime has set it up"

    def why(self) -> str:
        return "the child must be in its cgroup before it runs anything (no moment without limits)"

    def shell(self) -> str:
        return ""


@dataclass(frozen=True)
class CgroupStep(Step):
    """A cgroup operation the runtime does for the child.

    ``write`` is a ``cgroups.base.CgroupWrite`` (file, value, why, the file's
    name in the other cgroup version); cgroups/ decides them, this step only
    shows and carries them.
    """

    phase = "parent"
    write: object = None

    @property
    def stage(self) -> str:
        return self.write.stage  # create | limit | join

    def what(self) -> str:
        return self.write.describe()

    def why(self) -> str:
        return self.write.why or "cgroups(7)"

    def shell(self) -> str:
        return self.write.shell()


# --- child phase ---------------------------------------------------------


@dataclass(frozen=True)
class Unshare(Step):
    namespaces: tuple[str, ...] = ()

    @property
    def flags(self) -> int:
        out = 0
        for ns in self.namespaces:
            out |= _NS_FLAG[ns]
        return out

    def what(self) -> str:
        return "unshare namespaces: " + ", ".join(self.namespaces)

    def why(self) -> str:
        return "; ".join(f"{ns}: {_NS_WHY[ns]}" for ns in self.namespaces) + " (namespaces(7), unshare(2))"

    def shell(self) -> str:
        return "unshare " + " ".join(_UNSHARE_LONG[ns] for ns in self.namespaces)


@dataclass(frozen=True)
class MakeMountsPrivate(Step):
    def what(self) -> str:
        return "make every mount private (recursively)"

    def why(self) -> str:
        return (
            "mount_namespaces(7): a new mount namespace copies the host's shared mounts, and "
            "mount events would still propagate both ways; MS_PRIVATE|MS_REC cuts that"
        )

    def shell(self) -> str:
        return "mount --make-rprivate /"


@dataclass(frozen=True)
class MountRootfs(Step):
    """The container's root: an overlay (image as lower layer), or a bind mount.

    The overlay is mounted from inside the container's layer directory with
    relative option paths (``lowerdir=lower`` where ``lower`` is a symlink to
    the image), so the container's /proc/self/mountinfo shows no host paths.
    """

    target: str = ""  # <layer>/merged
    layer: str = ""  # the container's directory: lower -> image, upper/, work/, merged/
    lower: str = ""  # the image rootfs (for the bind mode and for reading)
    readonly: bool = False
    mode: str = "overlay"  # overlay | bind
    # False only for --read-only when no mountpoint must be made in the image:
    # then there is no upper layer at all. Otherwise the root gets one, and
    # --read-only remounts it read-only after the mountpoints exist.
    writable: bool = True

    @property
    def overlay_options(self) -> str:
        if not self.writable:
            # overlayfs wants two lower layers when there is no upper one; the
            # second is an empty directory, so the root is the image, read-only.
            return "lowerdir=lower:empty"
        return "lowerdir=lower,upperdir=upper,workdir=work"

    def what(self) -> str:
        if self.mode == "overlay":
            kind = "a read-only overlay" if not self.writable else "an overlay"
            return f"mount the root filesystem: {kind} of the image on {self.target}"
        return f"bind-mount {self.lower} on {self.target} as the root filesystem" + (" (read-only)" if self.readonly else "")

    def why(self) -> str:
        if self.mode == "overlay":
            return (
                "overlayfs: reads come from the image (lower, a link to it), writes go to this container's own "
                "upper directory, so the image is never modified and every container starts clean"
            )
        return "pivot_root(2) needs the new root to be a mount point; a bind mount of the directory makes it one"

    def shell(self) -> str:
        if self.mode == "overlay":
            return f"cd {self.layer} && mount -t overlay overlay -o {self.overlay_options} merged"
        ro = f" && mount -o remount,bind,ro {self.target}" if self.readonly else ""
        return f"mount --rbind {self.lower} {self.target}{ro}"


@dataclass(frozen=True)
class Mount(Step):
    """Mount a filesystem on a path inside the new root (never through a symlink)."""

    target: str = ""  # inside the container
    fstype: str | None = None
    source: str = "none"
    flags: int = 0
    data: str | None = None
    reason: str = ""
    create: str = "dir"  # dir | file | no : make the mountpoint if missing
    host_source: bool = False  # source is a host path (bind mounts)

    def what(self) -> str:
        if self.flags & MS_BIND:
            return f"bind-mount {self.source} on {self.target}" + (" read-only" if self.flags & MS_RDONLY else "")
        return f"mount {self.fstype} on {self.target}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        opts = [n for n in mount_flag_names(self.flags) if n not in ("bind", "rec")]
        if self.data:
            opts.append(self.data)
        o = f" -o {','.join(opts)}" if opts else ""
        if self.flags & MS_BIND:
            kind = "--rbind" if self.flags & MS_REC else "--bind"
            return f"mount {kind} {self.source} $ROOTFS{self.target}{o}"
        return f"mount -t {self.fstype} {self.source} $ROOTFS{self.target}{o}"


@dataclass(frozen=True)
class RemountReadonly(Step):
    """A bind mount ignores MS_RDONLY on the first call: a second, remount call sets it (mount(2))."""

    target: str = ""  # inside the container; "" = the root itself
    reason: str = ""

    def what(self) -> str:
        return f"make {self.target or '/'} read-only"

    def why(self) -> str:
        return self.reason or "mount(2): MS_RDONLY is applied to a bind mount by a separate MS_REMOUNT"

    def shell(self) -> str:
        return f"mount -o remount,bind,ro $ROOTFS{self.target}"


@dataclass(frozen=True)
class MakeDevice(Step):
    path: str = ""  # inside the container, under /dev (our own tmpfs)
    major: int = 0
    minor: int = 0
    mode: int = 0o666

    def what(self) -> str:
        return f"create the character device {self.path} ({self.major}:{self.minor})"

    def why(self) -> str:
        return "programs expect the standard devices; the host's /dev is not visible in the container"

    def shell(self) -> str:
        return f"mknod -m {self.mode:o} $ROOTFS{self.path} c {self.major} {self.minor}"


@dataclass(frozen=True)
class Symlink(Step):
    path: str = ""
    target: str = ""

    def what(self) -> str:
        return f"link {self.path} -> {self.target}"

    def why(self) -> str:
        return "the standard /dev links (see the OCI runtime spec's default devices)"

    def shell(self) -> str:
        return f"ln -s {self.target} $ROOTFS{self.path}"


@dataclass(frozen=True)
class MaskPath(Step):
    """Hide or freeze a kernel interface (from the security layer)."""

    path: str = ""
    kind: str = "mask_file"  # mask_file | mask_dir | readonly
    reason: str = ""

    def what(self) -> str:
        if self.kind == "readonly":
            return f"make {self.path} read-only"
        return f"mask {self.path}"

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        if self.kind == "mask_file":
            return f"mount --bind /dev/null $ROOTFS{self.path}"
        if self.kind == "mask_dir":
            return f"mount -t tmpfs -o ro tmpfs $ROOTFS{self.path}"
        return f"mount --bind $ROOTFS{self.path} $ROOTFS{self.path} && mount -o remount,bind,ro $ROOTFS{self.path}"


@dataclass(frozen=True)
class SetHostname(Step):
    hostname: str = ""

    def what(self) -> str:
        return f"set the hostname to {self.hostname}"

    def why(self) -> str:
        return "uts_namespaces(7): the change is seen only inside the container"

    def shell(self) -> str:
        return f"hostname {self.hostname}"


@dataclass(frozen=True)
class NewSession(Step):
    tty: bool = False

    def what(self) -> str:
        if self.tty:
            return "start a new session with the container's pty as controlling terminal"
        return "start a new session (no controlling terminal)"

    def why(self) -> str:
        return (
            "setsid(2): detaches from the host terminal so the container cannot push keystrokes "
            "into it with TIOCSTI (CVE-2017-5226)"
        )

    def shell(self) -> str:
        return "setsid"


@dataclass(frozen=True)
class PivotRoot(Step):
    root: str = ""

    def what(self) -> str:
        return f"pivot_root into {self.root} and detach the old root"

    def why(self) -> str:
        return (
            "pivot_root(2) swaps the root mount itself, and the detached old root is gone from the mount "
            "table, so unlike chroot there is no way back to the host's files"
        )

    def shell(self) -> str:
        return (
            f"cd {self.root} && pivot_root . . && umount -l .   "
            "# classic form: mkdir .old; pivot_root . .old; umount -l /.old; rmdir /.old"
        )


@dataclass(frozen=True)
class Chroot(Step):
    root: str = ""

    def what(self) -> str:
        return f"chroot into {self.root} (--chroot: escapable, for teaching only)"

    def why(self) -> str:
        return (
            "chroot(2) only changes how '/' is resolved; a root process can chroot again into a "
            "subdirectory and climb out with ../.. — pivot_root is the safe way"
        )

    def shell(self) -> str:
        return f"chroot {self.root}"


@dataclass(frozen=True)
class Exec(Step):
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"

    def what(self) -> str:
        return f"in {self.workdir}, exec {shlex.join(self.argv)}"

    def why(self) -> str:
        return (
            "execve(2) replaces the runtime's Python with the command, as PID 1; signal dispositions and the "
            "mask are reset and inherited fds closed first, so nothing of the runtime leaks in"
        )

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"cd {self.workdir} && exec env -i {env} {shlex.join(self.argv)}"


@dataclass(frozen=True)
class Note(Step):
    """A line of --explain that is not an action (e.g. a security summary)."""

    text: str = ""
    reason: str = ""
    command: str = ""  # the shell equivalent, if there is one

    def what(self) -> str:
        return self.text

    def why(self) -> str:
        return self.reason

    def shell(self) -> str:
        return self.command


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    # Long values shown as shell variables, e.g. {"ID": "<64 hex>"}: the
    # lines stay readable, and after `ID=...` they can be typed as they are.
    legend: dict[str, str] = field(default_factory=dict)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def phase(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.phase == name]

    def header(self) -> list[str]:
        """``NAME=value`` lines, each using the names before it (shell-ready)."""
        out = []
        for i, (k, v) in enumerate(self.legend.items()):
            earlier = dict(list(self.legend.items())[:i])
            out.append(f"{k}={_substitute(v, earlier)}")
        return out

    def render(self) -> str:
        """The --dry-run text: the legend, then numbered steps with why and shell equivalent."""
        lines = self.header()
        for i, step in enumerate(self.steps, 1):
            lines.extend(render_step(i, step, self.legend))
        return "\n".join(lines)


def render_step(i: int, step: Step, legend: dict[str, str] | None = None) -> list[str]:
    who = "runtime" if step.phase == "parent" else "container"
    out = [f"{i:2}. [{who}] {step.what()}"]
    if step.why():
        out.append(f"      why:   {step.why()}")
    if step.shell():
        out.append(f"      shell: {step.shell()}")
    return [_substitute(line, legend or {}) for line in out]


def _substitute(text: str, legend: dict[str, str]) -> str:
    """Replace each legend value by $NAME, longest value first."""
    for name, value in sorted(legend.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, "$" + name)
    return text


# --- building the plan ---------------------------------------------------

STANDARD_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
)


@dataclass(frozen=True)
class RootfsLayout:
    """Where the container's root comes from (decided by the runtime)."""

    lower: str  # the image rootfs or the user's directory
    layer: str  # the container's own directory (lower link, upper/, work/, merged/)
    mode: str = "overlay"  # overlay | bind
    writable: bool = True  # see MountRootfs.writable

    @property
    def target(self) -> str:
        return self.layer + "/merged"


def build_plan(
    spec,
    *,
    hostname: str,
    rootfs: RootfsLayout,
    cgroup_steps: list[Step] = (),
    security_steps: list[Step] = (),
    mask_steps: list[Step] = (),
    userns_steps: list[Step] = (),
    rootless: bool = False,
) -> Plan:
    """Turn a ContainerSpec into the ordered steps (pure: no syscalls).

    ``userns_steps`` (rootless mode, userns.py) come first: the runtime enters
    the user namespace before it makes the PID namespace. ``rootless`` binds
    the host's devices instead of creating them.
    """
    plan = Plan()
    for s in userns_steps:
        plan.add(s)
    if "pid" in spec.namespaces:
        plan.add(UnsharePid())
    plan.add(Fork())
    for s in cgroup_steps:
        plan.add(s)
    child_ns = tuple(ns for ns in ("mnt", "uts", "ipc", "net", "cgroup") if ns in spec.namespaces)
    plan.add(Unshare(namespaces=child_ns))
    plan.add(MakeMountsPrivate())
    plan.add(
        MountRootfs(
            target=rootfs.target,
            layer=rootfs.layer,
            lower=rootfs.lower,
            readonly=spec.read_only,
            mode=rootfs.mode,
            writable=rootfs.writable,
        )
    )
    plan.add(
        Mount(
            target="/proc",
            fstype="proc",
            source="proc",
            flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
            reason="proc(5): a fresh procfs shows only the processes of the new PID namespace",
            create="no",
        )
    )
    sys_flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if "net" in spec.namespaces:
        plan.add(
            Mount(
                target="/sys",
                fstype="sysfs",
                source="sysfs",
                flags=sys_flags,
                reason="sysfs(5), read-only: the container can look at devices but not reconfigure the host",
                create="no",
            )
        )
    else:
        # sysfs belongs to the network namespace that mounts it; with --network
        # host a fresh sysfs is refused, so bind the host's read-only instead.
        plan.add(
            Mount(
                target="/sys",
                source="/sys",
                flags=MS_BIND | MS_REC,
                reason="--network host: sysfs is tied to a network namespace, so the host's is bound in",
                create="no",
                host_source=True,
            )
        )
        plan.add(RemountReadonly(target="/sys", reason="the container must not reconfigure the host through /sys"))
    plan.add(
        Mount(
            target="/tmp",
            fstype="tmpfs",
            source="tmpfs",
            flags=MS_NOSUID | MS_NODEV,
            data="mode=1777",
            reason="a private, writable /tmp in memory, sticky like the host's (tmpfs(5))",
        )
    )
    plan.add(
        Mount(
            target="/dev",
            fstype="tmpfs",
            source="tmpfs",
            flags=MS_NOSUID | MS_STRICTATIME,
            data="mode=755,size=65536k",
            reason="a private /dev on its own tmpfs: whatever the image has under /dev is hidden, so "
            "nothing it planted there (symlinks to host files) is ever used (CVE-2025-31133)",
        )
    )
    for path, major, minor in STANDARD_DEVICES:
        if rootless:
            plan.add(
                Mount(
                    target=path,
                    source=path,
                    flags=MS_BIND,
                    reason="rootless: mknod(2) of a device needs CAP_MKNOD in the host's user namespace, "
                    "so the host's own device node is bind-mounted onto an empty file (as runc and podman do)",
                    create="file",
                    host_source=True,
                )
            )
        else:
            plan.add(MakeDevice(path=path, major=major, minor=minor))
    plan.add(
        Mount(
            target="/dev/pts",
            fstype="devpts",
            source="devpts",
            flags=MS_NOSUID | MS_NOEXEC,
            data="newinstance,ptmxmode=0666,mode=0620",
            reason="devpts(5) newinstance: the container's own ptys, not the host's",
        )
    )
    plan.add(
        Mount(
            target="/dev/shm",
            fstype="tmpfs",
            source="shm",
            flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data="mode=1777,size=65536k",
            reason="POSIX shared memory (shm_overview(7)), private to the container",
        )
    )
    for path, target in DEV_LINKS:
        plan.add(Symlink(path=path, target=target))
    # The user's mounts come after the standard ones, so a -v or --tmpfs on
    # /tmp or under /dev is not hidden by them (docker does the same).
    for vol in spec.volumes:
        plan.add(
            Mount(
                target=vol.target,
                source=vol.source,
                flags=MS_BIND | MS_REC,
                reason="-v: the host path appears inside the container; the mountpoint is created "
                "inside the root without following symlinks",
                create="dir" if vol.is_dir else "file",
                host_source=True,
            )
        )
        if vol.readonly:
            plan.add(RemountReadonly(target=vol.target, reason="-v ...:ro"))
    for t in spec.tmpfs:
        data = t.options or "mode=1777"
        plan.add(
            Mount(
                target=t.target,
                fstype="tmpfs",
                source="tmpfs",
                flags=MS_NOSUID | MS_NODEV,
                data=data,
                reason="--tmpfs: a private in-memory directory",
            )
        )
    for s in mask_steps:
        plan.add(s)
    if spec.read_only:
        plan.add(RemountReadonly(target="", reason="--read-only: the root filesystem cannot be written"))
    if "uts" in spec.namespaces:
        plan.add(SetHostname(hostname=hostname))
    plan.add(NewSession(tty=spec.tty))
    if spec.use_chroot:
        plan.add(Chroot(root=rootfs.target))
    else:
        plan.add(PivotRoot(root=rootfs.target))
    for s in security_steps:
        plan.add(s)
    env = spec.environment(hostname)
    plan.add(Exec(argv=spec.argv(), env=tuple(env.items()), workdir=spec.workdir))
    return plan
