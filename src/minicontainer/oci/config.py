"""An OCI bundle's config.json becomes our ContainerSpec. Pure: no syscalls.

The OCI runtime-spec (config.md, config-linux.md; versions 1.0 to 1.2)
describes a container completely: its process, root, mounts, namespaces,
limits and security. ``minicontainer-runc create`` reads it here into the
same frozen ContainerSpec that ``minicontainer run``'s flags build, so both
share one planner, interpreter and security layer.

Fail closed: a field that changes isolation and that the spec cannot express
is refused with an error naming it (a run with less isolation than asked for
must never start). Fields that change nothing about isolation (an AppArmor
profile name we do not load, a console size) are a debug line, returned in
``Bundle.notes``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from minicontainer.records import dataclass, field  # dataclasses without exec (records.py, issue 15)
from pathlib import Path

from minicontainer.errors import UsageError
from minicontainer.syscalls.flags import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY

SUPPORTED_VERSIONS = re.compile(r"^1\.[0-2]\.\d+(-.*)?$")
_MAX_CONFIG_BYTES = 16 << 20

# linux.namespaces[].type (config-linux.md "Namespaces") -> our names.
NAMESPACE_TYPES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                   "cgroup": "cgroup", "user": "user", "time": "time"}

# Mount options (config.md "Mounts", mount(8)) that are flags on a mount.
_FLAG_OPTIONS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
# Options that keep the default: they are what a mount gets anyway.
_DEFAULT_OPTIONS = {"rw", "suid", "dev", "exec", "async", "atime", "diratime", "relatime", "norelatime",
                    "nostrictatime", "strictatime", "noatime", "nodiratime", "private", "rprivate"}
# Propagation the container cannot have here: every mount in it is made
# private first (MakeMountsPrivate), so no event crosses to or from the host.
_PROPAGATION = {"shared", "rshared", "slave", "rslave", "unbindable", "runbindable"}
# tmpfs(5) and mqueue options that go to the filesystem as data.
_DATA_OPTIONS = ("size=", "mode=", "nr_inodes=", "nr_blocks=", "uid=", "gid=", "inode64", "huge=")

# The mounts our plan always makes itself (plan.build_plan): the bundle's
# own entries for these are covered by ours, which are at least as strict.
_STANDARD = {("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "tmpfs"), ("/dev/pts", "devpts")}

# Device nodes our plan creates (plan.STANDARD_DEVICES): config.json may list them.
_STANDARD_DEVICES = {("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
                     ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0), ("/dev/ptmx", 5, 2), ("/dev/console", 5, 1)}

# Kernel parameters a container may set (runc's rule, config-linux.md "Sysctl"):
# those of its own IPC namespace, and net.* with its own network namespace.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

_CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def refuse(where: str, what: str, hint: str = "remove it from config.json, or run this container with runc") -> UsageError:
    return UsageError(f"config.json: {where}: {what}", hint)


@dataclass
class Bundle:
    """What ``create`` needs from a bundle: the spec, the root, and notes for --debug."""

    spec: object  # a ContainerSpec
    root: str  # the root directory, absolute
    annotations: dict = field(default_factory=dict)
    version: str = ""
    notes: list = field(default_factory=list)  # what was accepted without effect, one line each


def load_bundle(bundle: str, name: str) -> Bundle:
    """Read ``bundle``/config.json (size-capped) and convert it."""
    from minicontainer.jsonfile import load_capped

    path = Path(bundle) / "config.json"
    doc = load_capped(path, _MAX_CONFIG_BYTES, str(path), "give the bundle directory with --bundle (it holds config.json)",
                      "is this really an OCI config.json?")
    return convert(doc, bundle=os.path.abspath(bundle), name=name)


def _obj(doc: dict, key: str, where: str) -> dict:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise refuse(where, "must be a JSON object", "see the OCI runtime-spec, config.md")
    return value


def _list(doc: dict, key: str, where: str) -> list:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise refuse(where, "must be a JSON list", "see the OCI runtime-spec, config.md")
    return value


def convert(doc: object, *, bundle: str, name: str) -> Bundle:
    """config.json (parsed) -> Bundle. Raises UsageError naming the field."""
    from minicontainer.container.spec import ALL_NAMESPACES, ContainerSpec, validate_hostname, validate_name

    if not isinstance(doc, dict):
        raise refuse("the top level", "must be a JSON object")
    notes: list[str] = []
    version = str(doc.get("ociVersion", ""))
    if not SUPPORTED_VERSIONS.match(version):
        raise refuse("ociVersion", f"{version!r} is not a version minicontainer knows (1.0.x to 1.2.x)",
                     "write a config.json for runtime-spec 1.0-1.2 (minicontainer-runc spec makes one)")
    validate_name(name)
    for key in ("solaris", "windows", "vm", "zos"):
        if key in doc:
            raise refuse(key, "another platform's section; this is a Linux runtime")
    hooks = _hooks(_obj(doc, "hooks", "hooks"))

    root = _obj(doc, "root", "root")
    root_path = root.get("path")
    if not isinstance(root_path, str) or not root_path:
        raise refuse("root.path", "is missing", "name the root filesystem directory, e.g. \"rootfs\"")
    root_dir = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(root_dir):
        raise refuse("root.path", f"{root_dir} is not a directory", "unpack the root filesystem into the bundle")

    linux = _obj(doc, "linux", "linux")
    joins: list[tuple[str, str]] = []
    namespaces = _namespaces(linux, joins)
    hostname = doc.get("hostname") or None
    if hostname is not None:
        if "uts" not in namespaces:
            raise refuse("hostname", "needs a new UTS namespace", "add {\"type\": \"uts\"} to linux.namespaces")
        validate_hostname(hostname)
    for key in ("domainname",):
        if doc.get(key):
            raise refuse(key, "is not supported", "remove it")

    annotations = _obj(doc, "annotations", "annotations")
    process = _obj(doc, "process", "process")
    args, env, cwd, tty = _process(process, notes)
    mounts = _mounts(_list(doc, "mounts", "mounts"), namespaces, notes)
    security = _security(process, linux, notes, bundle)
    devices = _devices(linux)
    resources = _resources(linux, notes, devices)
    sysctls = _sysctls(linux, namespaces)
    _linux_rest(linux, notes)
    user = security.user.split(":")
    id_mapping = _id_mapping(linux, namespaces, int(user[0]), int(user[1]),
                             tuple(int(g) for g in security.group_add))
    spec = ContainerSpec(
        image=root_dir,
        command=tuple(args),
        entrypoint=(),
        name=name,
        hostname=hostname,
        env=tuple(env),
        workdir=cwd,
        interactive=True,  # the engine's stdin is the container's (runc: the process inherits our stdio)
        tty=tty,
        namespaces=frozenset(ns for ns in namespaces if ns in ALL_NAMESPACES),
        read_only=bool(root.get("readonly")),
        mounts=tuple(mounts),
        sysctls=tuple(sysctls),
        join_namespaces=tuple(joins),
        id_mapping=id_mapping,
        resources=resources,
        security=security,
        devices=tuple(devices),
        hooks=hooks,
        # what each hook gets on stdin, but its pid and status (runtime-spec runtime.md "State")
        hook_state=json.dumps({"ociVersion": version, "id": name, "bundle": bundle,
                               "annotations": annotations}) if hooks else "",
    )
    return Bundle(spec=spec, root=root_dir, annotations=dict(annotations), version=version, notes=notes)


# -- hooks --------------------------------------------------------------------


def _hooks(doc: dict) -> tuple:
    """config.md "POSIX-platform Hooks": each kind a list of {path, args, env, timeout}."""
    from minicontainer.container.spec import HOOK_KINDS, Hook

    out = []
    for kind in doc:
        if kind not in HOOK_KINDS:
            raise refuse(f"hooks.{kind}", "is not a hook this runtime knows", f"use {', '.join(HOOK_KINDS)}")
    for kind in HOOK_KINDS:
        for i, h in enumerate(_list(doc, kind, f"hooks.{kind}")):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict):
                raise refuse(where, "must be an object")
            path = h.get("path")
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                raise refuse(f"{where}.path", f"{path!r} is not an absolute path")
            args = _list(h, "args", f"{where}.args")
            env = _list(h, "env", f"{where}.env")
            if not all(isinstance(a, str) and "\0" not in a for a in args):
                raise refuse(f"{where}.args", "must be a list of strings")
            if not all(isinstance(e, str) and "=" in e and "\0" not in e for e in env):
                raise refuse(f"{where}.env", "must be a list of KEY=VALUE strings")
            timeout = h.get("timeout")
            if timeout is not None and not (isinstance(timeout, int) and not isinstance(timeout, bool)
                                            and timeout > 0):
                raise refuse(f"{where}.timeout", f"{timeout!r} is not a number of seconds greater than zero")
            out.append(Hook(kind=kind, path=path, args=tuple(args), env=tuple(env), timeout=timeout))
    return tuple(out)


# -- process ------------------------------------------------------------------


def _process(process: dict, notes: list[str]) -> tuple[list[str], list[tuple[str, str]], str, bool]:
    args = _list(process, "args", "process.args")
    if not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise refuse("process.args", "must be a non-empty list of strings", "name the program to run")
    if process.get("commandLine"):
        raise refuse("process.commandLine", "is a Windows field")
    env = []
    for item in _list(process, "env", "process.env"):
        key, sep, value = str(item).partition("=")
        if not sep or not key or "\0" in item:
            raise refuse("process.env", f"{item!r} is not KEY=VALUE")
        env.append((key, value))
    cwd = process.get("cwd") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise refuse("process.cwd", f"{cwd!r} is not an absolute path")
    tty = bool(process.get("terminal"))
    if process.get("consoleSize"):
        notes.append("process.consoleSize: the engine sets the size on the terminal it receives")
    for key in ("apparmorProfile", "selinuxLabel"):
        if process.get(key):
            notes.append(f"process.{key} {process[key]!r}: minicontainer loads no LSM profile (not applied)")
    if process.get("oomScoreAdj"):
        raise refuse("process.oomScoreAdj", "is not supported yet", "remove it")
    if process.get("ioPriority") or process.get("scheduler") or process.get("execCPUAffinity"):
        raise refuse("process", "ioPriority, scheduler and execCPUAffinity are not supported")
    return args, env, cwd, tty


def _security(process: dict, linux: dict, notes: list[str], bundle: str):
    from minicontainer.security.caps import normalize_cap
    from minicontainer.security.config import SecurityConfig
    from minicontainer.security.rlimits import ULIMIT_NAMES, Ulimit

    user = _obj(process, "user", "process.user")
    if user.get("username"):
        raise refuse("process.user.username", "is a Windows field")
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if not (isinstance(uid, int) and isinstance(gid, int) and uid >= 0 and gid >= 0):
        raise refuse("process.user", "uid and gid must be numbers >= 0")
    groups = user.get("additionalGids") or []
    if not all(isinstance(g, int) and g >= 0 for g in groups):
        raise refuse("process.user.additionalGids", "must be numbers >= 0")
    if user.get("umask") is not None:
        notes.append("process.user.umask: not applied (the process keeps the runtime's umask, 022)")

    # Our security layer keeps one set: the bounding set, which is also the
    # effective and permitted set of a root process and empty for any other
    # user (inheritable and ambient always empty). Anything that would give
    # the process more than config.json asked for is refused.
    caps = _obj(process, "capabilities", "process.capabilities")
    sets = {}
    for name in _CAP_SETS:
        values = _list(caps, name, f"process.capabilities.{name}")
        try:
            sets[name] = frozenset(normalize_cap(c) for c in values)
        except UsageError as e:
            raise refuse(f"process.capabilities.{name}", e.message) from None
    bounding = sets["bounding"]
    if sets["ambient"]:
        # For uid 0 execve(2) gives the bounding set anyway (capabilities(7),
        # "Capabilities and execution of programs by root"): ambient adds nothing.
        if uid != 0:
            raise refuse("process.capabilities.ambient", "ambient capabilities for a non-root user are not supported",
                         "remove them (a non-root process runs with none)")
        if not sets["ambient"] <= bounding:
            raise refuse("process.capabilities.ambient", "holds capabilities the bounding set lacks")
        notes.append("process.capabilities.ambient: a root process gets its bounding set at exec anyway")
    for name in ("effective", "permitted"):
        if not sets[name] <= bounding:
            raise refuse(f"process.capabilities.{name}", "holds capabilities the bounding set lacks")
        if uid == 0 and sets[name] != bounding:
            raise refuse(f"process.capabilities.{name}", "differs from the bounding set",
                         "minicontainer gives a root process its bounding set as effective and permitted set")
        if uid != 0 and sets[name]:
            raise refuse(f"process.capabilities.{name}", "capabilities for a non-root user are not supported",
                         "give them to uid 0, or leave effective and permitted empty")
    if sets["inheritable"]:
        notes.append("process.capabilities.inheritable: left empty (without ambient ones it grants nothing at exec)")

    ulimits = []
    by_number = {v: k for k, v in ULIMIT_NAMES.items()}
    import resource

    for i, rl in enumerate(_list(process, "rlimits", "process.rlimits")):
        where = f"process.rlimits[{i}]"
        kind = str(rl.get("type", "")) if isinstance(rl, dict) else ""
        number = getattr(resource, kind, None) if kind.startswith("RLIMIT_") else None
        if number is None or number not in by_number:
            raise refuse(where, f"unknown type {kind!r}", "use RLIMIT_NOFILE, RLIMIT_NPROC ...")
        soft, hard = rl.get("soft"), rl.get("hard")
        if not (isinstance(soft, int) and isinstance(hard, int)):
            raise refuse(where, "soft and hard must be numbers")
        soft = resource.RLIM_INFINITY if soft >= 2**64 - 1 else soft
        hard = resource.RLIM_INFINITY if hard >= 2**64 - 1 else hard
        ulimits.append(Ulimit(by_number[number], soft, hard))

    profile = None
    seccomp = _obj(linux, "seccomp", "linux.seccomp")
    if seccomp:
        from minicontainer.security.seccomp_profile import parse_docker_profile

        # The OCI shape is the one Docker's profiles use (config-linux.md "Seccomp").
        profile = parse_docker_profile(seccomp, source=os.path.join(bundle, "config.json") + ":linux.seccomp")
    return SecurityConfig(
        cap_add=tuple(sorted(bounding)),
        cap_drop=("ALL",),
        no_new_privs=bool(process.get("noNewPrivileges")),
        # runtime-spec: no linux.seccomp, no filter (runc's behaviour).
        seccomp=profile.source if profile is not None else "unconfined",
        seccomp_profile=profile,
        masked_paths=tuple(_paths(linux, "maskedPaths")),
        readonly_paths=tuple(_paths(linux, "readonlyPaths")),
        ulimits=tuple(ulimits),
        user=f"{uid}:{gid}",
        group_add=tuple(str(g) for g in groups),
    )


def _paths(linux: dict, key: str) -> list[str]:
    out = []
    for p in _list(linux, key, f"linux.{key}"):
        if not isinstance(p, str) or not p.startswith("/") or ".." in p.split("/"):
            raise refuse(f"linux.{key}", f"{p!r} is not an absolute path without '..'")
        out.append(os.path.normpath(p))
    return out


# -- namespaces, mounts -------------------------------------------------------


# Namespaces a bundle may join by path (config-linux.md "Namespaces"): the
# child joins them with setns(2) before it makes its other ones. The PID
# namespace would have to be joined by the runtime before the fork, the mount
# namespace would bring another root: not supported.
_JOINABLE = ("net", "ipc", "uts", "cgroup")


def _namespaces(linux: dict, joins: list[tuple[str, str]] | None = None) -> set[str]:
    out = set()
    for i, ns in enumerate(_list(linux, "namespaces", "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACE_TYPES:
            raise refuse(where, f"unknown type {kind!r}", "use pid, network, mount, ipc, uts, cgroup")
        ours = NAMESPACE_TYPES[kind]
        if ns.get("path"):
            path = ns["path"]
            if ours not in _JOINABLE:
                raise refuse(f"{where}.path", f"joining an existing {kind} namespace is not supported",
                             "let the container get a new one (remove the path)")
            if not isinstance(path, str) or not path.startswith("/"):
                raise refuse(f"{where}.path", f"{path!r} is not an absolute path")
            if joins is not None:
                joins.append((ours, path))
        if ours == "time":
            raise refuse(where, f"a new {kind} namespace is not supported by minicontainer-runc yet")
        if ours in out:
            raise refuse(where, f"the {kind} namespace is listed twice")
        out.add(ours)
    if "mnt" not in out:
        raise refuse("linux.namespaces", "has no mount namespace",
                     "minicontainer always gives the container its own root; add {\"type\": \"mount\"}")
    if "pid" not in out:
        raise refuse("linux.namespaces", "has no pid namespace",
                     "sharing the host's PID namespace is not supported here; add {\"type\": \"pid\"}")
    return out


# At most this many lines in a uid_map or gid_map (user_namespaces(7), Linux 4.15 and later).
_MAX_MAP_LINES = 340
_ID_LIMIT = 1 << 32  # ids are 32-bit; (uid_t)-1 is never a valid id, so a range ends below it


def _id_mapping(linux: dict, namespaces: set[str], uid: int, gid: int, groups: tuple = ()):
    """linux.uidMappings/gidMappings (config-linux.md "User namespace mappings")
    -> the userns.IdMapping of the container's own user namespace, or None
    without one. The runtime writes it from outside, as for root's --userns
    (steps.WriteIdMaps): runc's order. Checked here as the kernel would, so
    a bad map is refused before anything exists; what the kernel still
    refuses fails the run naming the field (interpreter._write_id_maps)."""
    from minicontainer.container.userns import IdMapping, IdRange

    given = {key: _list(linux, key, f"linux.{key}") for key in ("uidMappings", "gidMappings")}
    if "user" not in namespaces:
        for key, entries in given.items():
            if entries:
                raise refuse(f"linux.{key}", "needs a user namespace",
                             "add {\"type\": \"user\"} to linux.namespaces, or remove the mappings")
        return None
    ranges = {}
    for key, entries in given.items():
        if not entries:
            raise refuse(f"linux.{key}", "is missing: a new user namespace needs uidMappings and gidMappings",
                         "map a range, e.g. [{\"containerID\": 0, \"hostID\": 200000, \"size\": 65536}]")
        if len(entries) > _MAX_MAP_LINES:
            raise refuse(f"linux.{key}", f"has {len(entries)} entries; the kernel takes at most {_MAX_MAP_LINES}")
        out = []
        for i, m in enumerate(entries):
            where = f"linux.{key}[{i}]"
            if not isinstance(m, dict):
                raise refuse(where, "must be an object with containerID, hostID and size")
            values = []
            for name in ("containerID", "hostID", "size"):
                v = m.get(name)
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise refuse(f"{where}.{name}", f"{v!r} is not a number >= 0")
                values.append(v)
            inside, outside, size = values
            if size == 0:
                raise refuse(f"{where}.size", "must be greater than zero")
            if inside + size >= _ID_LIMIT or outside + size >= _ID_LIMIT:
                raise refuse(where, "the range goes past the last id (4294967294)")
            out.append(IdRange(inside, outside, size))
        for side in ("inside", "outside"):
            spans = sorted((getattr(r, side), getattr(r, side) + r.count) for r in out)
            for (_, end), (start, _) in zip(spans, spans[1:]):
                if start < end:
                    name = "containerID" if side == "inside" else "hostID"
                    raise refuse(f"linux.{key}", f"ranges overlap (by {name}), which the kernel refuses")
        out.sort(key=lambda r: r.inside)
        if out[0].inside != 0:
            raise refuse(f"linux.{key}", "does not map containerID 0",
                         "the runtime becomes root of the user namespace to set the container up; map 0")
        ranges[key] = tuple(out)
    from minicontainer.container.userns import map_id

    def mapped(i, key):
        return map_id(i, [(r.inside, r.outside, r.count) for r in ranges[key]]) is not None

    if not mapped(uid, "uidMappings"):
        raise refuse("process.user.uid", f"{uid} is not mapped by linux.uidMappings")
    for g in (gid, *groups):
        if not mapped(g, "gidMappings"):
            raise refuse("process.user", f"gid {g} is not mapped by linux.gidMappings")
    return IdMapping(0, 0, "config.json", ranges["uidMappings"], ranges["gidMappings"], "remap", source="config.json")


def _mount_options(options: list, where: str, notes: list[str]) -> tuple[int, list[str], bool, bool]:
    """(flags, data options, is a bind, recursive)."""
    flags, data, bind, recursive = 0, [], False, False
    for opt in options:
        if not isinstance(opt, str):
            raise refuse(where, f"option {opt!r} is not a string")
        if opt in ("tmpcopyup", "notmpcopyup"):
            # podman's (crun's) extension: fill a tmpfs with what the image has below it
            notes.append(f"{where}: {opt}: not done, the tmpfs starts empty")
        elif opt in ("bind", "rbind"):
            bind, recursive = True, recursive or opt == "rbind"
        elif opt in _FLAG_OPTIONS:
            flags |= _FLAG_OPTIONS[opt]
        elif opt in _DEFAULT_OPTIONS:
            continue
        elif opt in _PROPAGATION:
            raise refuse(where, f"propagation {opt!r} is not supported",
                         "every mount of a minicontainer container is private; use rprivate")
        elif opt.startswith(_DATA_OPTIONS):
            data.append(opt)
        elif opt.startswith("r") and opt[1:] in _FLAG_OPTIONS:  # rro, rnosuid ...: mount_setattr(2)
            raise refuse(where, f"recursive option {opt!r} is not supported yet",
                         f"use {opt[1:]!r} (it applies to the mount itself, not to mounts below it)")
        else:
            raise refuse(where, f"unsupported mount option {opt!r}")
    return flags, data, bind, recursive


def _mounts(entries: list, namespaces: set[str], notes: list[str]):
    from minicontainer.container.spec import ExtraMount

    out = []
    for i, m in enumerate(entries):
        where = f"mounts[{i}]"
        if not isinstance(m, dict):
            raise refuse(where, "must be an object")
        target = m.get("destination")
        if not isinstance(target, str) or not target.startswith("/") or ".." in target.split("/"):
            raise refuse(f"{where}.destination", f"{target!r} is not an absolute path without '..'")
        target = os.path.normpath(target)
        if target == "/":
            raise refuse(f"{where}.destination", "a mount on / replaces the root", "use root.path")
        where = f"mounts[{i}] ({target})"
        for key in ("uidMappings", "gidMappings"):
            if m.get(key):
                raise refuse(where, f"{key} (idmapped mounts) are not supported")
        kind = m.get("type")
        if (target, kind) in _STANDARD:
            notes.append(f"{where}: {kind} is mounted by minicontainer itself (its own options)")
            continue
        if kind in ("cgroup", "cgroup2"):
            notes.append(f"{where}: {kind} not mounted (this host is hybrid; see /proc/self/cgroup)")
            continue
        flags, data, bind, recursive = _mount_options(m.get("options") or [], where, notes)
        source = m.get("source") or ""
        if kind in ("bind", "rbind") or bind:
            recursive = recursive or kind == "rbind"
            if not source.startswith("/"):
                raise refuse(where, f"bind source {source!r} is not an absolute path")
            if source == "/dev" or source.startswith("/dev/") and not source.startswith("/dev/shm"):
                raise refuse(where, f"binding the host's {source} is not supported",
                             "list the device in linux.devices: its node is made inside and allowed in the "
                             "device cgroup")
            if not os.path.exists(source):
                raise refuse(where, f"bind source {source} does not exist")
            out.append(ExtraMount(target=target, source=source, flags=flags, recursive=recursive,
                                  is_dir=os.path.isdir(source)))
            continue
        if kind == "mqueue":
            if "ipc" not in namespaces:
                raise refuse(where, "mqueue needs a new IPC namespace")
        elif kind == "tmpfs":
            pass
        elif kind in ("proc", "sysfs", "devpts"):
            raise refuse(where, f"{kind} at {target}: minicontainer mounts it only at its usual place")
        else:
            raise refuse(where, f"mount type {kind!r} is not supported",
                         "use bind, rbind, tmpfs, mqueue, proc, sysfs, devpts, cgroup")
        out.append(ExtraMount(target=target, source=source or kind, fstype=kind, flags=flags, data=",".join(data)))
    return out


# -- resources ----------------------------------------------------------------


def _resources(linux: dict, notes: list[str], nodes: list = ()):
    from minicontainer.cgroups.resources import CPU_PERIOD_US, parse_resources

    res = _obj(linux, "resources", "linux.resources")
    cgroups_path = _cgroups_path(linux.get("cgroupsPath"))
    device_rules = _device_rules(res, list(nodes))
    memory = _obj(res, "memory", "linux.resources.memory")
    cpu = _obj(res, "cpu", "linux.resources.cpu")
    pids = _obj(res, "pids", "linux.resources.pids")
    for key in ("blockIO", "hugepageLimits", "network", "rdma", "unified"):
        if _set(res.get(key)):
            raise refuse(f"linux.resources.{key}", "is not supported by minicontainer-runc yet")
    for key in ("kernel", "kernelTCP"):
        if memory.get(key):
            notes.append(f"linux.resources.memory.{key}: deprecated by the kernel, ignored (as runc does)")
    if memory.get("disableOOMKiller"):
        raise refuse("linux.resources.memory.disableOOMKiller", "is not supported")
    if memory.get("swappiness") is not None and memory.get("swappiness") != -1:
        notes.append("linux.resources.memory.swappiness: not applied")
    for key in ("realtimeRuntime", "realtimePeriod", "idle", "burst"):
        if cpu.get(key):
            raise refuse(f"linux.resources.cpu.{key}", "is not supported")
    quota, period = cpu.get("quota"), cpu.get("period")
    nano_cpus = None
    if quota and quota > 0:
        period = period or CPU_PERIOD_US
        nano_cpus = quota * 1_000_000_000 // period  # the same share of a CPU over our 100 ms period
    swap = memory.get("swap")

    def limit(v):
        return None if v is None or v <= 0 else v

    try:
        return parse_resources(
            memory=limit(memory.get("limit")),
            memory_swap=-1 if swap == -1 else limit(swap),
            memory_reservation=limit(memory.get("reservation")),
            cpus=nano_cpus,
            cpu_shares=cpu.get("shares") or None,
            cpuset_cpus=cpu.get("cpus") or None,
            cpuset_mems=cpu.get("mems") or None,
            pids_limit=(pids.get("limit") if pids.get("limit") not in (None, 0) else None),
            devices=device_rules,
            cgroup_path=cgroups_path,
        )
    except UsageError as e:
        raise refuse("linux.resources", e.message, e.hint or "") from None


def _cgroups_path(value) -> str | None:
    """linux.cgroupsPath (config-linux.md "Cgroups Path"), cgroupfs only: an
    absolute one is below each cgroup mount (podman: /libpod_parent/libpod-ID,
    docker: /docker/ID, containerd: /NAMESPACE/ID); a relative one is below
    minicontainer/ (the spec lets the runtime choose where)."""
    from minicontainer.cgroups.base import DEFAULT_PARENT

    if value in (None, ""):
        return None
    if not isinstance(value, str) or ":" in value:
        raise refuse("linux.cgroupsPath", f"{value!r} is not a cgroupfs path",
                     "slice:prefix:name is systemd's form; configure the engine with the cgroupfs manager")
    parts = [p for p in value.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith("cgroup.") or "\0" in p for p in parts):
        raise refuse("linux.cgroupsPath", f"{value!r} is not a path of plain names")
    return "/".join(parts if value.startswith("/") else [DEFAULT_PARENT, *parts])


def _set(value) -> bool:
    """Does this asks for anything? Engines send empty sections and zero
    values for what the user did not set (docker: "blockIO": {"weight": 0})."""
    if isinstance(value, dict):
        return any(_set(v) for v in value.values())
    if isinstance(value, list):
        return any(_set(v) for v in value)
    return value not in (None, 0, "", False)


def _sysctls(linux: dict, namespaces: set[str]) -> list[tuple[str, str]]:
    sysctl = _obj(linux, "sysctl", "linux.sysctl")
    out = []
    for key, value in sysctl.items():
        if not re.match(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$", key) or not isinstance(value, str):
            raise refuse(f"linux.sysctl {key!r}", "is not a sysctl name with a string value")
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                raise refuse(f"linux.sysctl {key!r}", "needs a new IPC namespace")
        elif key.startswith("net."):
            if "net" not in namespaces:
                raise refuse(f"linux.sysctl {key!r}", "needs a new network namespace")
        else:
            raise refuse(f"linux.sysctl {key!r}", "is not namespaced: setting it would change the host")
        out.append((key, value))
    return out


def _linux_rest(linux: dict, notes: list[str]) -> None:
    """The linux fields that only need a check."""
    prop = linux.get("rootfsPropagation")
    if prop and prop not in ("private", "rprivate"):
        raise refuse("linux.rootfsPropagation", f"{prop!r} is not supported", "use rprivate (the default here)")
    for key in ("intelRdt", "personality", "memoryPolicy", "netDevices"):
        if linux.get(key):
            raise refuse(f"linux.{key}", "is not supported")
    if linux.get("mountLabel"):
        notes.append("linux.mountLabel: no SELinux labels are applied")


# -- devices ------------------------------------------------------------------

_NODE_TYPES = {"c": "c", "u": "c", "b": "b"}  # config-linux.md "Devices": u is an unbuffered character device


def _devices(linux: dict) -> list:
    """linux.devices: the nodes to make inside (the --device machinery:
    plan.py's MakeDevice). As runc does, each also gets an ``rwm`` rule in
    the device allow-list (oci_device_rules adds it)."""
    from minicontainer.cgroups.devices import Device

    out = {}
    for i, dev in enumerate(_list(linux, "devices", "linux.devices")):
        where = f"linux.devices[{i}]"
        if not isinstance(dev, dict):
            raise refuse(where, "must be an object")
        path, kind = dev.get("path"), dev.get("type")
        if not isinstance(path, str) or not path.startswith("/dev/") or ".." in path.split("/") or "\0" in path:
            raise refuse(f"{where}.path", f"{path!r} is not an absolute path under /dev without '..'")
        path = os.path.normpath(path)
        if kind == "p":
            raise refuse(f"{where}.type", "FIFOs are not supported as devices", "make the FIFO in the image")
        if kind not in _NODE_TYPES:
            raise refuse(f"{where}.type", f"{kind!r} is not c, u or b")
        major, minor = dev.get("major"), dev.get("minor")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (major, minor)):
            raise refuse(where, "major and minor must be numbers >= 0")
        if (path, major, minor) in _STANDARD_DEVICES and _NODE_TYPES[kind] == "c":
            continue  # our plan makes this one anyway
        if dev.get("uid") not in (None, 0) or dev.get("gid") not in (None, 0):
            raise refuse(where, "a device node owned by another user than root is not supported",
                         "leave uid and gid out (0); the node's mode decides who opens it")
        mode = dev.get("fileMode", 0o666)
        if not isinstance(mode, int) or mode < 0:
            raise refuse(f"{where}.fileMode", f"{mode!r} is not a mode")
        if path in out:
            raise refuse(where, f"{path} is listed twice")
        out[path] = Device(host=path, path=path, kind=_NODE_TYPES[kind], major=major, minor=minor, access="rwm",
                           mode=stat.S_IMODE(mode))
    return list(out.values())


def _device_rules(res: dict, nodes: list) -> tuple:
    """linux.resources.devices (config-linux.md "Allowed Device List"), in
    order, onto our allow-list (cgroups/devices.py), whose start is "deny
    everything" and whose end is the standard devices (runc appends the same
    defaults after the bundle's rules, so a bundle cannot take them away).

    A deny of everything empties the list; a deny of exactly an earlier
    allow removes it. A deny that would cut a hole into a wider allow (deny
    c 1:3 after allow c *:* rwm) has no allow-list form: refused, since
    ignoring it would leave the device open."""
    from minicontainer.cgroups.devices import DeviceRule, valid_access

    rules: list = []
    for i, d in enumerate(_list(res, "devices", "linux.resources.devices")):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(d, dict):
            raise refuse(where, "must be an object")
        allow = d.get("allow")
        if not isinstance(allow, bool):
            raise refuse(f"{where}.allow", "must be true or false")
        kind = d.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise refuse(f"{where}.type", f"{kind!r} is not a, c or b")
        numbers = []
        for key in ("major", "minor"):
            n = d.get(key)
            if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= -1):
                raise refuse(f"{where}.{key}", f"{n!r} is not a device number")
            numbers.append(None if n in (None, -1) else n)
        access = d.get("access") or "rwm"
        if not valid_access(access):
            raise refuse(f"{where}.access", f"{access!r} is not a combination of r, w and m")
        access = "".join(c for c in "rwm" if c in access)
        if kind == "a" and (numbers != [None, None] or access != "rwm"):
            # devices.allow "a" means every device and every access (v1's devices.rst)
            raise refuse(where, "a rule for every type of device must be for every device and access 'rwm'")
        rule = DeviceRule(kind, numbers[0], numbers[1], access, f"config.json {where}")
        if allow:
            rules.append(rule)
        elif kind == "a":
            rules.clear()
        else:
            rules = [r for r in rules if r != rule]
            for r in rules:
                if _overlap(r, rule):
                    raise refuse(where, f"deny '{rule}' narrows the earlier allow '{r}', which a device allow-list "
                                 "cannot express", "list only the devices to allow, after one deny of everything")
    rules += [n.rule for n in nodes]
    return tuple(dict.fromkeys(rules))


def _overlap(a, b) -> bool:
    def same(x, y):
        return x is None or y is None or x == y

    return ((a.kind == "a" or b.kind == "a" or a.kind == b.kind) and same(a.major, b.major)
            and same(a.minor, b.minor) and bool(set(a.access) & set(b.access)))
