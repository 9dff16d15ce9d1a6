"""What the user asked for, as a frozen, validated value. No syscalls here.

The CLI turns flags into a :class:`ContainerSpec` with :func:`build_spec`;
everything that can be wrong with the input is found here, before any
directory, mount, cgroup or process exists (reliability cases H45-H47).
plan.py turns the spec into steps.
"""

from __future__ import annotations

import os
import re
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)
from typing import Any, Iterable

from minicontainer.errors import UsageError
from minicontainer.names import check_name
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

# Environment keys and hostnames (names are checked by names.py). Both are
# used with fullmatch: '$' would also match before a final newline, and
# "box\n" would reach sethostname(2).
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")

# The namespaces a container gets unless the user opts out (namespaces(7)).
ALL_NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup")
# Flags that can switch one off, docker-style: --pid host, --network host ...
OPTIONAL_NAMESPACES = {"pid": "pid", "network": "net", "uts": "uts", "ipc": "ipc", "cgroupns": "cgroup"}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_COMMAND = ("/bin/sh",)


def validate_name(name: str) -> str:
    return check_name(name, "container name", "use 1-64 letters, digits and _.-, starting with a letter or digit")


def validate_hostname(name: str) -> str:
    if len(name) > 64 or not _HOSTNAME_RE.fullmatch(name):
        raise UsageError(f"invalid hostname {name!r}", "use letters, digits, '-' and '.', at most 64 characters")
    return name


def parse_env(items: Iterable[str], host_env: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """``-e KEY=VAL`` (or ``-e KEY`` to copy the host's value, as docker does)."""
    host_env = os.environ if host_env is None else host_env
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not _ENV_KEY_RE.fullmatch(key):
            raise UsageError(f"invalid environment variable {item!r}", "use KEY=VALUE with a name of letters, digits and _")
        if "\n" in value or "\0" in value:
            raise UsageError(f"environment variable {key} contains a newline or NUL byte", "remove it")
        if not sep:
            if key not in host_env:
                continue  # docker drops -e KEY when KEY is unset on the host
            value = host_env[key]
        out.append((key, value))
    return tuple(out)


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart(text: str) -> tuple[str, int]:
    """``--restart no|on-failure[:N]|always|unless-stopped`` (docker's policies)."""
    policy, sep, count = text.partition(":")
    if policy not in RESTART_POLICIES or (sep and policy != "on-failure"):
        raise UsageError(f"invalid --restart {text!r}", "use no, on-failure[:N], always or unless-stopped")
    if sep and not (count.isdigit() and int(count) > 0):
        raise UsageError(f"invalid --restart {text!r}: the count must be a positive number", "e.g. on-failure:3")
    return policy, int(count) if sep else 0


def should_restart(policy: str, limit: int, exit_code: int, restarts: int, stopped: bool) -> bool:
    """Does the monitor start the container again after it exited with
    ``exit_code``? Never after a ``stop`` or ``kill`` by the user (docker)."""
    if stopped or policy == "no":
        return False
    if policy == "on-failure":
        return exit_code != 0 and (limit == 0 or restarts < limit)
    return True  # always, unless-stopped


def read_env_file(path: str) -> list[str]:
    """``--env-file``: KEY=VAL lines; blank lines and ``#`` comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read env file {path}: {e.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"env file {path} is not UTF-8 text", "save it as UTF-8") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


@dataclass(frozen=True)
class Volume:
    """``-v HOST:CONTAINER[:ro]`` — a bind mount of a host path."""

    source: str
    target: str
    readonly: bool = False
    is_dir: bool = True  # a file is bind-mounted onto a file


@dataclass(frozen=True)
class Tmpfs:
    """``--tmpfs PATH[:rw,noexec,nosuid,size=65536k,...]``.

    ``options`` is what the user wrote; mount(2) wants it split: ``flags``
    are the MS_* bits (ro, noexec, nosuid, nodev and their opposites, on top
    of the default nosuid,nodev) and ``data`` what tmpfs itself parses
    (size, mode, nr_inodes, uid, gid). Handing "noexec" to tmpfs as data is
    EINVAL.
    """

    target: str
    options: str = ""
    flags: int = MS_NOSUID | MS_NODEV
    data: str = ""


@dataclass(frozen=True)
class ExtraMount:
    """One of an OCI bundle's mounts (config.json "mounts", in their order,
    after the standard ones): a bind mount (``fstype`` None) or a filesystem
    (tmpfs, mqueue ...). ``flags``: MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC ...
    (on a bind mount they take a remount, mount(2))."""

    target: str
    source: str
    fstype: str | None = None
    flags: int = 0
    data: str = ""
    recursive: bool = True  # rbind (the source's submounts too) or bind
    is_dir: bool = True  # a bind of a file is made on a file


def parse_volume(text: str) -> Volume:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}", "use -v /host/path:/container/path[:ro]")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid volume mode {mode!r} in {text!r}", "use ro or rw")
    if not os.path.isabs(source):
        raise UsageError(f"volume source {source!r} is not an absolute path", "named volumes are not supported; give a host path")
    if not os.path.exists(source):
        raise UsageError(f"volume source {source} does not exist", "create it first")
    _check_container_path(target, "volume target")
    return Volume(os.path.abspath(source), os.path.normpath(target), mode == "ro", os.path.isdir(source))


# --tmpfs options that are mount flags (mount(2)): name -> (bits set, bits cleared)
_TMPFS_FLAGS = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
    "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV),
}
# ... and the ones tmpfs(5) itself parses, each with a value
_TMPFS_DATA = ("size", "mode", "nr_inodes", "uid", "gid")


def parse_tmpfs(text: str) -> Tmpfs:
    target, _, options = text.partition(":")
    _check_container_path(target, "tmpfs target")
    flags = MS_NOSUID | MS_NODEV
    data = []
    for opt in filter(None, options.split(",")):
        key, eq, value = opt.partition("=")
        if key in _TMPFS_FLAGS and not eq:
            on, off = _TMPFS_FLAGS[key]
            flags = (flags | on) & ~off
        elif key in _TMPFS_DATA and eq and value:
            data.append(opt)
        else:
            raise UsageError(f"unsupported tmpfs option {opt!r}",
                             "use size=64m, mode=1777, nr_inodes, uid, gid, ro/rw, noexec/exec, nosuid/suid, nodev/dev")
    return Tmpfs(os.path.normpath(target), options, flags, ",".join(data))


def _check_container_path(path: str, what: str) -> None:
    if not path.startswith("/"):
        raise UsageError(f"{what} {path!r} is not an absolute path", "paths inside the container start with /")
    if ".." in path.split("/"):
        raise UsageError(f"{what} {path!r} contains '..'", "give the path without '..'")
    if os.path.normpath(path) == "/":
        raise UsageError(f"{what} cannot be / itself", "choose a directory inside the container")


def _devices(values: Iterable[Any]) -> tuple[Any, ...]:
    """``--device`` values (strings, or already parsed by the CLI) as Devices."""
    values = tuple(values)
    if not values:
        return ()
    from minicontainer.cgroups.devices import parse_devices  # the rule for each one lives there

    return parse_devices(values)


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    hostname: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""  # -w; "" = the image's WorkingDir, else /
    entrypoint: tuple[str, ...] | None = None  # --entrypoint; None = the image's
    interactive: bool = False
    tty: bool = False
    remove: bool = False
    namespaces: frozenset[str] = frozenset(ALL_NAMESPACES)
    use_chroot: bool = False
    read_only: bool = False
    volumes: tuple[Volume, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    devices: tuple[Any, ...] = ()  # --device: cgroups.devices.Device (the node; its rule is in resources)
    network: str = ""  # --network NAME: a bridge network (network/); "" for none or host
    mounts: tuple[ExtraMount, ...] = ()  # an OCI bundle's other mounts (oci/config.py)
    sysctls: tuple[tuple[str, str], ...] = ()  # an OCI bundle's linux.sysctl, namespaced keys only
    # An OCI bundle's namespaces to join, (type, path): each is also in
    # ``namespaces`` (the container's own, not the host's), but not made new.
    join_namespaces: tuple[tuple[str, str], ...] = ()
    preserve_fds: int = 0  # minicontainer-runc --preserve-fds N: the engine's fds 3..3+N-1 reach the command
    init: bool = False  # --init: tini as PID 1, reaping orphans and forwarding signals
    restart: str = "no"  # --restart: no | on-failure | always | unless-stopped (the monitor applies it)
    restart_max: int = 0  # on-failure:N (0: no limit)
    # Filled by the cgroups and security layers (cgroups.resources.Resources,
    # security.config.SecurityConfig); None means "the defaults".
    resources: Any = None
    security: Any = None
    # The image's config (an images.config.ImageConfig), set by the runtime
    # once it knows the image (with_image); None: a flat image, no config.
    image_config: Any = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def argv(self) -> tuple[str, ...]:
        """docker run's rule: the entrypoint (--entrypoint's, else the
        image's), then the run's arguments, else the image's Cmd (which
        --entrypoint clears); with nothing at all, /bin/sh."""
        cfg = self.image_config
        entry = self.entrypoint if self.entrypoint is not None else (cfg.entrypoint if cfg else ())
        cmd = self.command or (cfg.cmd if cfg and self.entrypoint is None else ())
        return (tuple(entry) + tuple(cmd)) or DEFAULT_COMMAND

    def cwd(self) -> str:
        return self.workdir or (self.image_config.workdir if self.image_config else "") or "/"

    def environment(self, hostname: str) -> dict[str, str]:
        """The container's environment: docker's defaults, the image's Env, then -e/--env-file."""
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
        if self.tty:
            env["TERM"] = os.environ.get("TERM", "xterm")
        env.update(self.image_config.env if self.image_config else ())
        env.update(self.env)
        return env

    def with_image(self, config) -> ContainerSpec:
        """This spec on an image with ``config``: its User applies unless -u was given."""
        from dataclasses import replace

        security = self.security
        if config.user and security is not None and getattr(security, "user", None) is None:
            security = replace(security, user=config.user)
        return replace(self, image_config=config, security=security)


def build_spec(
    image: str,
    command: Iterable[str] = (),
    *,
    name: str | None = None,
    hostname: str | None = None,
    env: Iterable[str] = (),
    env_files: Iterable[str] = (),
    workdir: str | None = None,
    entrypoint: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    remove: bool = False,
    pid: str | None = None,
    network: str | None = None,
    uts: str | None = None,
    ipc: str | None = None,
    cgroupns: str | None = None,
    use_chroot: bool = False,
    read_only: bool = False,
    volumes: Iterable[str] = (),
    tmpfs: Iterable[str] = (),
    devices: Iterable[Any] = (),
    resources: Any = None,
    security: Any = None,
    host_env: dict[str, str] | None = None,
    init: bool = False,
    restart: str | None = None,
) -> ContainerSpec:
    """Validate CLI values into a ContainerSpec (raises UsageError)."""
    if not image:
        raise UsageError("no image given", "name an image (e.g. mini), a directory or a tarball")
    if name is not None:
        validate_name(name)
    if hostname is not None:
        validate_hostname(hostname)
    command = tuple(command)
    if command and command[0] == "":
        raise UsageError("the command is an empty string", "give a program to run, e.g. /bin/sh")
    namespaces = set(ALL_NAMESPACES)
    network_name = ""
    for flag, value in (("pid", pid), ("network", network), ("uts", uts), ("ipc", ipc), ("cgroupns", cgroupns)):
        if value is None:
            continue
        allowed = ("host", "none") if flag == "network" else ("host", "private")
        if flag == "network" and value not in allowed:
            from minicontainer.names import is_name

            if not is_name(value):
                raise UsageError(f"invalid --network value {value!r}",
                                 "use none (the default), host, bridge, or the name of a network")
            network_name = value
            continue
        if value not in allowed:
            hint = "'host' shares the host's network; 'none' (the default) gives a private one with only lo"
            if flag != "network":
                hint = "'host' shares the host's namespace; 'private' (the default) gives a new one"
            raise UsageError(f"invalid --{flag} value {value!r}", hint)
        if value == "host":
            namespaces.discard(OPTIONAL_NAMESPACES[flag])
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(f"working directory {workdir!r} is not absolute", "use -w /path")
    restart_policy, restart_max = parse_restart(restart or "no")
    if restart_policy != "no" and remove:
        raise UsageError("--restart and --rm contradict each other", "a container removed when it exits cannot restart")
    all_env = []
    for path in env_files:
        all_env.extend(read_env_file(path))
    all_env.extend(env)
    return ContainerSpec(
        image=image,
        command=command,
        name=name,
        hostname=hostname,
        env=parse_env(all_env, host_env),
        workdir=workdir or "",
        # docker: --entrypoint "" clears the image's entrypoint
        entrypoint=None if entrypoint is None else ((entrypoint,) if entrypoint else ()),
        interactive=interactive,
        tty=tty,
        remove=remove,
        namespaces=frozenset(namespaces),
        use_chroot=use_chroot,
        read_only=read_only,
        volumes=tuple(parse_volume(v) for v in volumes),
        tmpfs=tuple(parse_tmpfs(t) for t in tmpfs),
        devices=_devices(devices),
        network=network_name,
        init=init,
        restart=restart_policy,
        restart_max=restart_max,
        resources=resources,
        security=security,
    )
