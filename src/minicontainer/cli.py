"""The command line: thin. Flags -> spec -> runtime.

Each subcommand lives in ``commands/<name>.py`` and is imported only when it
is used, so ``minicontainer run`` does not pay for the image, stats or
network code (click's LazyGroup pattern).

Errors become one line in main.py (the entry point), which also lets a
plain ``run`` skip click entirely (commands/fastparse.py).
"""

from __future__ import annotations

import importlib

import click

from minicontainer import __version__
from minicontainer import main as entry

# name -> (module, attribute, one-line help shown by `minicontainer --help`)
COMMANDS = {
    "run": ("minicontainer.commands.run", "run", "Run a command in a new container."),
    "create": ("minicontainer.commands.lifecycle", "create", "Create a container, ready to start."),
    "start": ("minicontainer.commands.lifecycle", "start", "Start created or stopped containers."),
    "stop": ("minicontainer.commands.lifecycle", "stop", "Stop running containers (SIGTERM, then SIGKILL)."),
    "restart": ("minicontainer.commands.lifecycle", "restart", "Restart containers."),
    "kill": ("minicontainer.commands.lifecycle", "kill", "Send a signal to running containers."),
    "wait": ("minicontainer.commands.lifecycle", "wait", "Wait for containers to stop; print exit codes."),
    "logs": ("minicontainer.commands.logs", "logs", "Show a detached container's output."),
    "exec": ("minicontainer.commands.exec", "exec_", "Run a command in a running container."),
    "attach": ("minicontainer.commands.attach", "attach", "Attach to a detached container's input and output."),
    "ps": ("minicontainer.commands.ps", "ps", "List containers."),
    "rm": ("minicontainer.commands.rm", "rm", "Remove containers."),
    "image": ("minicontainer.commands.image", "image", "Manage images: import, ls, inspect, rm, build-mini."),
    "stats": ("minicontainer.commands.stats", "stats", "Show live resource usage of containers."),
    "pause": ("minicontainer.commands.pause", "pause", "Freeze all processes of a container."),
    "unpause": ("minicontainer.commands.pause", "unpause", "Thaw a paused container."),
    "export": ("minicontainer.commands.export", "export", "Write a container's filesystem as a tar."),
    "diff": ("minicontainer.commands.export", "diff", "List what a container changed (A/C/D)."),
    "report": ("minicontainer.commands.report", "report", "Summarize a run report; chart it as HTML."),
    "completion": ("minicontainer.commands.completion", "completion", "Print a shell's tab-completion script."),
    "doctor": ("minicontainer.commands.doctor", "doctor", "Check what this host offers minicontainer."),
    "build": ("minicontainer.commands.build", "build", "Build an image from a Dockerfile."),
    "inspect": ("minicontainer.commands.inspect", "inspect", "Show a container's (or an image's) details."),
    "ns": ("minicontainer.commands.ns", "ns", "Show a container's namespaces, ids, caps and mounts beside the host's."),
    "top": ("minicontainer.commands.top", "top", "Show the processes of a running container."),
    "update": ("minicontainer.commands.update", "update", "Change the limits of containers, live."),
    "cp": ("minicontainer.commands.cp", "cp", "Copy files between a container and the host."),
    "rename": ("minicontainer.commands.rename", "rename", "Rename a container."),
    "container": ("minicontainer.commands.container", "container", "Manage containers (container prune)."),
    "network": ("minicontainer.commands.network", "network", "Manage bridge networks: create, ls, inspect, rm, prune."),
    "volume": ("minicontainer.commands.volume", "volume", "Manage volumes: create, ls, inspect, rm, prune."),
    "system": ("minicontainer.commands.system", "system", "Disk usage (system df) and cleaning up (system prune)."),
    "port": ("minicontainer.commands.port", "port", "List a container's published ports."),
    "demo": ("minicontainer.commands.demo", "demo", "Run a narrated demo of what the kernel does."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        """The command, imported now. Never guarded: a command module that
        cannot be imported is a broken install, and its ImportError reaches
        :func:`main`, which refuses in one line (fail closed), instead of the
        command quietly turning into "No such command"."""
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minicontainer")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def cli(debug):
    """minicontainer: a small, readable container runtime.

    It does by hand what docker does: unpack a root filesystem, unshare
    namespaces, pivot_root into it, mount /proc /sys /tmp /dev, write cgroup
    limits and exec your command. Add --explain to `run` to see every step
    with its shell equivalent.
    """
    entry.debug = entry.debug or debug


# The entry point (pyproject's script) is minicontainer.main:entry; this name
# stays for callers that import it from here (the tests, older scripts).
main = entry.main
