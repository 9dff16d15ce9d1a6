"""``minicontainer run [OPTIONS] IMAGE|DIR [COMMAND [ARG...]]`` — docker's flags.

The flags as click declares them (their names, help, completion); what
``run`` does with them is commands/runspec.py, which also serves the lean
parser (commands/fastparse.py) that reads this command's flags without
importing click, on the start path.
"""

from __future__ import annotations

import click

from minicontainer.commands.completion import complete_images, complete_networks


# The flags `run` and `create` share (docker's names): the container's whole spec.
CONTAINER_OPTIONS = [
    click.argument("image", shell_complete=complete_images),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
    click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass it to the container)."),
    click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal."),
    click.option("--rm", "remove", is_flag=True, help="Remove the container (state and writable layer) when it exits."),
    click.option("--name", help="Name the container (1-64 of letters, digits, _.-)."),
    click.option("-h", "--hostname", help="The container's hostname (default: its name or short id)."),
    click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable (repeatable)."),
    click.option("--env-file", multiple=True, metavar="FILE", help="Read KEY=VAL lines from a file."),
    click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container."),
    click.option("--entrypoint", default=None, metavar="CMD", help="Override the image's Entrypoint ('' clears it)."),
    click.option("-p", "--publish", multiple=True, metavar="[HOSTIP:]HOSTPORT:PORT[/udp]",
                 help="Publish a container's port on the host (a proxy forwards to it); joins bridge by default."),
    click.option("-P", "--publish-all", is_flag=True, help="Publish every port the image exposes, on free host ports."),
    click.option("--pid", metavar="host|container:NAME", help="Share the host's or a running container's PID namespace."),
    click.option("--network", "--net", "network", metavar="none|host|bridge|NAME|container:NAME",
                 shell_complete=complete_networks,
                 help="none (default): only lo; host: the host's; bridge or a `network create` name: a veth on it; "
                 "container:NAME: that running container's."),
    click.option("--uts", metavar="host|container:NAME", help="Share the host's or a running container's hostname."),
    click.option("--ipc", metavar="host|container:NAME", help="Share the host's or a running container's IPC namespace."),
    click.option("--network-alias", "--net-alias", "network_alias", multiple=True, metavar="NAME",
                 help="Another name of the container on its network (repeatable)."),
    click.option("--ip", metavar="IPV4", help="A fixed address on a user-defined network."),
    click.option("--add-host", multiple=True, metavar="NAME:IP", help="Add a line to /etc/hosts (repeatable)."),
    click.option("--dns", multiple=True, metavar="IP", help="A nameserver for /etc/resolv.conf (repeatable)."),
    click.option("--cgroupns", metavar="host|private", help="'host' to see the host's cgroup tree."),
    click.option("--chroot", "use_chroot", is_flag=True, help="Use chroot instead of pivot_root (escapable: for teaching)."),
    click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
    click.option("--init", is_flag=True, help="Run tini as PID 1: it reaps orphans and forwards signals."),
    click.option("--restart", metavar="POLICY", help="no, on-failure[:N], always or unless-stopped (with -d)."),
    click.option("-v", "--volume", multiple=True, metavar="HOST:PATH[:ro]|NAME:PATH|PATH",
                 help="Bind-mount an absolute host path, or mount a named (or, PATH alone, anonymous) volume."),
    click.option("--mount", multiple=True, metavar="type=bind|volume|tmpfs,...",
                 help="e.g. type=volume,src=NAME,dst=/data[,readonly]; type=bind,source=/abs,target=/x; "
                 "type=tmpfs,target=/x,tmpfs-size=64m"),
    click.option("--tmpfs", multiple=True, metavar="PATH[:OPTS]", help="Mount a tmpfs (e.g. /cache:size=64m)."),
    click.option("-m", "--memory", help="Memory limit (e.g. 64m, 1g)."),
    click.option("--memory-swap", help="Memory + swap limit; -1 for unlimited swap."),
    click.option("--memory-reservation", help="Soft memory limit (memory.low)."),
    click.option("--cpus", help="Number of CPUs (e.g. 0.5)."),
    click.option("-c", "--cpu-shares", help="Relative CPU weight (docker's 2-262144, default 1024)."),
    click.option("--cpuset-cpus", help="CPUs allowed (e.g. 0-2,4)."),
    click.option("--cpuset-mems", help="Memory nodes allowed (e.g. 0)."),
    click.option("--pids-limit", help="Maximum number of processes."),
    click.option("--device-read-bps", multiple=True, metavar="DEV:RATE", help="Limit read rate from a device."),
    click.option("--device-write-bps", multiple=True, metavar="DEV:RATE", help="Limit write rate to a device."),
    click.option("--cgroup-parent", help="Parent cgroup for the container's cgroup."),
    click.option("--device", multiple=True, metavar="HOST[:CONTAINER][:rwm]",
                 help="Add a host device (e.g. /dev/loop0:/dev/loop0:r); the device cgroup allows it."),
    click.option("--cap-add", multiple=True, help="Add a Linux capability (or ALL)."),
    click.option("--cap-drop", multiple=True, help="Drop a Linux capability (or ALL)."),
    click.option("--privileged", is_flag=True, help="All capabilities and devices, no seccomp, no masked paths."),
    click.option("--security-opt", multiple=True, help="no-new-privileges[=false], seccomp=unconfined|PROFILE.json"),
    click.option("--ulimit", multiple=True, metavar="NAME=SOFT[:HARD]", help="Set a resource limit (e.g. nofile=1024)."),
    click.option("-u", "--user", metavar="UID[:GID]|NAME", help="Run as this user (looked up in the container)."),
    click.option("--group-add", multiple=True, help="Add a supplementary group."),
    click.option("--userns", is_flag=True,
              help="Run in a user namespace, the caller as root inside (automatic when not root)."),
]


def container_options(f):
    for option in reversed(CONTAINER_OPTIONS):
        f = option(f)
    return f


@click.command(
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
    short_help="Run a command in a new container.",
)
@container_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container's id.")
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
@click.option("--dry-run", is_flag=True, help="Print the plan and do nothing.")
@click.option("--report", "report_path", metavar="FILE.json",
              help="Sample the cgroup while it runs; write the samples, limits and exit reason to FILE.json.")
def run(image, command, explain, dry_run, userns, detach, report_path, **opts):
    """Run COMMAND (default /bin/sh) in a new container made from IMAGE.

    IMAGE is an image name (``mini`` is built in), a directory used
    read-only as the root, or a tarball (imported first). With -d a
    monitor process keeps the container running in the background; its
    output goes to `minicontainer logs`.

    \b
    Examples:
      minicontainer run -it --rm mini /bin/sh
      minicontainer run --rm --explain mini hostname
      minicontainer run --dry-run -m 64m --pids-limit 20 mini
      minicontainer run -d --name web mini sleep 1000
    """
    from minicontainer.commands.runspec import run_container

    return run_container(image, command, opts, explain=explain, dry_run=dry_run, userns=userns, detach=detach,
                         report_path=report_path)
