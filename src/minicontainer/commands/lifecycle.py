"""A container's life after ``run``: create, start, stop, kill, restart, wait.

    create ──▶ created ──start──▶ running ──(exits, stop, kill)──▶ exited
                                     ▲                                │
                                     └──────────── start ─────────────┘

``create`` sets the container up completely and leaves PID 1 waiting just
before execve; ``start`` lets it go (or, for an exited container, runs it
again: the same layer, fresh namespaces and cgroup, detached). The signals
go to PID 1 through a pidfd (container/control.py); the container's
runtime records how it ended. Docker's flag names throughout.
"""

from __future__ import annotations

import signal

import click

from minicontainer.commands._each import for_each
from minicontainer.commands.run import container_options
from minicontainer.commands.runspec import spec_from_options
from minicontainer.errors import ContainerError


def _store():
    from minicontainer.container.state import StateStore

    return StateStore()


@click.command(
    context_settings={"allow_interspersed_args": False, "help_option_names": ["--help"]},
    short_help="Create a container, ready to start.",
)
@container_options
@click.option("--explain", is_flag=True, help="Print each step (what, why, shell equivalent) as it is done.")
def create(image, command, explain, userns, **opts):
    """Set up a container from IMAGE completely (namespaces, mounts, cgroup,
    security) and leave its process waiting just before it execs COMMAND;
    `minicontainer start` lets it go. Prints the container's id.

    \b
    Example:
      minicontainer create --name job mini sh -c 'echo hi'
      minicontainer start -a job
    """
    from minicontainer.container.runtime import Runner

    spec = spec_from_options(image, command, opts)
    click.echo(Runner(spec, explain=explain, userns=userns, wait_for_start=True).run_detached())
    return 0


def _start_one(store, ref: str) -> None:
    from minicontainer.container import control
    from minicontainer.container.config import load_spec
    from minicontainer.container.runtime import Runner

    st = store.get(ref)
    if st.status == "running":
        raise ContainerError(f"container {ref} is already running", f"stop it first: minicontainer stop {ref}")
    if st.status == "created":
        control.release_created(store, st)
        return
    spec = load_spec(store.containers / st.id)
    Runner(spec, existing=st).run_detached()


@click.command(short_help="Start created or stopped containers.")
@click.argument("containers", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="Follow the container's output (one container only).")
@click.option("-i", "--interactive", is_flag=True, help="Attach our input too (a container made with -i).")
def start(containers, attach, interactive):
    """Start containers: a created one runs its command; an exited one runs
    again in the same layer with fresh namespaces, in the background.

    \b
    Example:
      minicontainer start -a job
    """
    if (attach or interactive) and len(containers) != 1:
        raise ContainerError("start -a/-i takes one container", "start the others without -a or -i")
    store = _store()
    if not (attach or interactive):
        for_each(containers, lambda ref: _start_one(store, ref))
        return 0
    _start_one(store, containers[0])
    if interactive:
        from minicontainer.commands.attach import attach_when_ready

        return attach_when_ready(store, containers[0])
    from minicontainer.commands.logs import print_logs

    return print_logs(store, containers[0], follow=True, since_start=True)


def _timeout_option(f):
    return click.option("-t", "--time", "timeout", type=click.IntRange(0), default=None,
                        help="Seconds to wait before SIGKILL (default 10).")(f)


@click.command(short_help="Stop running containers.")
@click.argument("containers", nargs=-1, required=True)
@_timeout_option
@click.option("-s", "--signal", "sig", default="TERM", help="The signal to send first (default TERM).")
def stop(containers, timeout, sig):
    """Send SIGTERM (or -s SIGNAL) to each container's PID 1, then SIGKILL
    after the grace period. A PID 1 without a handler ignores SIGTERM
    (pid_namespaces(7)): such a container ends by the SIGKILL.

    \b
    Example:
      minicontainer stop -t 2 web
    """
    from minicontainer.container import control

    store = _store()
    number = control.parse_signal(sig)
    wait = control.DEFAULT_STOP_TIMEOUT if timeout is None else timeout
    for_each(containers, lambda ref: control.stop(store, store.get(ref), wait, number))
    return 0


@click.command(short_help="Send a signal to running containers.")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", "sig", default="KILL", help="The signal (default KILL).")
def kill(containers, sig):
    """Send a signal (default SIGKILL) to each container's PID 1."""
    from minicontainer.container import control

    store = _store()
    number = control.parse_signal(sig)

    def one(ref):
        st = store.get(ref)
        if st.status == "running" and number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            control.mark_stopped(store, st)
        if st.status != "running" or not control.send_signal(st, number):
            raise ContainerError(f"container {ref} is not running", "see minicontainer ps -a")

    for_each(containers, one)
    return 0


@click.command(short_help="Restart containers.")
@click.argument("containers", nargs=-1, required=True)
@_timeout_option
def restart(containers, timeout):
    """Stop each container (SIGTERM, then SIGKILL after -t seconds) and start it again."""
    from minicontainer.container import control

    store = _store()
    wait = control.DEFAULT_STOP_TIMEOUT if timeout is None else timeout

    def one(ref):
        control.stop(store, store.get(ref), wait)
        _start_one(store, ref)

    for_each(containers, one)
    return 0


@click.command(short_help="Wait for containers to stop; print their exit codes.")
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Block until each container stops, then print its exit code."""
    from minicontainer.container import control

    store = _store()
    for ref in containers:
        st = store.get(ref)
        done = control.wait_exited(store, st, None)
        click.echo(str(done.exit_code if done.exit_code is not None else 0))
    return 0
