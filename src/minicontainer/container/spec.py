"""What the user asked for, as a frozen, validated value. No syscalls here.

The CLI turns flags into a :class:`ContainerSpec` with :func:`build_spec`;
everything that can be wrong with the input is found here, before any
directory, mount, cgroup or process exists (reliability cases H45-H47).
plan.py turns the spec into steps.
"""

from __future__ import annotations

import ipaddress
import os
import re
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)

from minicontainer.errors import UsageError
from minicontainer.names import check_name
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of every run, issue 15)
if TYPE_CHECKING:
    from typing import Any, Iterable

# Environment keys and hostnames (names are checked by names.py). Both are
# used with fullmatch: '$' would also match before a final newline, and
# "box\n" would reach sethostname(2).
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")

# The namespaces a container gets unless the user opts out (namespaces(7)).
ALL_NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup")
# Flags that can switch one off, docker-style: --pid host, --network host ...
OPTIONAL_NAMESPACES = {"pid": "pid", "network": "net", "uts": "uts", "ipc": "ipc", "cgroupns": "cgroup"}

# --network, --pid, --ipc and --uts also take container:NAME: that container's
# namespace is joined (docker's "container" mode; the pod idea).
SHAREABLE = {"network": "net", "pid": "pid", "ipc": "ipc", "uts": "uts"}
CONTAINER_PREFIX = "container:"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_COMMAND = ("/bin/sh",)


def validate_name(name: str) -> str:
    return check_name(name, "container name", "use 1-64 letters, digits and _.-, starting with a letter or digit")


def validate_hostname(name: str) -> str:
    if len(name) > 64 or not _HOSTNAME_RE.fullmatch(name):
        raise UsageError(f"invalid hostname {name!r}", "use letters, digits, '-' and '.', at most 64 characters")
    return name


def parse_add_host(text: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or docker 25's ``NAME=IP``): one more /etc/hosts line."""
    sep = "=" if "=" in text else ":"
    name, found, ip = text.partition(sep)
    if not found or not name or not ip:
        raise UsageError(f"invalid --add-host {text!r}", "use NAME:IP, e.g. --add-host db.local:10.0.0.5")
    validate_hostname(name)
    if ip == "host-gateway":
        # docker fills in the host's address from its daemon configuration;
        # here the host has one address per network, and none for --network none
        raise UsageError(f"--add-host {name}:host-gateway is not supported",
                         "give the address itself: on a network, its gateway (minicontainer network inspect NAME)")
    return name, _ip_address(ip, f"--add-host {text!r}")


def _ip_address(text: str, what: str, *, v4_only: bool = False) -> str:
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise UsageError(f"invalid IP address {text!r} in {what}", "e.g. 10.89.0.5") from None
    if v4_only and addr.version != 4:
        raise UsageError(f"{what}: only IPv4 addresses are supported", "networks here are IPv4 only")
    return str(addr)


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
    """``-v HOST:CONTAINER[:ro]`` or ``--mount type=bind`` — a bind mount of a host path."""

    source: str
    target: str
    readonly: bool = False
    is_dir: bool = True  # a file is bind-mounted onto a file
    propagation: str = ""  # --mount bind-propagation: "" (rprivate), private, rprivate, slave, rslave


@dataclass(frozen=True)
class NamedVolume:
    """``-v NAME:/path``, ``--mount type=volume`` or (``anonymous``) ``-v /path``
    and the image's ``Volumes``: a directory of the volume store (volumes.py),
    created on first use and then filled from the image's files at the
    target, as Docker does (unless ``nocopy``)."""

    name: str
    target: str
    readonly: bool = False
    anonymous: bool = False  # removed with its container by rm -v and --rm
    nocopy: bool = False  # --mount volume-nocopy: a new volume stays empty


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


def check_volume_name(name: str) -> str:
    return check_name(name, "volume name", "use 1-64 letters, digits and _.-, starting with a letter or digit")


def anonymous_name() -> str:
    """Docker's anonymous volumes are named by 64 random hex digits."""
    return os.urandom(32).hex()


def parse_volume(text: str) -> Volume | NamedVolume:
    """``-v``: ``/host:/path[:ro]`` a bind mount; ``NAME:/path[:ro]`` a named
    volume; ``/path`` alone an anonymous volume (docker's three forms)."""
    parts = text.split(":")
    if len(parts) == 1 and parts[0]:
        _check_container_path(parts[0], "volume target")
        return NamedVolume(anonymous_name(), os.path.normpath(parts[0]), anonymous=True)
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}", "use -v /host/path:/container/path[:ro], NAME:/path or /path")
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    bad = [o for o in options if o not in ("ro", "rw", "nocopy")]
    if bad or ("ro" in options and "rw" in options):
        raise UsageError(f"invalid volume mode {parts[2]!r} in {text!r}", "use ro or rw (and nocopy for a named volume)")
    readonly = "ro" in options
    _check_container_path(target, "volume target")
    if not os.path.isabs(source):
        if source.startswith(".") or "/" in source or source == "~" or source.startswith("~/"):
            # docker's "./dist may not work" pitfall: a relative path is not a host directory to -v
            raise UsageError(f"volume source {source!r} is a relative path: a bind mount needs an absolute one",
                             f"use -v {_absolute_hint(source)}:{target} (e.g. \"$(pwd)\"/dist), "
                             "or a plain NAME for a named volume")
        check_volume_name(source)
        return NamedVolume(source, os.path.normpath(target), readonly, nocopy="nocopy" in options)
    if "nocopy" in options:
        raise UsageError(f"nocopy in {text!r} is for a named volume, not a host path", "drop nocopy")
    return _bind(source, target, readonly)


def _absolute_hint(source: str) -> str:
    return os.path.abspath(os.path.expanduser(source))


def _bind(source: str, target: str, readonly: bool, propagation: str = "") -> Volume:
    if not os.path.isabs(source):
        raise UsageError(f"bind source {source!r} is a relative path: a bind mount needs an absolute one",
                         f"use source={_absolute_hint(source)} (e.g. source=\"$(pwd)\"/dist)")
    if not os.path.exists(source):
        raise UsageError(f"volume source {source} does not exist", "create it first")
    _check_container_path(target, "volume target")
    return Volume(os.path.abspath(source), os.path.normpath(target), readonly, os.path.isdir(source), propagation)


# --mount bind-propagation values (mount_namespaces(7)); shared ones are
# refused: they would let the container's mounts reach the host's table.
BIND_PROPAGATIONS = ("private", "rprivate", "slave", "rslave")
_MOUNT_KEYS = {
    "bind": {"source", "target", "readonly", "bind-propagation"},
    "volume": {"source", "target", "readonly", "volume-nocopy"},
    "tmpfs": {"target", "readonly", "tmpfs-size", "tmpfs-mode"},
}
_MOUNT_ALIASES = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}


def _mount_bool(key: str, value: str | None, text: str) -> bool:
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise UsageError(f"invalid --mount {key} value {value!r} in {text!r}", "use true or false (or just the key)")


def parse_mount(text: str) -> Volume | NamedVolume | Tmpfs:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]``
    (docker's comma-separated key=value form; type defaults to volume)."""
    fields: dict[str, str | None] = {}
    for item in text.split(","):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = _MOUNT_ALIASES.get(key.strip().lower(), key.strip().lower())
        if key in fields:
            raise UsageError(f"--mount {key} given twice in {text!r}", "give each key once")
        fields[key] = value if eq else None
    kind = fields.pop("type", None) or "volume"
    fields.pop("consistency", None)  # docker accepts it and ignores it on Linux (a macOS file-sharing hint)
    if kind not in _MOUNT_KEYS:
        raise UsageError(f"unsupported --mount type {kind!r}", "use type=bind, type=volume or type=tmpfs")
    unknown = sorted(set(fields) - _MOUNT_KEYS[kind])
    if unknown:
        raise UsageError(f"unknown --mount key {unknown[0]!r} for type={kind} in {text!r}",
                         "keys: " + ", ".join(["type", *sorted(_MOUNT_KEYS[kind])]))
    target = fields.get("target")
    if not target:
        raise UsageError(f"--mount {text!r} has no target", "add target=/path/in/container")
    readonly = _mount_bool("readonly", fields["readonly"], text) if "readonly" in fields else False
    source = fields.get("source")
    if kind == "bind":
        if not source:
            raise UsageError(f"--mount type=bind {text!r} has no source", "add source=/absolute/host/path")
        propagation = fields.get("bind-propagation") or ""
        if propagation and propagation not in BIND_PROPAGATIONS:
            hint = "use private, rprivate (the default), slave or rslave"
            if propagation in ("shared", "rshared"):
                hint = ("shared propagation would let the container's mounts reach the host's mount table; " + hint)
            raise UsageError(f"unsupported bind-propagation {propagation!r}", hint)
        return _bind(source, target, readonly, "" if propagation == "rprivate" else propagation)
    if kind == "volume":
        _check_container_path(target, "volume target")
        nocopy = _mount_bool("volume-nocopy", fields["volume-nocopy"], text) if "volume-nocopy" in fields else False
        if not source:
            return NamedVolume(anonymous_name(), os.path.normpath(target), readonly, anonymous=True, nocopy=nocopy)
        if source.startswith("/") or source.startswith(".") or "/" in source:
            raise UsageError(f"volume source {source!r} is a path, not a volume name",
                             f"for a host directory use --mount type=bind,source={_absolute_hint(source)},"
                             f"target={target}")
        check_volume_name(source)
        return NamedVolume(source, os.path.normpath(target), readonly, nocopy=nocopy)
    options = []
    if "tmpfs-size" in fields:
        from minicontainer.units import parse_size

        options.append(f"size={parse_size(fields['tmpfs-size'] or '', 'tmpfs-size')}")
    if "tmpfs-mode" in fields:
        mode = fields["tmpfs-mode"] or ""
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise UsageError(f"invalid tmpfs-mode {mode!r}", "an octal mode, e.g. 1777 or 700")
        options.append(f"mode={mode}")
    if readonly:
        options.append("ro")
    return parse_tmpfs(target + (":" + ",".join(options) if options else ""))


def check_unique_targets(spec_mounts: Iterable[Any]) -> None:
    """Docker: one mount per container path ("Duplicate mount point")."""
    seen = set()
    for m in spec_mounts:
        if m.target in seen:
            raise UsageError(f"duplicate mount point {m.target}", "give each -v/--mount/--tmpfs its own container path")
        seen.add(m.target)


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


# The OCI hook points (runtime-spec config.md "POSIX-platform Hooks"), in the order they run.
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


@dataclass(frozen=True)
class Hook:
    """One OCI hook: a program run with the container's state JSON on its stdin."""

    kind: str  # one of HOOK_KINDS
    path: str  # absolute; in the runtime's namespaces, but for startContainer the container's
    args: tuple[str, ...] = ()  # argv, argv[0] included (the path when empty)
    env: tuple[str, ...] = ()  # KEY=VALUE: all the environment it gets
    timeout: int | None = None  # seconds; killed (and failed) after


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
    named_volumes: tuple[NamedVolume, ...] = ()  # -v NAME:/path, -v /path, --mount type=volume, the image's Volumes
    devices: tuple[Any, ...] = ()  # --device: cgroups.devices.Device (the node; its rule is in resources)
    network: str = ""  # --network NAME: a bridge network (network/); "" for none or host
    ports: tuple[Any, ...] = ()  # -p: network.ports.PortMapping, in the order given
    publish_all: bool = False  # -P: the image's ExposedPorts too (published_ports)
    mounts: tuple[ExtraMount, ...] = ()  # an OCI bundle's other mounts (oci/config.py)
    sysctls: tuple[tuple[str, str], ...] = ()  # an OCI bundle's linux.sysctl, namespaced keys only
    # An OCI bundle's namespaces to join, (type, path): each is also in
    # ``namespaces`` (the container's own, not the host's), but not made new.
    join_namespaces: tuple[tuple[str, str], ...] = ()
    preserve_fds: int = 0  # minicontainer-runc --preserve-fds N: the engine's fds 3..3+N-1 reach the command
    # --network/--pid/--ipc/--uts container:NAME, as (namespace, container):
    # the container is the id once the runtime has found it (config.json,
    # inspect's NetworkMode container:ID). Each is also in ``namespaces``.
    share_with: tuple[tuple[str, str], ...] = ()
    network_aliases: tuple[str, ...] = ()  # --network-alias: more names of it on its network
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host NAME:IP
    dns: tuple[str, ...] = ()  # --dns: the nameservers of its /etc/resolv.conf ("": the host's)
    ip: str = ""  # --ip: a fixed address on its (user-defined) network
    # An OCI bundle's hooks, and the state JSON they get without its pid and
    # status (ociVersion, id, bundle, annotations): filled in when each runs.
    hooks: tuple[Hook, ...] = ()
    hook_state: str = ""
    init: bool = False  # --init: tini as PID 1, reaping orphans and forwarding signals
    restart: str = "no"  # --restart: no | on-failure | always | unless-stopped (the monitor applies it)
    restart_max: int = 0  # on-failure:N (0: no limit)
    # --userns as root (or the userns-remap setting): the user whose subordinate
    # range the container is in, kept so `start` maps it to the same range again
    # ("" for none). Set by the runtime (Runner.make_plan).
    userns_remap: str = ""
    # An OCI bundle's linux.uidMappings/gidMappings with a user namespace
    # (oci/config.py): a userns.IdMapping the runtime writes for the child,
    # as for --userns as root, with the bundle's root used as it is.
    id_mapping: Any = None
    # Filled by the cgroups and security layers (cgroups.resources.Resources,
    # security.config.SecurityConfig); None means "the defaults".
    resources: Any = None
    security: Any = None
    # The image's config (an images.config.ImageConfig), set by the runtime
    # once it knows the image (with_image); None: a flat image, no config.
    image_config: Any = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def hooks_of(self, kind: str) -> tuple[Hook, ...]:
        return tuple(h for h in self.hooks if h.kind == kind)

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

    def published_ports(self) -> tuple[Any, ...]:
        """-p, then with -P every port the image exposes that no -p publishes (docker's rule)."""
        if not self.ports and not self.publish_all:
            return ()
        from minicontainer.network import ports

        exposed = ports.exposed(self.image_config.exposed_ports) if self.publish_all and self.image_config else ()
        return ports.merge(self.ports, exposed)

    def with_image(self, config) -> ContainerSpec:
        """This spec on an image with ``config``: its User applies unless -u was given."""
        from minicontainer.records import replace

        security = self.security
        if config.user and security is not None and getattr(security, "user", None) is None:
            security = replace(security, user=config.user)
        return replace(self, image_config=config, security=security,
                       named_volumes=self.named_volumes + self._image_volumes(config))

    def _image_volumes(self, config) -> tuple[NamedVolume, ...]:
        """The image's ``Volumes`` (Dockerfile VOLUME) no mount of the run
        covers: an anonymous volume each, as docker makes (issue 16). A spec
        read back for a restart has them already, so none is added twice."""
        covered = {m.target for m in (*self.volumes, *self.tmpfs, *self.named_volumes)}
        out = []
        for path in getattr(config, "volumes", ()):
            try:
                _check_container_path(path, "image volume")
            except UsageError as e:
                from minicontainer.errors import ImageError

                raise ImageError(f"the image's config names a bad volume: {e.message}",
                                 "the image's Volumes must be absolute container paths", exit_code=125) from None
            target = os.path.normpath(path)
            if target not in covered:
                covered.add(target)
                out.append(NamedVolume(anonymous_name(), target, anonymous=True))
        return tuple(out)


def _published(publish: tuple[str, ...], publish_all: bool, network: str | None, network_name: str):
    """-p/-P: the parsed ports and the network they need. As docker: with
    --network host or none they are discarded with a warning (host: the
    container's ports are the host's already; none: there is nothing to
    forward to); with another container's network they conflict. docker's
    default network is ``bridge``; here it is ``none``, so -p without
    --network joins ``bridge``, as the same command does with docker."""
    if not publish and not publish_all:
        return (), network_name
    from minicontainer.errors import warn
    from minicontainer.network import ports

    parsed = tuple(ports.parse_publish(p) for p in publish)
    ports.check_unique(parsed)
    if network is not None and network.startswith("container:"):
        raise UsageError("conflicting options: port publishing and the container type network mode",
                         "publish the ports on the container whose network this one joins")
    if network in ("host", "none"):
        warn(f"published ports are discarded when using the {network} network"
             + (" (the container's ports are the host's)" if network == "host" else " (it has no address to forward to)"))
        return (), network_name
    return parsed, network_name or "bridge"


def _check_names(shared: dict, network: str, hostname, aliases, add_hosts, dns, ip) -> dict:
    """--network-alias, --add-host, --dns, --ip: checked against the network
    mode as docker does (its messages: "conflicting options ...")."""
    if "net" in shared:
        for flag, given in (("--hostname", hostname), ("--network-alias", aliases), ("--add-host", add_hosts),
                            ("--dns", dns), ("--ip", ip)):
            if given:
                raise UsageError(f"conflicting options: {flag} and --network container:{shared['net']}",
                                 "a container on another's network namespace uses that container's hostname, "
                                 "/etc/hosts and /etc/resolv.conf; give the option to that one")
    if "uts" in shared and hostname:
        raise UsageError(f"conflicting options: --hostname and --uts container:{shared['uts']}",
                         "the hostname is the one of the container whose UTS namespace is joined")
    user_defined = network not in ("", "bridge")
    if aliases and not user_defined:
        raise UsageError("--network-alias needs a user-defined network",
                         "create one (minicontainer network create NAME) and run with --network NAME")
    if ip and not user_defined:
        raise UsageError("--ip needs a user-defined network",
                         "create one with a --subnet (minicontainer network create --subnet CIDR NAME) and use it")
    for alias in aliases:
        validate_hostname(alias)
    return dict(
        network_aliases=tuple(dict.fromkeys(aliases)),
        extra_hosts=tuple(parse_add_host(h) for h in add_hosts),
        dns=tuple(_ip_address(d, f"--dns {d!r}") for d in dns),
        ip=_ip_address(ip, f"--ip {ip!r}", v4_only=True) if ip else "",
    )


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
    mount: Iterable[str] = (),
    devices: Iterable[Any] = (),
    resources: Any = None,
    security: Any = None,
    host_env: dict[str, str] | None = None,
    init: bool = False,
    restart: str | None = None,
    publish: Iterable[str] = (),
    publish_all: bool = False,
    network_aliases: Iterable[str] = (),
    add_hosts: Iterable[str] = (),
    dns: Iterable[str] = (),
    ip: str | None = None,
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
    share_with = []
    for flag, value in (("pid", pid), ("network", network), ("uts", uts), ("ipc", ipc), ("cgroupns", cgroupns)):
        if value is None:
            continue
        if flag in SHAREABLE and value.startswith(CONTAINER_PREFIX):
            target = value[len(CONTAINER_PREFIX):]
            check_name(target, "container name", f"use --{flag} container:NAME with the name or id of a running "
                       "container", used_as=f"--{flag}")
            share_with.append((SHAREABLE[flag], target))
            continue
        allowed = ("host", "none") if flag == "network" else ("host", "private")
        if flag == "network" and value not in allowed:
            from minicontainer.names import is_name

            if not is_name(value):
                raise UsageError(f"invalid --network value {value!r}",
                                 "use none (the default), host, bridge, container:NAME, or the name of a network")
            network_name = value
            continue
        if value not in allowed:
            hint = "'host' shares the host's network; 'none' (the default) gives a private one with only lo"
            if flag != "network":
                hint = "'host' shares the host's namespace; 'private' (the default) gives a new one"
                if flag in SHAREABLE:
                    hint += "; container:NAME joins that container's"
            raise UsageError(f"invalid --{flag} value {value!r}", hint)
        if value == "host":
            namespaces.discard(OPTIONAL_NAMESPACES[flag])
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(f"working directory {workdir!r} is not absolute", "use -w /path")
    published, network_name = _published(tuple(publish), publish_all, network, network_name)
    names = _check_names(dict(share_with), network_name, hostname, tuple(network_aliases), tuple(add_hosts),
                         tuple(dns), ip)
    restart_policy, restart_max = parse_restart(restart or "no")
    if restart_policy != "no" and remove:
        raise UsageError("--restart and --rm contradict each other", "a container removed when it exits cannot restart")
    all_env = []
    for path in env_files:
        all_env.extend(read_env_file(path))
    all_env.extend(env)
    # -v, --mount and --tmpfs, each sorted by kind (plan.py orders the mounts by path)
    binds, named, tmpfs_mounts = [], [], [parse_tmpfs(t) for t in tmpfs]
    for m in [parse_volume(v) for v in volumes] + [parse_mount(m) for m in mount]:
        (binds if isinstance(m, Volume) else named if isinstance(m, NamedVolume) else tmpfs_mounts).append(m)
    check_unique_targets([*binds, *named, *tmpfs_mounts])
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
        volumes=tuple(binds),
        tmpfs=tuple(tmpfs_mounts),
        named_volumes=tuple(named),
        devices=_devices(devices),
        network=network_name,
        ports=published,
        publish_all=publish_all and bool(network_name),
        share_with=tuple(share_with),
        **names,
        init=init,
        restart=restart_policy,
        restart_max=restart_max,
        resources=resources,
        security=security,
    )
