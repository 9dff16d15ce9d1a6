"""``minicontainer exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--privileged] CONTAINER CMD...``"""

from __future__ import annotations

import sys

import click

from minicontainer.errors import UsageError


@click.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
    short_help="Run a command in a running container.",
)
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass it to the command).")
@click.option("-t", "--tty", is_flag=True, help="Give the command a pseudo-terminal (from the container's devpts).")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable (repeatable).")
@click.option("--env-file", multiple=True, metavar="FILE", help="Read KEY=VAL lines from a file.")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
@click.option("-u", "--user", metavar="UID[:GID]|NAME", help="Run as this user (looked up in the container).")
@click.option("--privileged", is_flag=True, help="All capabilities and no seccomp filter for this command.")
@click.option("--explain", is_flag=True, help="Print each step (the setns calls too) as it is done.")
def exec_(container, command, detach, interactive, tty, env, env_file, workdir, user, privileged, explain):
    """Run COMMAND inside the running CONTAINER: its namespaces, cgroup, root,
    user and security settings, as its own processes have.

    \b
    Examples:
      minicontainer exec web hostname
      minicontainer exec -it web /bin/sh
      minicontainer exec --explain -u 1000 web id
    """
    from minicontainer.container.enter import exec_in
    from minicontainer.container.spec import parse_env, read_env_file

    if command[:1] == ("--",):
        command = command[1:]
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(f"working directory {workdir!r} is not absolute", "use -w /path")
    if tty and interactive and (sys.stdin is None or not sys.stdin.isatty()):
        raise UsageError("the input device is not a TTY", "drop -t (keep -i to pipe input), or run from a terminal")
    items = [line for path in env_file for line in read_env_file(path)] + list(env)
    return exec_in(container, tuple(command), env=parse_env(items), workdir=workdir, user=user, tty=tty,
                   interactive=interactive, privileged=privileged, detach=detach, explain=explain)
