"""``minicontainer port CONTAINER [PRIVATE_PORT[/PROTO]]`` — docker port.

Lists what ``-p``/``-P`` published while the container runs (recorded in
its state by the runtime once the port proxy listens), as docker prints it::

    $ minicontainer port web
    80/tcp -> 127.0.0.1:18080
    $ minicontainer port web 80
    127.0.0.1:18080
"""

from __future__ import annotations

import click

from minicontainer.errors import ContainerError, UsageError


def published(st) -> list[dict]:
    """What the container publishes now: nothing once it has stopped, or once
    its proxy is gone (it dies with a killed monitor, PR_SET_PDEATHSIG)."""
    from minicontainer.container.state import pid_alive

    if st.status != "running" or not pid_alive(st.proxy_pid, st.proxy_start):
        return []
    return list(st.ports)


@click.command(short_help="List a container's published ports.")
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
def port(container, private_port):
    """List the port mappings of CONTAINER, or the host address of one of its ports."""
    from minicontainer.container.state import StateStore
    from minicontainer.network.ports import docker_lines

    st = StateStore().get(container)
    ports = published(st)
    if private_port is None:
        for line in docker_lines(ports):
            click.echo(line)
        return 0
    number, _, proto = private_port.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or proto not in ("tcp", "udp"):
        raise UsageError(f"invalid port {private_port!r}", "give PORT or PORT/tcp or PORT/udp, e.g. 80/tcp")
    mine = [p for p in ports if p["container_port"] == int(number) and p["proto"] == proto]
    if not mine:
        raise ContainerError(f"no public port '{int(number)}/{proto}' published for {st.name}",
                             "list them with: minicontainer port " + st.name, exit_code=1)
    for p in mine:
        click.echo(f"{p['host_ip']}:{p['host_port']}")
    return 0
