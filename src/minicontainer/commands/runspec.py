"""``run``'s work once its flags are parsed: the flags become a validated
ContainerSpec, the spec a Runner, and the Runner runs (or --dry-run prints
the plan). No click here: ``minicontainer run`` reaches this module either
through click (commands/run.py) or through the lean parser
(commands/fastparse.py), which skips click's import on the start path.

The resource and security flags are parsed by their own layers
(cgroups/resources.py, security/config.py), imported only when ``run``
runs. Those imports are never guarded: a build missing either layer fails
instead of running a container with fewer limits than asked for.
"""

from __future__ import annotations

import sys

from minicontainer.errors import UsageError, warn


def _resources(opts: dict, devices=()):
    keys = (
        "memory",
        "memory_swap",
        "memory_reservation",
        "cpus",
        "cpu_shares",
        "cpuset_cpus",
        "cpuset_mems",
        "pids_limit",
        "device_read_bps",
        "device_write_bps",
        "cgroup_parent",
    )
    given = {k: opts[k] for k in keys if opts.get(k) not in (None, ())}
    if devices:
        given["devices"] = devices  # each --device adds its rule to the device allow-list
    if opts.get("privileged"):
        given["all_devices"] = True  # as Docker: no device allow-list
    # Imported here, not at the top, so `run --help` stays cheap; never
    # guarded: a build that cannot limit resources must not run at all.
    from minicontainer.cgroups.resources import parse_resources

    return parse_resources(**given)


def _security(opts: dict):
    keys = ("cap_add", "cap_drop", "privileged", "security_opt", "ulimit", "user", "group_add")
    given = {k: opts[k] for k in keys if opts.get(k) not in (None, (), False)}
    # Lazily imported and never guarded, as _resources: a missing or broken
    # security layer is an error, not a container with less isolation.
    from minicontainer.security.config import parse_security

    return parse_security(**given)


def spec_from_options(image, command, opts: dict):
    """The flags of `run`/`create` (as click parsed them) as a validated
    ContainerSpec; also the Python API's path (api.py), so both validate alike."""
    from minicontainer.cgroups.devices import parse_devices
    from minicontainer.container.spec import build_spec

    if command[:1] == ("--",):
        command = command[1:]
    devices = parse_devices(opts.get("device") or ())
    spec = build_spec(
        image,
        command,
        name=opts["name"],
        hostname=opts["hostname"],
        env=opts["env"],
        env_files=opts["env_file"],
        workdir=opts["workdir"],
        entrypoint=opts["entrypoint"],
        interactive=opts["interactive"],
        tty=opts["tty"],
        remove=opts["remove"],
        pid=opts["pid"],
        network=opts["network"],
        uts=opts["uts"],
        ipc=opts["ipc"],
        cgroupns=opts["cgroupns"],
        use_chroot=opts["use_chroot"],
        read_only=opts["read_only"],
        volumes=opts["volume"],
        tmpfs=opts["tmpfs"],
        mount=opts.get("mount") or (),
        devices=devices,
        init=opts["init"],
        restart=opts["restart"],
        publish=opts.get("publish") or (),
        publish_all=opts.get("publish_all", False),
        network_aliases=opts.get("network_alias") or (),
        add_hosts=opts.get("add_host") or (),
        dns=opts.get("dns") or (),
        ip=opts.get("ip"),
        resources=_resources(opts, devices),
        security=_security(opts),
    )
    return spec


def check_terminal(spec) -> None:
    """A foreground -it needs our stdin to be a terminal (a detached one does not: attach brings one)."""
    if spec.tty and spec.interactive and (sys.stdin is None or not sys.stdin.isatty()):
        raise UsageError("the input device is not a TTY", "drop -t (keep -i to pipe input), or run from a terminal")


def run_container(image, command, opts: dict, *, explain: bool, dry_run: bool, userns: bool, detach: bool,
                  report_path: str | None) -> int:
    """``run``: ``opts`` are the container flags as click parses them (a
    dict of every option's dest, defaults included)."""
    from minicontainer.container.runtime import Runner

    spec = spec_from_options(image, command, opts)
    if not detach:
        check_terminal(spec)
    if spec.use_chroot and not dry_run:
        warn("--chroot is escapable by a root process; use it only to see why pivot_root exists")
    if spec.restart != "no" and not detach:
        raise UsageError("--restart needs -d: a restart policy is carried out by a detached container's monitor",
                         "add -d, or drop --restart")
    recorder = None
    if report_path is not None:
        if dry_run:
            raise UsageError("--report records a run, and --dry-run does not run", "drop one of them")
        if detach:
            raise UsageError("--report samples a run from its own process, which -d leaves at once", "drop -d")
        from minicontainer import report  # only with --report: run alone does not load the sampler

        recorder = report.Recorder(report.check_target(report_path))
    runner = Runner(spec, explain=explain, userns=userns, recorder=recorder)
    if dry_run:
        return runner.dry_run()
    if detach:
        print(runner.run_detached(), flush=True)
        return 0
    return runner.run()
